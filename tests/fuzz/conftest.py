"""The fuzz tier's Hypothesis profile and its example counts.

The budget is fixed and the examples derandomized, so every run (CI or a
laptop) tries the same inputs in about the same time; no example database is
kept, so nothing found on one machine changes what another one runs.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz import budget

#: Examples per fuzz test: the whole tier stays under a minute on two cores.
EXAMPLES = 200

settings.register_profile(
    "raykube-fuzz",
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    # Hypothesis' own deadline is loose (it times generation too); each call under
    # test is held to budget.MAX_SECONDS by the test itself.
    deadline=timedelta(seconds=5),
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("raykube-fuzz")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not budget.COUNTS:
        return
    terminalreporter.section("fuzz examples")
    for target, count in sorted(budget.COUNTS.items()):
        slowest = budget.SLOWEST[target]
        peak = budget.PEAKS[target] / 2**10
        terminalreporter.write_line(
            f"{target}: {count} examples, slowest {slowest * 1000:.0f} ms, peak {peak:.0f} KiB"
        )
    terminalreporter.write_line(f"total: {sum(budget.COUNTS.values())} examples")
