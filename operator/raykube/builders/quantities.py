"""Kubernetes resource quantities, for ``ray start`` and the status' totals.

The grammar lives with the models, which refuse a pod template whose
resources it does not read; builders and decisions read quantities here.
"""

from __future__ import annotations

from raykube.models.quantity import MAX_QUANTITY, ceil_int, parse

__all__ = ["MAX_QUANTITY", "ceil_int", "parse"]
