"""Start long-running servers, remember their PIDs on disk, stop them by PID.

PID files let a separate ``down`` command (or a crashed test run's next
start) find and stop exactly what an earlier ``up`` started, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class ComponentFailed(RuntimeError):
    """A component of the local cluster could not start; the message says which and why."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start(name: str, argv: list[str], state: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` in its own session, logging to ``state/logs/<name>.log``."""
    (state / "logs").mkdir(parents=True, exist_ok=True)
    (state / "pids").mkdir(parents=True, exist_ok=True)
    log = (state / "logs" / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    log.close()
    (state / "pids" / name).write_text(str(proc.pid))
    return proc.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists"; reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    # A zombie someone else must reap (after a separate `down`) is dead too.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS) of ``pid`` in MiB, from /proc (zeros once it is gone)."""
    found: dict[str, float] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0, 0.0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found.get("VmRSS", 0.0), found.get("VmHWM", 0.0)


def stop_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after ``grace``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not alive(pid):
                return
            time.sleep(0.1)


def stop_all(state: Path, order: list[str] | None = None) -> list[str]:
    """Stop every process recorded under ``state/pids`` (in ``order`` first)."""
    pid_dir = state / "pids"
    if not pid_dir.is_dir():
        return []
    names = [p.name for p in pid_dir.iterdir()]
    ranked = [n for n in (order or []) if n in names] + sorted(
        n for n in names if n not in (order or [])
    )
    stopped = []
    for name in ranked:
        path = pid_dir / name
        with contextlib.suppress(ValueError, FileNotFoundError):
            stop_pid(int(path.read_text().strip()))
            stopped.append(name)
        path.unlink(missing_ok=True)
    return stopped


def log_tail(state: Path, name: str, lines: int = 30) -> str:
    path = state / "logs" / f"{name}.log"
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class WaitTimeout(AssertionError):
    """``wait_until`` gave up; the message names what it waited for and the last answer."""


def wait_until(
    what: str,
    check: Callable[[], T | None],
    state: Path | None = None,
    pid: int | None = None,
    timeout: float = 90.0,
    *,
    interval: float = 0.2,
    retry_on: tuple[type[Exception], ...] = (),
) -> T:
    """Poll ``check`` until it returns something truthy, and return that.

    The repository's one polling helper: the local cluster's start-up, every
    test tier, the e2e flows and the benchmarks wait through it. ``what`` names
    what is awaited; on timeout ``WaitTimeout`` (an AssertionError, so a test
    reads as failed, not errored) says it with the last answer and the last
    exception. ``check`` runs at least once, and the last sleep stops at the
    deadline. Exceptions from ``check`` propagate (a check may decide the wait
    is hopeless, e.g. the process it waits on exited), except ``retry_on``,
    which count as "not yet".

    With ``state`` and ``pid`` it waits for a component we started: every
    exception counts as "not yet" (a starting server refuses connections), the
    wait ends at once, with the component's log, if the process dies, and the
    failure is ``ComponentFailed``.
    """
    component = state is not None and pid is not None
    retry = (Exception,) if component else retry_on
    deadline = time.monotonic() + timeout
    last: T | None = None
    error: Exception | None = None
    while True:
        if state is not None and pid is not None and not alive(pid):
            raise ComponentFailed(f"{what} exited during start-up:\n{log_tail(state, what)}")
        try:
            last, error = check(), None
        except retry as exc:
            last, error = None, exc
        if last:
            return last
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(interval, left))
    if state is not None and component:
        raise ComponentFailed(
            f"{what} did not become healthy within {timeout:.0f}s:\n{log_tail(state, what)}"
        )
    because = f"; last error: {error!r}" if error is not None else ""
    raise WaitTimeout(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}{because}")


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=2, context=context) as resp:
        return bool(resp.status == 200)
