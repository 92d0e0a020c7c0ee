"""The one polling helper (localcluster.processes.wait_until)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from localcluster import processes
from localcluster.processes import ComponentFailed, WaitTimeout


def answers(*values: object) -> Callable[[], object]:
    it = iter(values)
    return lambda: next(it)


def test_returns_the_first_truthy_answer() -> None:
    got = processes.wait_until("a list", answers(None, [], ["x"]), timeout=5, interval=0)
    assert got == ["x"]


def test_timeout_names_what_and_the_last_answer() -> None:
    with pytest.raises(WaitTimeout, match=r"waiting for the moon; last: 0") as info:
        processes.wait_until("the moon", lambda: 0, timeout=0.01, interval=0.001)
    assert isinstance(info.value, AssertionError)


def test_checks_at_least_once_even_without_time() -> None:
    assert processes.wait_until("now", lambda: "yes", timeout=0)


def test_exceptions_propagate_unless_retried() -> None:
    def boom() -> bool:
        raise KeyError("gone")

    with pytest.raises(KeyError):
        processes.wait_until("x", boom, timeout=5)
    with pytest.raises(WaitTimeout, match="last error: KeyError"):
        processes.wait_until("x", boom, timeout=0.01, interval=0.001, retry_on=(KeyError,))
    tries: list[int] = []

    def starting() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise OSError("refused")
        return "up"

    assert processes.wait_until("x", starting, timeout=5, interval=0, retry_on=(OSError,)) == "up"


def test_a_dead_component_fails_at_once_with_its_log(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "etcd.log").write_text("panic: disk full\n")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(ComponentFailed, match="etcd exited during start-up:\npanic: disk full"):
        processes.wait_until("etcd", lambda: False, tmp_path, proc.pid, timeout=60)


def test_a_component_that_never_answers_times_out_with_its_log(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "api.log").write_text("still starting\n")

    def refused() -> bool:
        raise ConnectionRefusedError

    with pytest.raises(ComponentFailed, match=r"api did not become healthy.*\nstill starting"):
        processes.wait_until("api", refused, tmp_path, os.getpid(), timeout=0.01)
