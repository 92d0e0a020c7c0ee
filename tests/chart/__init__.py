"""The Helm chart rendered by the pinned helm binary (``python -m localcluster build``).

Kept out of ``tests/unit`` so that the unit tier needs nothing built.
"""
