"""The real node's own network namespace, and how the host talks to it.

Servers in the host's namespace may bind only to 127.0.0.0/8, yet a node
needs addresses that pods can reach: a bridge for pods, a kubelet the
apiserver can call, an apiserver endpoint behind the ``kubernetes`` Service,
a DNS server. So the whole node (containerd, kubelet, kube-proxy, CoreDNS,
the pods' bridge and every pod namespace below it) lives in a network
namespace that this module creates, ``raykube-<slot>``. A veth pair links it
to the host, with host routes for the pod and Service ranges only, so tests
on the host reach pods and ClusterIPs. The namespace has no default route
and the host does not forward, so nothing in it can reach any address
outside this machine.

Each concurrent node takes a *slot*: its namespace name, its veth names and
its private address ranges all derive from it, so two clusters on one
machine never collide.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from localcluster.processes import ComponentFailed

T = TypeVar("T")
MAX_SLOTS = 8
NETNS_DIR = Path("/run/netns")
PREFIX = "raykube-"
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class NodeNet:
    """Names and addresses of one node, all derived from its slot (pure)."""

    slot: int
    service_cidr: str

    @property
    def name(self) -> str:
        return f"{PREFIX}{self.slot}"

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    @property
    def host_if(self) -> str:
        return f"rk{self.slot}-host"

    @property
    def node_if(self) -> str:
        return f"rk{self.slot}-node"

    @property
    def host_ip(self) -> str:
        return f"10.243.{self.slot}.1"

    @property
    def node_ip(self) -> str:
        """The Node's InternalIP: kubelet, the apiserver relay and DNS listen here."""
        return f"10.243.{self.slot}.2"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.slot}.0/24"

    @property
    def pod_gateway(self) -> str:
        return f"10.244.{self.slot}.1"

    def service_ip(self, offset: int) -> str:
        network = ipaddress.ip_network(self.service_cidr)
        return str(network.network_address + offset)

    @property
    def dns_ip(self) -> str:
        """ClusterIP of kube-dns, the conventional tenth address."""
        return self.service_ip(10)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise ComponentFailed(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc


def _in_ns(net: NodeNet, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a command in the node namespace only (host mounts, host /proc)."""
    proc = subprocess.run(["nsenter", f"--net={net.path}", *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ComponentFailed(f"in {net.name}: {' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc


def service_cidr_for(slot: int) -> str:
    """A Service range per slot, for control planes that accept one; slot 0
    keeps the control plane's default so a lone cluster looks standard."""
    return "10.96.0.0/16" if slot == 0 else f"10.{96 + slot}.0.0/16"


def claim_slot() -> int:
    """Create the first free ``raykube-<n>`` namespace; creation is the lock."""
    NETNS_DIR.mkdir(parents=True, exist_ok=True)
    for slot in range(MAX_SLOTS):
        if _ip("netns", "add", f"{PREFIX}{slot}", check=False).returncode == 0:
            return slot
    raise ComponentFailed(
        f"all {MAX_SLOTS} node slots are taken (ip netns list); "
        "stop other local clusters or run `python -m localcluster.node node-reap`"
    )


def configure(net: NodeNet) -> None:
    """veth pair, addresses, forwarding in the namespace, host routes."""
    _ip("link", "add", net.host_if, "type", "veth", "peer", "name", net.node_if, "netns", net.name)
    _ip("addr", "add", f"{net.host_ip}/30", "dev", net.host_if)
    _ip("link", "set", net.host_if, "up")
    _in_ns(net, "ip", "link", "set", "lo", "up")
    _in_ns(net, "ip", "addr", "add", f"{net.node_ip}/30", "dev", net.node_if)
    _in_ns(net, "ip", "link", "set", net.node_if, "up")
    # Routing between the pods' bridge and the veth happens in the node's
    # namespace; bridged pod-to-pod replies must traverse iptables so that
    # Service NAT is undone (the kube-proxy requirement).
    # Service traffic that kube-proxy does not rewrite (no endpoints yet)
    # must still be routable, as on a node with a default route: only then
    # does it reach kube-proxy's REJECT rule and fail fast with "connection
    # refused" instead of "network unreachable". The route ends in a veth
    # whose peer stays down, so what it carries is dropped: nothing leaves
    # the namespace. (The kernel here has no dummy interfaces.)
    _in_ns(net, "ip", "link", "add", "rksvc0", "type", "veth", "peer", "name", "rksvc1")
    _in_ns(net, "ip", "link", "set", "rksvc0", "up")
    _in_ns(net, "ip", "route", "add", net.service_cidr, "dev", "rksvc0")
    # What reaches the dead end is refused there at once, before conntrack
    # confirms it: an untranslated SYN that was merely dropped stayed in
    # conntrack (SYN_SENT, 120 s) without NAT, and a later connection from the
    # same client port matched it and failed too (docs/e2e.md).
    _in_ns(net, "iptables", "-w", "-A", "FORWARD", "-o", "rksvc0", "-j", "REJECT")
    _in_ns(net, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    _in_ns(net, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1")
    for cidr in (net.pod_cidr, net.service_cidr):
        proc = _ip("route", "add", cidr, "via", net.node_ip, "dev", net.host_if, check=False)
        if proc.returncode != 0:
            holder = _ip("route", "show", cidr, check=False).stdout.strip()
            raise ComponentFailed(
                f"cannot route {cidr} to node {net.name}: {proc.stderr.strip()} "
                f"(already routed: {holder or 'no'}); another local cluster with a real "
                "node uses the same Service range"
            )


def teardown(slot: int) -> None:
    """Delete the veth (its routes go with it) and the namespace name.

    The namespace itself disappears once the last process in it exits.
    """
    _ip("link", "del", f"rk{slot}-host", check=False)
    _ip("netns", "del", f"{PREFIX}{slot}", check=False)


def existing_slots() -> list[int]:
    if not NETNS_DIR.is_dir():
        return []
    slots = []
    for entry in NETNS_DIR.iterdir():
        suffix = entry.name.removeprefix(PREFIX)
        if entry.name.startswith(PREFIX) and suffix.isdigit():
            slots.append(int(suffix))
    return sorted(slots)


def setns(path: Path | str) -> None:
    """Move the calling thread into the network namespace at ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def run_in(path: Path, fn: Callable[[], T]) -> T:
    """Call ``fn`` on a throwaway thread that lives in the namespace ``path``.

    Only that thread changes namespace, so the caller (say, a pytest
    process) stays in the host's namespace.
    """
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            setns(path)
            outcome["value"] = fn()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=f"netns-{path.name}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
