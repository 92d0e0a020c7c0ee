"""Durations written the way KubeRay's annotations accept them (pure).

KubeRay reads ``ray.io/initializing-timeout`` as a Go duration (``"30m"``,
``"1h30m"``, ``"1.5h"``) or as whole seconds (``"1800"``); so does raykube.
"""

from __future__ import annotations

import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_seconds(text: str) -> float:
    """Seconds in ``text``; ValueError naming the text when it is not a positive duration."""
    value = text.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        parts = _PART.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise ValueError(f"{text!r} is neither whole seconds nor a duration such as '30m'")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return seconds
