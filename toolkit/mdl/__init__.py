"""mdl: package AI models as OCI artifacts, move them through registries, verify and serve them."""

__version__ = "0.1.0"
