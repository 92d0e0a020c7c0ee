"""raykube: a Kubernetes operator for Ray clusters and Ray Serve (ray.io/v1)."""

__version__ = "0.1.0"
