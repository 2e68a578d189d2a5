"""One job of the command line: the context its stages share, the preflight checks and the stage registry."""
