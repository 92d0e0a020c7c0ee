"""kopf shell: handler registration, the reconcile queue and the reconcilers it runs."""
