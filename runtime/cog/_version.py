"""The runtime's version, reported by `GET /` and `cog.__version__`."""

__version__ = "0.1.0"
