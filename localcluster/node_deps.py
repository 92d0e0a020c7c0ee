"""What the real node needs besides the Kubernetes binaries, pinned.

Debian packages give the container runtime, CNI plugins, iptables and the
image tools; CoreDNS is built through the Go module proxy like the
Kubernetes binaries. Both steps are idempotent: a second call finds
everything in place and does nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from localcluster import versions
from localcluster.processes import ComponentFailed
from localcluster.progress import Progress

# Debian bookworm versions these were written and measured against. A point
# release may replace one on the mirror; then the candidate is installed and
# the difference is reported (never silently).
DEB_PACKAGES: dict[str, str] = {
    "containerd": "1.6.20~ds1-1+deb12u3",
    "runc": "1.1.5+ds1-1+deb12u1",
    "containernetworking-plugins": "1.1.1+ds1-3+b5",
    "iptables": "1.8.9-2",
    "conntrack": "1:1.4.7-1+b2",
    "iproute2": "6.1.0-3",
    "buildah": "1.28.2+ds1-3+deb12u1+b3",
    "mmdebstrap": "1.3.5-7",
    "util-linux": "2.38.1-5+deb12u3",
}
# Debian's plugin directory (upstream's /opt/cni/bin is not used).
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
COREDNS_MODULE = "github.com/coredns/coredns"
COREDNS = "v1.14.7"
# Host tools the node calls by name.
TOOLS = ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "iptables", "ip", "nsenter")


def coredns_bin() -> Path:
    return versions.cache_root() / "bin" / f"coredns-{COREDNS}" / "coredns"


def installed_version(package: str) -> str | None:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", package],
        capture_output=True,
        text=True,
    )
    status, _, version = proc.stdout.partition(" ")
    return version if proc.returncode == 0 and status == "installed" else None


def missing_packages() -> dict[str, str]:
    """Packages not installed at all (a different version counts as present)."""
    return {p: v for p, v in DEB_PACKAGES.items() if installed_version(p) is None}


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], capture_output=True, text=True, env=env)


def install_packages(progress: Progress) -> list[str]:
    """apt-get install the pinned versions of what is missing."""
    missing = missing_packages()
    if not missing:
        return []
    progress.step(f"apt-get install {' '.join(sorted(missing))}")
    _apt("update")
    pinned = [f"{p}={v}" for p, v in sorted(missing.items())]
    proc = _apt("install", "-y", "--no-install-recommends", *pinned)
    if proc.returncode != 0:
        # The pinned version left the mirror: take the candidate, say so.
        progress.step("pinned versions unavailable; installing the current candidates")
        proc = _apt("install", "-y", "--no-install-recommends", *sorted(missing))
    if proc.returncode != 0:
        raise ComponentFailed("apt-get install failed:\n" + proc.stdout[-2000:] + proc.stderr)
    for package, wanted in sorted(missing.items()):
        got = installed_version(package)
        if got != wanted:
            progress.step(f"note: {package} {got} installed (pinned {wanted})")
    return sorted(missing)


def build_coredns(progress: Progress) -> Path:
    """go install the pinned CoreDNS into the cache (no-op when present)."""
    target = coredns_bin()
    if target.exists():
        return target
    if shutil.which("go") is None:
        raise ComponentFailed("go is missing: CoreDNS is built through the Go module proxy")
    progress.step(f"building CoreDNS {COREDNS} (go install; a few minutes the first time)")
    env = {**os.environ, "CGO_ENABLED": "0", "GOBIN": str(target.parent), "GOFLAGS": ""}
    argv = ["go", "install", "-trimpath", "-ldflags=-s", f"{COREDNS_MODULE}@{COREDNS}"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not target.exists():
        raise ComponentFailed(f"building CoreDNS failed:\n{proc.stderr[-3000:]}")
    return target


def ensure(progress: Progress | None = None) -> None:
    """Install the Debian packages and build CoreDNS; idempotent."""
    progress = progress or Progress("node-deps")
    install_packages(progress)
    build_coredns(progress)


def problems(bin_dir: Path) -> list[str]:
    """Everything the node would miss, each with what to do about it."""
    found = []
    for name in ("kubelet", "kube-proxy"):
        if not (bin_dir / name).exists():
            found.append(f"{name} not in {bin_dir}: run `python -m localcluster build`")
    if not coredns_bin().exists():
        found.append(f"CoreDNS not at {coredns_bin()}: run `python -m localcluster.node deps`")
    for tool in TOOLS:
        if shutil.which(tool) is None:
            found.append(f"{tool} not on PATH: run `python -m localcluster.node deps`")
    for plugin in CNI_PLUGINS:
        if not (CNI_BIN_DIR / plugin).exists():
            found.append(f"CNI plugin {plugin} not in {CNI_BIN_DIR}: run node deps")
    return found
