"""The package version, on the ground floor: the server, the CLI and the downloader report it."""

__version__ = "0.1.0"
