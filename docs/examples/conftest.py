pytest_plugins = ["siegel.testing"]
