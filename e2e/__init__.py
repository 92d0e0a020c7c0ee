"""End-to-end flows on the local cluster: the demo, the walkthrough, live load."""
