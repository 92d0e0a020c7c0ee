"""raykube's Serve runtime: what runs inside the Ray pods raykube manages."""

from raykube_serve.version import RAY_VERSION

__all__ = ["RAY_VERSION"]
