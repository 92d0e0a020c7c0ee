"""Pure builders: a RayCluster model in, Kubernetes objects (dicts) out."""
