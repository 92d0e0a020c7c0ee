"""Small helpers shared by the tiers that talk to a real API server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from e2e.paths import REPO
from localcluster import processes
from localcluster.controlplane import ControlPlane

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 60,
    interval: float = 0.5,
    what: str = "",
) -> T:
    """``processes.wait_until`` with the API-server tiers' pace (each poll is a
    kubectl run: twice a second is plenty on two cores)."""
    name = what or getattr(predicate, "__name__", "a condition")
    return processes.wait_until(name, predicate, timeout=timeout, interval=interval)


def get_json(cp: ControlPlane, *args: str) -> Any:
    return json.loads(cp.kubectl("get", *args, "-o", "json").stdout)


def apply(cp: ControlPlane, namespace: str, obj: dict[str, Any] | str) -> None:
    doc = obj if isinstance(obj, str) else json.dumps(obj)
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=doc)


class OperatorProcess:
    """``python -m raykube`` as a real separate process against the test cluster."""

    def __init__(self, cp: ControlPlane, log_dir: Path, *extra: str) -> None:
        self.cp = cp
        self.metrics_port = processes.free_port()
        self.health_port = processes.free_port()
        self.log = log_dir / f"operator-{time.strftime('%H%M%S')}-{os.getpid()}.log"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**self.cp.env(), "PYTHONUNBUFFERED": "1"}
        argv = [
            sys.executable,
            "-m",
            "raykube",
            "--bind-host=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            f"--health-port={self.health_port}",
            "--log-format=json",
            *self.extra,
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                cwd=REPO,
            )
        wait_for(self._healthy, timeout=60, what="the operator's /healthz")

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited:\n{self.log.read_text()[-4000:]}")
        try:
            return processes.http_ok(f"http://127.0.0.1:{self.health_port}/healthz")
        except OSError:
            return False

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if kill:
            processes.stop_pid(self.proc.pid, grace=0)
        else:
            processes.stop_pid(self.proc.pid, grace=15)
        self.proc.wait(5)
        self.proc = None

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            return str(r.read().decode())


@contextmanager
def running_operator(cp: ControlPlane, log_dir: Path, *extra: str) -> Iterator[OperatorProcess]:
    op = OperatorProcess(cp, log_dir, *extra)
    op.start()
    try:
        yield op
    finally:
        op.stop()
