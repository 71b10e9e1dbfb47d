"""The package version, read by ``setup.cfg`` (``version = attr:``)."""

__version__ = '3.0.0'
