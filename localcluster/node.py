"""A real worker node beside the loopback control plane.

containerd (CRI, runc, cgroupfs), CNI bridge networking, a kubelet, kube-proxy
in iptables mode and CoreDNS, attached to a control plane that
``localcluster.controlplane`` started. Design, in short (docs/local-cluster.md
has the long version):

* **A network namespace per node** (``localcluster.netns``): servers may bind
  only to loopback in the host's namespace, so every node daemon, the pods'
  bridge and the pods run in ``raykube-<slot>``. A veth pair and two host
  routes (pod range, Service range) let tests on the host reach pods and
  ClusterIPs; a relay (``localcluster.node_proxy``) lets the node and its pods
  reach the apiserver on host loopback.
* **A private mount namespace per node**: containerd's overlay mounts, the
  kubelet's volume mounts and the pods' namespace pins live in it, so they
  vanish with the node's last process and never leak onto the host; /run and
  /var/lib/cni are private tmpfs there, so nothing collides with another node.
* **A cgroup subtree per node** (``/raykube-node-<slot>``): the kubelet's
  ``cgroupRoot`` and the daemons' own cgroup. Stopping the node kills
  whatever is left in it, so no container, shim or daemon survives.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from localcluster import (
    controlplane,
    images,
    kwok,
    netns,
    node_config,
    node_deps,
    pki,
    processes,
    versions,
)
from localcluster.controlplane import ControlPlane
from localcluster.netns import NodeNet
from localcluster.node_record import Node, node_state
from localcluster.processes import ComponentFailed
from localcluster.progress import Progress

CGROUP_FS = Path("/sys/fs/cgroup")
# Stop clients before what they talk to; the holder (mount namespace) last.
STOP_ORDER = ["coredns", "kube-proxy", "kubelet", "containerd", "apiserver-relay", "holder"]
# Directories the private mount namespace mounts over; they must exist on
# the host to be mount points (empty directories, left in place).
_MOUNT_POINTS = (Path("/var/lib/cni"), Path("/var/log/containers"))


# --------------------------------------------------------------------------
# cgroups (v1 here: one directory tree per mounted controller)


def _hierarchies() -> list[Path]:
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" - ")
            if len(fields) == 2 and fields[1].split()[0] == "cgroup":
                found.append(Path(fields[0].split()[4]))
    return found


def _cgroup_create(root: str, *children: str) -> None:
    for hierarchy in _hierarchies():
        for rel in (root, *(f"{root}/{c}" for c in children)):
            path = hierarchy / rel.lstrip("/")
            path.mkdir(exist_ok=True)
            # cpuset cgroups start empty in v1; a task cannot join until the
            # cgroup is given the parent's CPUs and memory nodes.
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (path / name).exists() and not (path / name).read_text().strip():
                    (path / name).write_text((path.parent / name).read_text())


def _cgroup_join(path: str) -> None:
    """Move the calling process into ``path`` in every hierarchy."""
    pid = str(os.getpid())
    for hierarchy in _hierarchies():
        with contextlib.suppress(OSError):
            (hierarchy / path.lstrip("/") / "cgroup.procs").write_text(pid)


def cgroup_pids(root: str) -> set[int]:
    """Every process in the node's subtree (the pids hierarchy sees them all)."""
    found: set[int] = set()
    for hierarchy in _hierarchies():
        # os.walk skips directories that vanish under it (the kubelet removes
        # pods' cgroups while we look); Path.rglob raised FileNotFoundError.
        for directory, _, files in os.walk(hierarchy / root.lstrip("/")):
            if "cgroup.procs" in files:
                with contextlib.suppress(OSError):
                    text = (Path(directory) / "cgroup.procs").read_text()
                    found.update(int(p) for p in text.split())
    return found


