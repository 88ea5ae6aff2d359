from siegel.cli import main

main()
