"""Small helpers shared by the tiers that talk to a real API server."""

from __future__ import annotations

import itertools
import json
import os
import re
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

    def __init__(
        self, cp: ControlPlane, log_dir: Path, *extra: str, kubeconfig: Path | None = None
    ) -> None:
        self.cp = cp
        self.kubeconfig = kubeconfig
        self.metrics_port = processes.free_port()
        self.health_port = processes.free_port()
        self.log = log_dir / f"operator-{time.strftime('%H%M%S')}-{os.getpid()}.log"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**self.cp.env(), "PYTHONUNBUFFERED": "1"}
        if self.kubeconfig is not None:
            env["KUBECONFIG"] = str(self.kubeconfig)
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


# --- "nothing happens" checks: wait for the operator to look, never sleep --------------------

#: A test-only annotation: changing it is a watch event that queues the object
#: without changing anything the operator reads.
TOUCH = "test.raykube.io/touch"
_touches = itertools.count(1)


def metric(op: OperatorProcess, name: str, **want: str) -> float:
    """The sum of the samples of metric ``name`` whose labels include ``want``
    (0 when none is exported yet)."""
    total = 0.0
    for line in op.metrics().splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric_name, _, rest = series.partition("{")
        if metric_name != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', rest))
        if all(found.get(k) == v for k, v in want.items()):
            total += float(value)
    return total


def reconciles(op: OperatorProcess, kind: str) -> float:
    """``raykube_reconcile_total{kind=...}`` now (0 before the first pass of that kind)."""
    return metric(op, "raykube_reconcile_total", kind=kind)


def wait_reconciles(
    op: OperatorProcess, kind: str, n: int, *, baseline: float | None = None, timeout: float = 60
) -> float:
    """Wait until the operator has counted ``n`` more passes of ``kind`` than
    ``baseline`` (the count now, when not given); the count reached.

    A stalled operator never moves the counter, so a "nothing changed" check
    built on this fails instead of passing by default."""
    start = reconciles(op, kind) if baseline is None else baseline
    return wait_for(
        lambda: (count := reconciles(op, kind)) >= start + n and count,
        timeout=timeout,
        interval=0.2,
        what=f"{n} more {kind} reconciles after {start:g}",
    )


def touch(cp: ControlPlane, namespace: str, resource: str, name: str) -> None:
    """Change only the test-only annotation of ``resource/name``: the operator looks again."""
    cp.kubectl(
        "annotate", "--overwrite", "-n", namespace, resource, name, f"{TOUCH}={next(_touches)}"
    )


def look_again(
    cp: ControlPlane,
    op: OperatorProcess,
    namespace: str,
    resource: str,
    name: str,
    kind: str,
    passes: int = 2,
    timeout: float = 60,
) -> None:
    """Make the operator reconcile ``resource/name`` ``passes`` more times and wait
    until it has, each pass triggered by a touch (no waiting out a resync or a
    back-off).

    Two passes by default: the second touch arrives while or after the first
    pass runs, so at least one whole pass began after the first touch, whether
    the counter counts passes when they start or when they end. The counter is
    per kind, so other objects' passes can count too; each test works in its
    own namespace with one object of the kind, which keeps that rare."""
    start = reconciles(op, kind)
    for done in range(1, passes + 1):
        touch(cp, namespace, resource, name)
        wait_reconciles(op, kind, done, baseline=start, timeout=timeout)
