pytest_plugins = ["siegel.testing", "postgres"]
