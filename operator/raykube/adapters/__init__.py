"""The only clients of the outside world: the Kubernetes API and Ray dashboards."""
