"""An application module that cannot be imported (its dependency is missing)."""

import raykube_no_such_dependency  # noqa: F401

app = None
