"""cogbuild: reproducible OCI images of Cog models, built without a Docker daemon."""

__version__ = "0.1.0"
