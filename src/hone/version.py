"""hone's version, read by the package and written into every artifact."""

__version__ = "0.1.0"
