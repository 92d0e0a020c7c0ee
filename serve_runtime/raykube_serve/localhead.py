"""A Ray head on loopback for tests and benchmarks (no Kubernetes).

Started as `ray start --head --block` in its own session and stopped by PID,
never with `ray stop` (which would kill every Ray on the machine, including
other people's). Every port is a free one picked at start, the temp dir is
private, and the dashboard listens on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

WORKER_PORT_SPAN = 64


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port_range(span: int = WORKER_PORT_SPAN) -> tuple[int, int]:
    """A block of ports all free now, for Ray's worker processes."""
    for _ in range(200):
        start = random.randrange(20000, 30000 - span)
        if all(_port_is_free(p) for p in range(start, start + span)):
            return start, start + span - 1
    raise RuntimeError("no free block of worker ports found")


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: all sockets stay bound until all are chosen."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class HeadPorts:
    gcs: int
    dashboard: int
    agent_http: int
    agent_grpc: int
    metrics: int
    client: int
    node_manager: int
    object_manager: int
    runtime_env_agent: int
    serve_http: int
    workers: tuple[int, int]

    @classmethod
    def pick(cls) -> HeadPorts:
        (gcs, dashboard, agent_http, agent_grpc, metrics, client, node_manager, object_manager,
         runtime_env_agent, serve_http) = free_ports(10)  # fmt: skip
        return cls(
            gcs=gcs, dashboard=dashboard, agent_http=agent_http, agent_grpc=agent_grpc,
            metrics=metrics, client=client, node_manager=node_manager,
            object_manager=object_manager, runtime_env_agent=runtime_env_agent,
            serve_http=serve_http, workers=free_port_range(),
        )  # fmt: skip


def _ray_executable() -> str:
    beside = Path(sys.executable).parent / "ray"
    found = str(beside) if beside.exists() else shutil.which("ray")
    if not found:
        raise FileNotFoundError("the `ray` command is not installed (pip install 'ray[serve]')")
    return found


class LocalRayHead:
    def __init__(
        self, num_cpus: int = 4, object_store_mb: int = 100, env: dict[str, str] | None = None
    ) -> None:
        self.ports = HeadPorts.pick()
        self.extra_env = env or {}
        self.num_cpus = num_cpus
        self.object_store_mb = object_store_mb
        # Short path: Ray puts unix sockets under it (108-byte limit).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rayhead-", dir="/tmp"))
        self.log_path = self.temp_dir / "ray-start.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.dashboard}"

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.serve_http}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        p = self.ports
        return [
            _ray_executable(), "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", f"--port={p.gcs}",
            "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={p.dashboard}", f"--dashboard-agent-listen-port={p.agent_http}",
            f"--dashboard-agent-grpc-port={p.agent_grpc}", f"--metrics-export-port={p.metrics}",
            f"--ray-client-server-port={p.client}", f"--node-manager-port={p.node_manager}",
            f"--object-manager-port={p.object_manager}",
            f"--runtime-env-agent-port={p.runtime_env_agent}",
            f"--min-worker-port={p.workers[0]}", f"--max-worker-port={p.workers[1]}",
            f"--num-cpus={self.num_cpus}", "--num-gpus=0",
            f"--object-store-memory={self.object_store_mb * 1024 * 1024}",
            f"--temp-dir={self.temp_dir}", "--disable-usage-stats",
        ]  # fmt: skip

    def start(self, timeout_s: float = 120.0) -> None:
        env = dict(
            os.environ,
            RAY_USAGE_STATS_ENABLED="0",
            RAY_DISABLE_DOCKER_CPU_WARNING="1",
            # Ray swaps --node-ip-address=127.0.0.1 for the host's network IP
            # unless "cluster mode" is off; off, every component (GCS, raylet,
            # object manager, client server) binds and talks on loopback only.
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        )
        env.update(self.extra_env)
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,  # its own process group, so stop() can reap all of it
            )  # fmt: skip
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"{self.dashboard_url}/api/gcs_healthz"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self._proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"Ray head not ready in {timeout_s}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM to `ray start --block` (it shuts its node down), then SIGKILL the group."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=grace_s)
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers in the head's own group only
        proc.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayHead:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
