"""The replacements annotation is user-editable: whatever it holds, reading it and
computing a back-off from it cost bounded work, and garbage reads as no record."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from raykube.decisions import rayservice_health as health
from raykube.decisions.rayservice_view import HealthRecord
from tests.unit.rayservice_helpers import service

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
REASON = health.DASHBOARD_UNREACHABLE
NO_RECORD = health.Replacements()


def record(**fields: object) -> str:
    base: dict[str, object] = {"reason": REASON, "attempts": 2, "last": "2026-01-01T12:00:00Z"}
    return json.dumps({**base, **fields})


def test_a_sane_record_still_reads() -> None:
    assert health.Replacements.from_json(record()) == health.Replacements(REASON, 2, T0)


@pytest.mark.parametrize(
    "text",
    [
        "[1, 2]",
        '"attempts"',
        "12",
        "null",
        "{",
        "[" * 100_000 + "]" * 100_000,
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        record(attempts=10**100),
        record(attempts=-1),
        record(attempts=True),
        record(attempts=2.0),
        record(attempts="2"),
        '{"attempts": ' + "9" * 5000 + "}",
        record(reason=["x"]),
        record(reason="x" * 10_000),
        record(last=12),
        record(last="x" * 10_000),
        record(last="9999-12-31T23:59:59Z"),
        record(last="0001-01-01T00:00:00Z"),
        "x" * 1_000_000,
    ],
)
def test_garbage_reads_as_no_record(text: str) -> None:
    start = time.perf_counter()
    assert health.Replacements.from_json(text) == NO_RECORD
    assert time.perf_counter() - start < 1.0  # generous: a bounded read takes microseconds


@pytest.mark.parametrize("attempts", [10**6, 10**100, 2**64])
def test_backoff_of_huge_attempts_is_the_maximum_and_cheap(attempts: int) -> None:
    start = time.perf_counter()
    assert health.backoff_seconds(attempts, 1800) == health.MAX_BACKOFF_SECONDS
    assert time.perf_counter() - start < 1.0  # unbounded, this never ended


def test_attempts_stop_growing_at_the_bound() -> None:
    at_bound = health.Replacements(REASON, health.MAX_ATTEMPTS, T0)
    after = health.after_attempt(at_bound, REASON, T0 + timedelta(hours=13))
    assert after.attempts == health.MAX_ATTEMPTS
    assert health.Replacements.from_json(after.to_json()) == after


def test_a_record_from_the_future_does_not_block_or_overflow() -> None:
    future = health.Replacements(REASON, 3, datetime(9999, 12, 31, tzinfo=UTC))
    assert health.may_replace(future, REASON, 1800, T0)
    assert health.after_attempt(future, REASON, T0).attempts == 1


def test_a_health_clock_from_the_far_future_does_not_overflow() -> None:
    # The serve-health annotation on a cluster is user-editable too.
    spec = service(deploymentUnhealthySecondThreshold=30).spec
    record = HealthRecord(unreachable_since=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
    wait = health.seconds_to_threshold(record, spec, T0)
    assert wait is not None and wait > 0
    assert health.verdict(record, spec, T0) is None
