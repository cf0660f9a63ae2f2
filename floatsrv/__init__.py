"""floatsrv: a self-hosted floating license server."""

__version__ = "0.8.0"
