"""The Ray version this runtime image serves.

This is the single place that states it: the Dockerfile installs
`ray[serve]==RAY_VERSION` (through this package's pinned dependency) and a
RayService using the image sets `rayClusterConfig.rayVersion` to the same value,
which decides the probe style the operator renders (HTTP `/api/healthz` for
Ray >= 2.53, the exec command in `raykube_serve.health` for older Ray).
"""

RAY_VERSION = "2.60.0"