def _cgroup_kill_all(root: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (pids := cgroup_pids(root)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    if pids:
        raise ComponentFailed(f"processes in cgroup {root} would not die: {sorted(pids)}")


def _cgroup_remove(root: str) -> None:
    for hierarchy in _hierarchies():
        base = hierarchy / root.lstrip("/")
        if not base.is_dir():
            continue
        dirs = sorted((p for p in base.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for path in [*dirs, base]:
            with contextlib.suppress(OSError):
                path.rmdir()


# --------------------------------------------------------------------------
# processes inside the node


def _spawn(node: Node, name: str, argv: list[str]) -> int:
    """Start ``argv`` in the node's cgroup, logging like the control plane."""
    state = node.state
    (state / "logs").mkdir(parents=True, exist_ok=True)
    (state / "pids").mkdir(parents=True, exist_ok=True)
    cgroup = f"{node.cgroup_root}/daemons"
    with (state / "logs" / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=lambda: _cgroup_join(cgroup),
        )
    (state / "pids" / name).write_text(str(proc.pid))
    node.pids[name] = proc.pid
    return proc.pid


def _inside(node: Node) -> list[str]:
    """Prefix that runs a command in the node's network and mount namespaces."""
    return ["nsenter", f"--target={node.pids['holder']}", "--mount", "--net", "--"]


def _holder_script(node: Node) -> str:
    logs = node.paths.container_logs
    return "; ".join(
        [
            "set -e",
            # Private /run: shim sockets (/run/containerd), the iptables lock
            # and anything else a daemon puts there stay with this node.
            "mount -t tmpfs -o mode=0755 raykube-run /run",
            "mount -t tmpfs -o mode=0755 raykube-cni /var/lib/cni",
            f"mount --bind {logs} /var/log/containers",
            "exec sleep infinity",
        ]
    )


def _start_holder(node: Node) -> None:
    for path in _MOUNT_POINTS:
        path.mkdir(parents=True, exist_ok=True)
    node.paths.container_logs.mkdir(parents=True, exist_ok=True)
    argv = ["nsenter", f"--net={node.net.path}", "unshare", "--mount", "--propagation=slave"]
    pid = _spawn(node, "holder", [*argv, "sh", "-c", _holder_script(node)])
    # The holder is ready once its mounts are in place (it then sleeps).
    processes.wait_until(
        "holder",
        lambda: (
            "raykube-run" in Path(f"/proc/{pid}/mounts").read_text()
            and Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep")
        ),
        node.state,
        pid,
        timeout=15,
    )


def _wait_alive(node: Node, name: str, check: Callable[[], bool], timeout: float) -> None:
    processes.wait_until(name, check, node.state, node.pids[name], timeout=timeout)


# --------------------------------------------------------------------------
# certificates and config files


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _issue_certs(node: Node, cp: ControlPlane) -> dict[str, pki.KeyPair]:
    """Client certificates for the node's daemons, signed by the cluster CA."""
    ca = pki.KeyPair(cp.pki / "ca.crt", cp.pki / "ca.key")
    out = node.paths.pki
    net = node.net
    return {
        "kubelet": pki.issue(
            ca, out, "kubelet", common_name=f"system:node:{node.name}", org="system:nodes",
            client=True,
        ),
        "kubelet-serving": pki.issue(
            ca, out, "kubelet-serving", common_name=node.name, dns_names=(node.name,),
            ips=(net.node_ip,), server=True,
        ),
        "kube-proxy": pki.issue(
            ca, out, "kube-proxy", common_name="system:kube-proxy", client=True
        ),
        "coredns": pki.issue(
            ca, out, "coredns", common_name=node_config.COREDNS_USER, client=True
        ),
    }  # fmt: skip


def _write_configs(node: Node, cp: ControlPlane) -> dict[str, Path]:
    paths, net, cfg = node.paths, node.net, node.paths.config
    certs = _issue_certs(node, cp)
    ca = cp.pki / "ca.crt"
    # Inside the node namespace the relay answers on 127.0.0.1:<port>, which
    # the apiserver's certificate already names.
    server = f"https://127.0.0.1:{node.apiserver_port}"
    files: dict[str, Path] = {}
    for user in ("kubelet", "kube-proxy", "coredns"):
        doc = node_config.kubeconfig(server, ca, certs[user].cert, certs[user].key, user)
        files[f"{user}.kubeconfig"] = _write(cfg / f"{user}.kubeconfig", node_config.dumps(doc))
    sandbox = images.pause_ref()
    files["containerd"] = _write(
        cfg / "containerd.toml",
        node_config.containerd_toml(paths, sandbox, node_deps.CNI_BIN_DIR),
    )
    _write(
        paths.cni_conf_dir / "10-raykube.conflist",
        node_config.dumps(node_config.cni_conflist(net, paths)),
    )
    resolv = _write(cfg / "resolv.conf", "")
    kubelet = node_config.kubelet_config(net, paths, ca, f"{node.cgroup_root}", resolv)
    files["kubelet"] = _write(cfg / "kubelet.yaml", node_config.dumps(kubelet))
    proxy = node_config.kube_proxy_config(net, files["kube-proxy.kubeconfig"], node.name)
    files["kube-proxy"] = _write(cfg / "kube-proxy.yaml", node_config.dumps(proxy))
    files["corefile"] = _write(cfg / "Corefile", node_config.corefile(files["coredns.kubeconfig"]))
    return files


# --------------------------------------------------------------------------
# daemons


def _ctr_ok(node: Node) -> bool:
    sock = node.paths.containerd_socket
    if not sock.exists():
        return False
    args = ["ctr", f"--address={sock}", "version"]
    return subprocess.run(args, capture_output=True, timeout=10).returncode == 0


def _start_containerd(node: Node, config: Path) -> None:
    _spawn(node, "containerd", [*_inside(node), "containerd", f"--config={config}"])
    _wait_alive(node, "containerd", lambda: _ctr_ok(node), timeout=60)


def purge_containers(socket: Path) -> int:
    """Remove pods and containers an earlier run left in containerd's metadata.

    Their processes are long gone (the node's cgroup was emptied); without
    this the CRI plugin would report them to the new kubelet as stale pods.
    """
    removed = 0
    for kind in ("tasks", "containers"):
        listing = images.ctr(socket, kind, "ls", "-q").stdout.split()
        for ident in listing:
            if kind == "tasks":
                ident = ident.split()[0]
                subprocess.run(
                    ["ctr", f"--address={socket}", "-n", "k8s.io", "tasks", "rm", "-f", ident],
                    capture_output=True,
                )
            else:
                subprocess.run(
                    ["ctr", f"--address={socket}", "-n", "k8s.io", "containers", "rm", ident],
                    capture_output=True,
                )
                removed += 1
    return removed


def _apiserver_prefers_internal_ip(cp: ControlPlane) -> bool:
    """Whether the apiserver dials kubelets by InternalIP before Hostname."""
    pid = cp.pids.get("kube-apiserver")
    if not pid:
        return False
    with contextlib.suppress(OSError):
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        for arg in args:
            if arg.startswith(b"--kubelet-preferred-address-types="):
                return arg.split(b"=", 1)[1].startswith(b"InternalIP")
    return False


def _node_ready(cp: ControlPlane, name: str) -> bool:
    proc = cp.kubectl("get", "node", name, "-o", "json", check=False)
    if proc.returncode != 0:
        return False
    conditions = json.loads(proc.stdout)["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _start_kubelet(node: Node, cp: ControlPlane, files: dict[str, Path]) -> None:
    paths = node.paths
    argv = [
        *_inside(node),
        str(cp.bin / "kubelet"),
        f"--config={files['kubelet']}",
        f"--kubeconfig={files['kubelet.kubeconfig']}",
        f"--root-dir={paths.kubelet_root}",
        f"--cert-dir={paths.pki}",
        f"--hostname-override={node.name}",
        f"--node-ip={node.net.node_ip}",
        f"--node-labels={node_config.REAL_NODE_LABEL}={node_config.REAL_NODE_VALUE}",
        "--v=1",
    ]
    _spawn(node, "kubelet", argv)
    _wait_alive(node, "kubelet", lambda: _node_ready(cp, node.name), timeout=120)


# Machine-wide sysctls the kubelet sets at start (there is no opt-out; with
# protectKernelDefaults it refuses to start instead). They are put back when
# the last local node stops, so a test run leaves the machine as it found it.
KUBELET_TUNABLES = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)


def _tunables_file() -> Path:
    return versions.cache_root() / "nodes" / "kernel-tunables.json"


def _save_kernel_tunables() -> None:
    """Remember the values from before the first running node (only)."""
    path = _tunables_file()
    if path.exists():
        return
    values = {}
    for key in KUBELET_TUNABLES:
        with contextlib.suppress(OSError):
            values[key] = Path("/proc/sys", key).read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))


def _restore_kernel_tunables() -> None:
    path = _tunables_file()
    if not path.exists():
        return
    for key, value in json.loads(path.read_text()).items():
        with contextlib.suppress(OSError):
            Path("/proc/sys", key).write_text(value)
    path.unlink()


def _iptables_has(node: Node, needle: str) -> bool:
    argv = ["nsenter", f"--net={node.net.path}", "iptables", "-w", "-t", "nat", "-S"]
    return needle in subprocess.run(argv, capture_output=True, text=True).stdout


def _start_kube_proxy(node: Node, cp: ControlPlane, files: dict[str, Path]) -> None:
    argv = [*_inside(node), str(cp.bin / "kube-proxy"), f"--config={files['kube-proxy']}"]
    _spawn(node, "kube-proxy", [*argv, "--v=1"])
    # Ready once the kube-dns Service (made before) has its rules.
    _wait_alive(node, "kube-proxy", lambda: _iptables_has(node, "kube-system/kube-dns:dns"), 60)


def _coredns_ready(node: Node) -> bool:
    url = f"http://127.0.0.1:{node_config.COREDNS_READY_PORT}/ready"
    return netns.run_in(node.net.path, lambda: processes.http_ok(url))


def _start_coredns(node: Node, files: dict[str, Path]) -> None:
    argv = [*_inside(node), str(node_deps.coredns_bin()), "-conf", str(files["corefile"])]
    _spawn(node, "coredns", argv)
    _wait_alive(node, "coredns", lambda: _coredns_ready(node), timeout=60)


def _start_relay(node: Node) -> None:
    argv = [sys.executable, "-m", "localcluster.node_proxy", str(node.net.path)]
    _spawn(node, "apiserver-relay", [*argv, str(node.apiserver_port)])
    url = f"https://127.0.0.1:{node.apiserver_port}/livez"

    def answers() -> bool:
        # Any TLS answer (even 401) proves the relay reaches the apiserver.
        try:
            return netns.run_in(node.net.path, lambda: _https_answers(url))
        except OSError:
            return False

    _wait_alive(node, "apiserver-relay", answers, timeout=20)


def _https_answers(url: str) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(url, timeout=3, context=ctx).close()
    return True


# --------------------------------------------------------------------------
# up / down


def _service_cidr(cp: ControlPlane) -> str:
    return str(getattr(cp, "service_cidr", controlplane.SERVICE_CIDR))


def _owner_file(slot: int) -> Path:
    return versions.cache_root() / "nodes" / f"slot-{slot}.json"


def _prepare(cp: ControlPlane, slot: int | None, say: Callable[[str], None]) -> Node:
    problems = node_deps.problems(cp.bin)
    if problems:
        raise ComponentFailed("the real node cannot start:\n  " + "\n  ".join(problems))
    state = node_state(cp.state)
    node_down(cp.state)
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    if slot is None:
        slot = netns.claim_slot()
    net = NodeNet(slot, _service_cidr(cp))
    name = "raykube-node" if _apiserver_prefers_internal_ip(cp) else net.node_ip
    node = Node(state, net.slot, net.service_cidr, name, cp.apiserver_port)
    node.save()
    _owner_file(net.slot).parent.mkdir(parents=True, exist_ok=True)
    _owner_file(net.slot).write_text(json.dumps({"cluster_state": str(cp.state)}))
    say(f"node {name}: namespace {net.name}, pods {net.pod_cidr}")
    return node


def node_up(
    cp: ControlPlane,
    extra_images: Iterable[images.Image] = (),
    quiet: bool = False,
    slot: int | None = None,
) -> Node:
    """Start a real node attached to ``cp``; fails with the component's log.

    ``slot`` is one already claimed with ``netns.claim_slot`` (else one is).
    """
    progress = Progress("node")
    say = (lambda _m: None) if quiet else progress.step
    try:
        node = _prepare(cp, slot, say)
    except BaseException:
        if slot is not None:
            netns.teardown(slot)
        raise
    try:
        netns.configure(node.net)
        _cgroup_create(node.cgroup_root, "daemons")
        files = _write_configs(node, cp)
        say("starting the apiserver relay and the node's mount namespace")
        _start_relay(node)
        _start_holder(node)
        say("starting containerd")
        _start_containerd(node, files["containerd"])
        sock = node.paths.containerd_socket
        purge_containers(sock)
        for image in (images.ensure_pause(), *extra_images):
            if images.import_image(sock, image):
                say(f"imported {image.ref}")
        cp.kubectl(
            "apply",
            "-f",
            "-",
            input=_as_list(node_config.cluster_objects(node.net, node.apiserver_port)),
        )
        say("starting kubelet")
        _save_kernel_tunables()
        _start_kubelet(node, cp, files)
        say("starting kube-proxy and CoreDNS")
        _start_kube_proxy(node, cp, files)
        _start_coredns(node, files)
    except BaseException:
        node.save()
        node_down(cp.state)
        raise
    node.save()
    say(f"node {node.name} Ready")
    return node


def _as_list(items: list[dict[str, object]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def node_down(cluster_state: Path) -> list[str]:
    """Stop the node of ``cluster_state`` and remove every trace of it."""
    state = node_state(cluster_state)
    if not (state / "node.json").exists():
        return []
    node = Node.load(state)
    # A recorded PID counts only while it is still in this node's cgroup:
    # after a crash or reboot the number may belong to someone else.
    pids = {n: p for n, p in _read_pids(state).items() if _in_cgroup(p, node.cgroup_root)}
    clients = [n for n in STOP_ORDER[:3] if n in pids]
    _terminate([pids[n] for n in clients])
    if "containerd" in pids:
        # Containers first (their processes are in the node's cgroup), then
        # their metadata, so the next start begins clean.
        _cgroup_kill_all(f"{node.cgroup_root}/kubepods")
        with contextlib.suppress(Exception):
            purge_containers(node.paths.containerd_socket)
    servers = [n for n in STOP_ORDER[3:] if n in pids]
    _terminate([pids[n] for n in servers])
    _cgroup_kill_all(node.cgroup_root)
    _cgroup_remove(node.cgroup_root)
    netns.teardown(node.slot)
    _owner_file(node.slot).unlink(missing_ok=True)
    if not netns.existing_slots():
        _restore_kernel_tunables()
    shutil.rmtree(state / "pids", ignore_errors=True)
    (state / "node.json").unlink(missing_ok=True)
    return clients + servers


def _in_cgroup(pid: int, root: str) -> bool:
    try:
        return f":{root}/" in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie waits for a parent that may not be us)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _terminate(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM all at once, SIGKILL whoever is still there after ``grace``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while any(_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [p for p in pids if _running(p)]
        if not pids:
            return


def _read_pids(state: Path) -> dict[str, int]:
    pid_dir = state / "pids"
    if not pid_dir.is_dir():
        return {}
    return {p.name: int(p.read_text()) for p in pid_dir.iterdir() if p.read_text().strip()}


def leftovers(slot: int) -> list[str]:
    """What a stopped node could have left behind; empty when clean."""
    found = []
    root = f"/raykube-node-{slot}"
    if pids := cgroup_pids(root):
        found.append(f"processes in {root}: {sorted(pids)}")
    if any((h / root.lstrip("/")).exists() for h in _hierarchies()):
        found.append(f"cgroup {root}")
    if slot in netns.existing_slots():
        found.append(f"network namespace {netns.PREFIX}{slot}")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    if f"rk{slot}-host" in links:
        found.append(f"host link rk{slot}-host")
    mounts = Path("/proc/self/mountinfo").read_text()
    for marker in ("raykube-run", "raykube-cni", "/containerd/slot-", "/node/kubelet"):
        if marker in mounts:
            found.append(f"host mount matching {marker}")
    return found


def reap() -> list[int]:
    """Take down nodes whose cluster state is gone or whose daemons died."""
    reaped = []
    for slot in netns.existing_slots():
        owner = _owner_file(slot)
        cluster_state = None
        if owner.exists():
            cluster_state = Path(json.loads(owner.read_text())["cluster_state"])
        node_file = node_state(cluster_state) / "node.json" if cluster_state else None
        if node_file and node_file.exists():
            node = Node.load(node_file.parent)
            if processes.alive(node.pids.get("holder", 0) or 0) and _cluster_alive(cluster_state):
                continue
            node_down(cluster_state)  # type: ignore[arg-type]
        else:
            _cgroup_kill_all(f"/raykube-node-{slot}")
            _cgroup_remove(f"/raykube-node-{slot}")
            netns.teardown(slot)
            owner.unlink(missing_ok=True)
        reaped.append(slot)
    return reaped


def _cluster_alive(cluster_state: Path | None) -> bool:
    if cluster_state is None:
        return False
    running = controlplane.status(cluster_state)
    return bool(running) and running.get("kube-apiserver", False)


def status(cluster_state: Path) -> dict[str, bool]:
    state = node_state(cluster_state)
    return {name: processes.alive(pid) for name, pid in sorted(_read_pids(state).items())}


# --------------------------------------------------------------------------
# whole local cluster: control plane + kwok nodes + this node


@dataclass
class LocalCluster:
    cp: ControlPlane
    node: Node

    def load_image(self, image: images.Image) -> None:
        """Make a built image available to pods on the real node."""
        images.import_image(self.node.paths.containerd_socket, image)


def cut_apiserver_connections(node: Node) -> None:
    """Reset every connection through the node's apiserver relay at once (a
    fault for tests: the watches of the kubelet, kube-proxy and every pod,
    the operator's included, end; new connections go through as before)."""
    os.kill(node.pids["apiserver-relay"], signal.SIGUSR1)


def cluster_up(
    state: Path | None = None,
    *,
    crds: Path | None = None,
    extra_images: Iterable[images.Image] = (),
    quiet: bool = False,
    nodes: kwok.NodePlan | None = None,
) -> LocalCluster:
    """Control plane with kwok nodes (tainted, so real pods land here) + node."""
    state = state or controlplane.default_state()
    cluster_down(state)
    # The slot comes first: it decides the Service range the control plane
    # is given (where it accepts one), so concurrent clusters never share
    # a host route.
    slot = netns.claim_slot()
    try:
        plan = dataclasses.replace(nodes or kwok.NodePlan(), taint_all=True)
        cp = _control_plane_up(state, crds, plan, slot, quiet)
    except BaseException:
        netns.teardown(slot)
        raise
    try:
        node = node_up(cp, extra_images, quiet=quiet, slot=slot)
    except BaseException:
        controlplane.down(state)
        raise
    return LocalCluster(cp, node)


def _control_plane_up(
    state: Path, crds: Path | None, plan: kwok.NodePlan, slot: int, quiet: bool
) -> ControlPlane:
    if "service_cidr" in inspect.signature(controlplane.up).parameters:
        cidr = netns.service_cidr_for(slot)
        up = cast(Any, controlplane.up)
        return cast(ControlPlane, up(state, crds=crds, nodes=plan, quiet=quiet, service_cidr=cidr))
    return controlplane.up(state, crds=crds, nodes=plan, quiet=quiet)


def cluster_down(state: Path | None = None) -> list[str]:
    state = state or controlplane.default_state()
    return node_down(state) + controlplane.down(state)


# --------------------------------------------------------------------------
# command line


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Sub-commands the lead's CLI can mount as they are."""
    sub.add_parser("node-deps", help="install the node's Debian packages and build CoreDNS")
    up = sub.add_parser("node-up", help="control plane + kwok nodes + a real node")
    up.add_argument("--attach", action="store_true", help="attach to a running control plane")
    sub.add_parser("node-down", help="stop the real node and the control plane")
    sub.add_parser("node-status", help="show the node's daemons")
    sub.add_parser("node-reap", help="remove nodes left behind by dead clusters")


def run_cli(cmd: str, state: Path, attach: bool = False) -> int:
    repo = Path(__file__).resolve().parent.parent
    if cmd == "node-deps":
        node_deps.ensure()
    elif cmd == "node-up":
        if attach:
            node = node_up(ControlPlane.load(state))
        else:
            node = cluster_up(state, crds=repo / "crds").node
        print(f"export KUBECONFIG={state / 'admin.kubeconfig'}")
        print(f"node {node.name} in network namespace {node.net.name}")
    elif cmd == "node-down":
        print("stopped: " + (", ".join(cluster_down(state)) or "nothing was running"))
    elif cmd == "node-status":
        running = status(state)
        for name, ok in running.items():
            print(f"{name:18} {'running' if ok else 'DEAD'}")
        return 0 if running and all(running.values()) else 1
    elif cmd == "node-reap":
        print("reaped slots:", reap())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.node")
    parser.add_argument("--state", type=Path, default=None)
    add_parsers(parser.add_subparsers(dest="cmd", required=True))
    args = parser.parse_args(argv)
    state = args.state or controlplane.default_state()
    return run_cli(args.cmd, state, getattr(args, "attach", False))


if __name__ == "__main__":
    raise SystemExit(main())
