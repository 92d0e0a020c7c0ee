"""A real Kubernetes control plane on loopback: etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok.

Everything binds to 127.0.0.1 on free ports. The state directory holds the
PKI, kubeconfig, logs, PID files and ``cluster.json`` (ports and paths), so a
separate ``down`` or ``status`` call, or the real-node tier, can find it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from localcluster import build, kwok, pki, processes, versions
from localcluster.processes import ComponentFailed
from localcluster.progress import Progress

SERVICE_CIDR = "10.96.0.0/16"
# Order matters when stopping: clients before the servers they talk to.
STOP_ORDER = ["kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call whose message carries kubectl's own words."""

    def __str__(self) -> str:
        args = " ".join(str(a) for a in self.cmd[2:])
        return f"kubectl {args} exited {self.returncode}: {str(self.stderr).strip()}"


@dataclass
class ControlPlane:
    state: Path
    bin: Path
    host: str = "127.0.0.1"
    etcd_port: int = 0
    apiserver_port: int = 0
    service_cidr: str = SERVICE_CIDR
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://{self.host}:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the pinned kubectl against this cluster."""
        proc = subprocess.run(
            [str(self.bin / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def env(self) -> dict[str, str]:
        """Environment for child processes (operator, helm) using this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": _path_with(self.bin)}

    def save(self) -> None:
        data = asdict(self)
        data["state"], data["bin"] = str(self.state), str(self.bin)
        (self.state / "cluster.json").write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, state: Path) -> ControlPlane:
        data = json.loads((state / "cluster.json").read_text())
        data["state"], data["bin"] = Path(data["state"]), Path(data["bin"])
        return cls(**data)


def _path_with(directory: Path) -> str:
    return f"{directory}{os.pathsep}{os.environ.get('PATH', '')}"


def default_state() -> Path:
    return versions.cache_root() / "clusters" / "default"


def _write_kubeconfig(cp: ControlPlane, cert: pki.KeyPair, user: str, path: Path) -> None:
    ca = cp.pki / "ca.crt"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "raykube-local",
                        "cluster": {"server": cp.server, "certificate-authority": str(ca)},
                    }
                ],
                "users": [
                    {
                        "name": user,
                        "user": {"client-certificate": str(cert.cert), "client-key": str(cert.key)},
                    }
                ],
                "contexts": [
                    {"name": "raykube-local", "context": {"cluster": "raykube-local", "user": user}}
                ],
                "current-context": "raykube-local",
            },
            indent=2,
        )
    )
    path.chmod(0o600)


def _first_ip(cidr: str) -> str:
    """The address of the `kubernetes` Service: the first of the range."""
    return str(ipaddress.ip_network(cidr)[1])


def _make_pki(cp: ControlPlane) -> pki.KeyPair:
    ca = pki.make_ca(cp.pki)
    pki.issue(
        ca,
        cp.pki,
        "apiserver",
        common_name="kube-apiserver",
        dns_names=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        ips=("127.0.0.1", _first_ip(cp.service_cidr)),
        server=True,
    )
    # Used by the apiserver for `kubectl logs/exec` through a real kubelet.
    pki.issue(
        ca,
        cp.pki,
        "apiserver-kubelet-client",
        common_name="kube-apiserver-kubelet-client",
        org="system:masters",
        client=True,
    )
    pki.service_account_key(cp.pki)
    admin = pki.issue(
        ca, cp.pki, "admin", common_name="raykube-admin", org="system:masters", client=True
    )
    _write_kubeconfig(cp, admin, "admin", cp.kubeconfig)
    return admin


def _tls_context(cp: ControlPlane, admin: pki.KeyPair) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cp.pki / "ca.crt"))
    ctx.load_cert_chain(str(admin.cert), str(admin.key))
    return ctx


def _start_etcd(cp: ControlPlane) -> None:
    peer = processes.free_port()
    url = f"http://{cp.host}:{cp.etcd_port}"
    argv = [
        str(cp.bin / "etcd"),
        "--name=raykube",
        f"--data-dir={cp.state / 'etcd'}",
        f"--listen-client-urls={url}",
        f"--advertise-client-urls={url}",
        f"--listen-peer-urls=http://{cp.host}:{peer}",
        f"--initial-advertise-peer-urls=http://{cp.host}:{peer}",
        f"--initial-cluster=raykube=http://{cp.host}:{peer}",
        "--listen-metrics-urls=",
        # A throwaway test cluster does not need durability; fsync dominates
        # its latency on these virtual disks.
        "--unsafe-no-fsync",
        "--quota-backend-bytes=4294967296",
        "--log-level=warn",
    ]
    pid = processes.start("etcd", argv, cp.state)
    cp.pids["etcd"] = pid
    processes.wait_until("etcd", lambda: processes.http_ok(f"{url}/health"), cp.state, pid)


#: Every request at Metadata level: who sent what, without bodies (benchmarks
#: count each operator's requests by its client certificate's name).
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [{"level": "Metadata"}],
}


def audit_log(cp: ControlPlane) -> Path:
    return cp.state / "logs" / "audit.jsonl"


def _audit_args(cp: ControlPlane) -> list[str]:
    policy = cp.state / "audit-policy.json"
    policy.write_text(json.dumps(AUDIT_POLICY))
    audit_log(cp).parent.mkdir(parents=True, exist_ok=True)
    return [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={audit_log(cp)}",
        "--audit-log-format=json",
        "--audit-log-maxsize=0",
    ]


def user_kubeconfig(cp: ControlPlane, user: str) -> Path:
    """A kubeconfig for a client named ``user`` with every right (system:masters):
    its requests carry that name in the audit log."""
    ca = pki.KeyPair(cp.pki / "ca.crt", cp.pki / "ca.key")
    pair = pki.issue(
        ca, cp.pki, f"user-{user}", common_name=user, org="system:masters", client=True
    )
    path = cp.state / f"kubeconfig-{user}"
    _write_kubeconfig(cp, pair, user, path)
    return path


def _start_apiserver(cp: ControlPlane, ctx: ssl.SSLContext, audit: bool = False) -> None:
    p = cp.pki
    argv = [
        str(cp.bin / "kube-apiserver"),
        f"--etcd-servers=http://{cp.host}:{cp.etcd_port}",
        f"--bind-address={cp.host}",
        f"--advertise-address={cp.host}",
        f"--secure-port={cp.apiserver_port}",
        f"--tls-cert-file={p / 'apiserver.crt'}",
        f"--tls-private-key-file={p / 'apiserver.key'}",
        f"--client-ca-file={p / 'ca.crt'}",
        f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
        f"--service-account-key-file={p / 'sa.pub'}",
        f"--service-account-signing-key-file={p / 'sa.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={cp.service_cidr}",
        "--authorization-mode=Node,RBAC",
        # A real node is reached at its IP; its host name resolves nowhere.
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        "--allow-privileged=true",
        # A loopback advertise address may not be stored as an Endpoint.
        "--endpoint-reconciler-type=none",
        "--profiling=false",
        "--v=1",
        *(_audit_args(cp) if audit else []),
    ]
    pid = processes.start("kube-apiserver", argv, cp.state)
    cp.pids["kube-apiserver"] = pid
    processes.wait_until(
        "kube-apiserver",
        lambda: processes.http_ok(f"{cp.server}/readyz", ctx),
        cp.state,
        pid,
        timeout=120,
    )


def _start_controllers(cp: ControlPlane) -> None:
    p = cp.pki
    kc = f"--kubeconfig={cp.kubeconfig}"
    common = [kc, f"--bind-address={cp.host}", "--leader-elect=false", "--v=1"]
    cm = [
        str(cp.bin / "kube-controller-manager"),
        *common,
        f"--secure-port={processes.free_port()}",
        f"--service-account-private-key-file={p / 'sa.key'}",
        f"--root-ca-file={p / 'ca.crt'}",
        f"--cluster-signing-cert-file={p / 'ca.crt'}",
        f"--cluster-signing-key-file={p / 'ca.key'}",
        "--use-service-account-credentials=true",
        f"--service-cluster-ip-range={cp.service_cidr}",
    ]
    cp.pids["kube-controller-manager"] = processes.start("kube-controller-manager", cm, cp.state)
    sched = [str(cp.bin / "kube-scheduler"), *common, f"--secure-port={processes.free_port()}"]
    cp.pids["kube-scheduler"] = processes.start("kube-scheduler", sched, cp.state)


def _wait_default_service_account(cp: ControlPlane, timeout: float = 60) -> None:
    """Pods are refused until the controller-manager made `default/default`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in ("kube-controller-manager", "kube-scheduler"):
            if not processes.alive(cp.pids[name]):
                raise ComponentFailed(
                    f"{name} exited during start-up:\n{processes.log_tail(cp.state, name)}"
                )
        if cp.kubectl("get", "serviceaccount", "default", check=False).returncode == 0:
            return
        time.sleep(0.5)
    raise ComponentFailed(
        "kube-controller-manager did not create the default ServiceAccount in time:\n"
        + processes.log_tail(cp.state, "kube-controller-manager")
    )


def install_crds(cp: ControlPlane, directory: Path) -> list[str]:
    """Apply every CRD in ``directory`` server-side and wait until established."""
    files = sorted(directory.glob("*.yaml"))
    if not files:
        return []
    args: list[str] = []
    for f in files:
        args += ["-f", str(f)]
    out = cp.kubectl("apply", "--server-side", "--force-conflicts", *args, "-o", "name").stdout
    names = [n for n in out.split() if n.startswith("customresourcedefinition")]
    for name in names:
        _wait_established(cp, name)
    return names


def _wait_established(cp: ControlPlane, name: str, timeout: float = 60) -> None:
    """`kubectl wait` fails outright while a new CRD has no conditions yet; poll."""
    deadline = time.monotonic() + timeout
    path = '{.status.conditions[?(@.type=="Established")].status}'
    while time.monotonic() < deadline:
        got = cp.kubectl("get", name, "-o", f"jsonpath={path}", check=False).stdout.strip()
        if got == "True":
            return
        time.sleep(0.2)
    raise ComponentFailed(f"{name} was not Established within {timeout:.0f}s")


def up(
    state: Path | None = None,
    *,
    crds: Path | None = None,
    nodes: kwok.NodePlan | None = None,
    quiet: bool = False,
    service_cidr: str = SERVICE_CIDR,
    audit: bool = False,
) -> ControlPlane:
    """Build what is missing, then start a fresh control plane in ``state``
    (with ``audit``, every request is written to ``audit_log(cp)``)."""
    state = state or default_state()
    progress = Progress("up")
    bin_dir = build.build_all()
    down(state)
    # Every `up` starts from an empty etcd: a cluster left from an earlier
    # run would carry its objects (and their finalizers) into this one.
    shutil.rmtree(state / "etcd", ignore_errors=True)
    # And from new certificates: the apiserver's names the first address of the
    # Service range, which depends on the node slot this run got (a reused
    # certificate made in-cluster clients fail: "not valid for '10.96.0.1'").
    shutil.rmtree(state / "pki", ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)
    cp = ControlPlane(state=state, bin=bin_dir, service_cidr=service_cidr)
    cp.etcd_port, cp.apiserver_port = processes.free_port(), processes.free_port()
    admin = _make_pki(cp)
    try:
        if not quiet:
            progress.step(f"starting etcd on {cp.host}:{cp.etcd_port}")
        _start_etcd(cp)
        if not quiet:
            progress.step(f"starting kube-apiserver on {cp.server}")
        _start_apiserver(cp, _tls_context(cp, admin), audit)
        if not quiet:
            progress.step("starting kube-controller-manager and kube-scheduler")
        _start_controllers(cp)
        cp.pids["kwok"] = kwok.start(cp)
        cp.save()
        _wait_default_service_account(cp)
        kwok.create_nodes(cp, nodes or kwok.NodePlan())
        if crds is not None:
            install_crds(cp, crds)
    except BaseException:
        down(state)
        raise
    cp.save()
    if not quiet:
        progress.step(f"control plane ready; KUBECONFIG={cp.kubeconfig}")
    return cp


# --- faults, for tests -------------------------------------------------------------------


def pause_etcd(cp: ControlPlane) -> None:
    """SIGSTOP etcd: the API server's requests hang, its connections stay open."""
    os.kill(cp.pids["etcd"], signal.SIGSTOP)


def resume_etcd(cp: ControlPlane) -> None:
    os.kill(cp.pids["etcd"], signal.SIGCONT)


def stop_apiserver(cp: ControlPlane) -> None:
    """Stop the API server (SIGTERM, by PID); ``start_apiserver`` brings it back."""
    processes.stop_pid(cp.pids["kube-apiserver"])


def start_apiserver(cp: ControlPlane) -> None:
    """Start the API server again on the same port, certificates and etcd, and
    wait until it is ready (without the audit log: a restarted one is for
    fault tests, not benchmarks)."""
    admin = pki.KeyPair(cp.pki / "admin.crt", cp.pki / "admin.key")
    _start_apiserver(cp, _tls_context(cp, admin))
    cp.save()


def down(state: Path | None = None) -> list[str]:
    """Stop the control plane's processes (and kwok) of this state directory, by PID.

    A real node attached to it is not stopped here: ``localcluster.compose.down``
    (or ``node.cluster_down``) stops the node first, then this.
    """
    state = state or default_state()
    return processes.stop_all(state, STOP_ORDER)


def status(state: Path | None = None) -> dict[str, bool]:
    state = state or default_state()
    pid_dir = state / "pids"
    if not pid_dir.is_dir():
        return {}
    return {p.name: processes.alive(int(p.read_text())) for p in sorted(pid_dir.iterdir())}


def memory_mib(state: Path | None = None) -> dict[str, tuple[float, float]]:
    """(current RSS, peak RSS) in MiB of each running component, from /proc."""
    state = state or default_state()
    out: dict[str, tuple[float, float]] = {}
    pid_dir = state / "pids"
    if not pid_dir.is_dir():
        return out
    for path in sorted(pid_dir.iterdir()):
        try:
            pid = int(path.read_text())
        except (OSError, ValueError):
            continue
        memory = processes.memory_mib(pid)
        if memory != (0.0, 0.0):  # gone
            out[path.name] = memory
    return out
