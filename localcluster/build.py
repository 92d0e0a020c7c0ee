"""Build the pinned Kubernetes, etcd, kwok and helm binaries from source,
and (for the parity tier only) KubeRay's operator with its CRDs.

Everything comes through the Go module proxy. ``k8s.io/kubernetes`` cannot be
``go install``-ed directly because its go.mod points every ``k8s.io/*``
staging module at a local directory, so we build from a throwaway module that
requires it and maps each staging module to its published ``v0.x.y``.
A second run finds the binaries and does nothing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from localcluster import versions
from localcluster.progress import Progress

_REPLACE_LINE = re.compile(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/")


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-buildvcs=false")
    env["CGO_ENABLED"] = env.get("CGO_ENABLED", "0")
    env["GOTOOLCHAIN"] = "local"
    return env


def _go() -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise SystemExit(
            "localcluster build: Go is not installed; install Go >= 1.24 "
            "(the Kubernetes binaries are built from source)"
        )
    return go


def _run(cmd: list[str], cwd: Path, progress: Progress, what: str) -> None:
    progress.step(what)
    proc = subprocess.run(cmd, cwd=cwd, env=_go_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"localcluster build: {what} failed (exit {proc.returncode})")


def _staging_modules(gomod_text: str) -> list[str]:
    return [m.group(1) for line in gomod_text.splitlines() if (m := _REPLACE_LINE.match(line))]


def throwaway_gomod(kubernetes_gomod: str) -> str:
    """The go.mod of the module that builds Kubernetes (pure, unit-tested)."""
    lines = [
        "module raykube.local/k8sbuild",
        "",
        "go 1.24.0",
        "",
        f"require k8s.io/kubernetes {versions.KUBERNETES}",
        "",
        "replace (",
    ]
    lines += [f"\t{mod} => {mod} {versions.STAGING}" for mod in _staging_modules(kubernetes_gomod)]
    lines.append(")")
    return "\n".join(lines) + "\n"


def _ldflags() -> str:
    major, minor = versions.KUBERNETES.removeprefix("v").split(".")[:2]
    pairs = {
        "gitVersion": versions.KUBERNETES,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.{k}={v}" for k, v in pairs.items()]
    return " ".join(flags)


def _kubernetes(out: Path, progress: Progress) -> None:
    go = _go()
    work = versions.cache_root() / "build" / f"k8s-{versions.KUBERNETES}"
    work.mkdir(parents=True, exist_ok=True)
    progress.step(f"resolving k8s.io/kubernetes@{versions.KUBERNETES}")
    info = subprocess.run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@{versions.KUBERNETES}"],
        cwd=work,
        env=_go_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    gomod = Path(json.loads(info.stdout)["GoMod"]).read_text()
    (work / "go.mod").write_text(throwaway_gomod(gomod))
    (work / "tools.go").write_text(
        "//go:build tools\n\npackage tools\n\n"
        + "".join(f'import _ "k8s.io/kubernetes/cmd/{c}"\n' for c in versions.KUBE_COMMANDS)
        + f'import _ "{versions.ETCD_MODULE}"\n'
    )
    _run([go, "mod", "tidy", "-e"], work, progress, "downloading modules (go mod tidy)")
    targets = [("etcd", versions.ETCD_MODULE)] + [
        (c, f"k8s.io/kubernetes/cmd/{c}") for c in versions.KUBE_COMMANDS
    ]
    for name, pkg in targets:
        if (out / name).exists():
            continue
        flags = _ldflags() if name != "etcd" else "-s -w"
        _run(
            [go, "build", "-trimpath", f"-ldflags={flags}", "-o", str(out / name), pkg],
            work,
            progress,
            f"building {name}",
        )


def _go_install(out: Path, pkg: str, name: str, progress: Progress) -> None:
    if (out / name).exists():
        return
    env_out = {"GOBIN": str(out)}
    progress.step(f"building {name} ({pkg})")
    versions.cache_root().mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [_go(), "install", "-trimpath", "-ldflags=-s -w", pkg],
        cwd=versions.cache_root(),
        env=_go_env() | env_out,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-8000:])
        raise SystemExit(f"localcluster build: building {name} failed")


REQUIRED = ("etcd", *versions.KUBE_COMMANDS, "kwok", "helm")


def missing(out: Path | None = None) -> list[str]:
    out = out or versions.bin_dir()
    return [b for b in REQUIRED if not (out / b).exists()]


def build_all() -> Path:
    """Build whatever is missing; return the directory holding the binaries."""
    out = versions.bin_dir()
    if not missing(out):
        print(f"localcluster: binaries present in {out}", flush=True)
        return out
    started = time.monotonic()
    progress = Progress("build", started)
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    _kubernetes(tmp, progress)
    _go_install(tmp, f"sigs.k8s.io/kwok/cmd/kwok@{versions.KWOK}", "kwok", progress)
    _go_install(tmp, f"helm.sh/helm/v3/cmd/helm@{versions.HELM}", "helm", progress)
    # Rename at the end so an interrupted build is never mistaken for a whole one.
    tmp.rename(out)
    progress.step(f"done: binaries in {out}")
    return out


#: What ``go install`` names KubeRay's operator binary (its package's last element).
KUBERAY_BINARY = "ray-operator"


def _copy_crds(source: Path, dest: Path) -> None:
    """Every CRD manifest of a module's directory; none found is a failed build."""
    crds = sorted(source.glob("*.yaml"))
    if not crds:
        raise SystemExit(f"localcluster build: no CRDs in {source}")
    dest.mkdir()
    for crd in crds:
        shutil.copyfile(crd, dest / crd.name)


def _partial(out: Path) -> Path:
    """An empty directory beside ``out`` to build into (``_finish`` renames it)."""
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _finish(tmp: Path, out: Path) -> None:
    """Renamed at the end, as for Kubernetes: an interrupted build is never
    taken for a whole one."""
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def kuberay_binary() -> Path:
    return versions.kuberay_dir() / KUBERAY_BINARY


def kuberay_crds() -> Path:
    return versions.kuberay_dir() / "crds"


def _module_dir(module: str, version: str) -> Path:
    """Where the Go module cache holds ``module@version`` (downloaded if needed)."""
    proc = subprocess.run(
        [_go(), "mod", "download", "-json", f"{module}@{version}"],
        cwd=versions.cache_root(),
        env=_go_env(),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"localcluster build: downloading {module}@{version} failed")
    return Path(json.loads(proc.stdout)["Dir"])


def build_kuberay(progress: Progress | None = None) -> Path:
    """KubeRay's operator and its CRDs in ``versions.kuberay_dir()`` (no-op when present).

    The CRDs are copied out of the module cache so that the tier needs neither
    Go nor the module cache once this has run."""
    out = versions.kuberay_dir()
    if kuberay_binary().exists() and any(kuberay_crds().glob("*.yaml")):
        return out
    progress = progress or Progress("build-kuberay")
    tmp = _partial(out)
    pkg = f"{versions.KUBERAY_MODULE}@{versions.KUBERAY}"
    _go_install(tmp, pkg, KUBERAY_BINARY, progress)
    bases = _module_dir(versions.KUBERAY_MODULE, versions.KUBERAY) / "config" / "crd" / "bases"
    _copy_crds(bases, tmp / "crds")
    _finish(tmp, out)
    progress.step(f"done: KubeRay {versions.KUBERAY} in {out}")
    return out


#: Traefik's binary and the Gateway API CRDs it serves (``gateway_crds()``).
TRAEFIK_BINARY = "traefik"


def traefik_binary() -> Path:
    return versions.gateway_dir() / TRAEFIK_BINARY


def gateway_crds() -> Path:
    return versions.gateway_dir() / "gateway-api-crds"


_GO_DIRECTIVE = re.compile(r"^go\s+(\S+)\s*$", re.MULTILINE)
_REPLACE_BLOCK = re.compile(r"^replace\s*\((.*?)^\)", re.MULTILINE | re.DOTALL)
_REPLACE_ONE = re.compile(r"^replace\s+([^(\s].*)$", re.MULTILINE)


def _replaces(gomod_text: str) -> list[str]:
    """The replace directives of a go.mod, one ``old [v] => new [v]`` a line."""
    found = [m.group(1) for m in _REPLACE_ONE.finditer(gomod_text)]
    for block in _REPLACE_BLOCK.finditer(gomod_text):
        found += block.group(1).splitlines()
    # A comment starts with "//" after a space; module paths never hold one.
    directives = (line.split(" //")[0].strip() for line in found)
    return [line for line in directives if "=>" in line]


def traefik_gomod(traefik_gomod_text: str) -> str:
    """The go.mod of the module that builds Traefik (pure, unit-tested).

    ``go install pkg@version`` refuses a module whose go.mod has replace
    directives, and Traefik's has some (forks of two libraries): a main module
    that requires Traefik and repeats them builds it unchanged. A replace by a
    local directory cannot be repeated (the proxy's zip has no such directory),
    so it is refused with the reason."""
    local = [r for r in _replaces(traefik_gomod_text) if r.split("=>")[1].strip().startswith(".")]
    if local:
        raise ValueError(f"Traefik's go.mod replaces a module by a directory: {local[0]}")
    go = _GO_DIRECTIVE.search(traefik_gomod_text)
    lines = [
        "module raykube.local/traefikbuild",
        "",
        f"go {go.group(1) if go else '1.24.0'}",
        "",
        f"require {versions.TRAEFIK_MODULE} {versions.TRAEFIK}",
        "",
        "replace (",
        *[f"\t{r}" for r in _replaces(traefik_gomod_text)],
        ")",
    ]
    return "\n".join(lines) + "\n"


def _traefik(out: Path, progress: Progress) -> None:
    work = versions.cache_root() / "build" / f"traefik-{versions.TRAEFIK}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    progress.step(f"resolving {versions.TRAEFIK_MODULE}@{versions.TRAEFIK}")
    module = _module_dir(versions.TRAEFIK_MODULE, versions.TRAEFIK)
    try:
        gomod = traefik_gomod((module / "go.mod").read_text())
    except ValueError as exc:
        raise SystemExit(f"localcluster build: {exc}") from exc
    (work / "go.mod").write_text(gomod)
    pkg = f"{versions.TRAEFIK_MODULE}/cmd/traefik"
    (work / "tools.go").write_text(f'//go:build tools\n\npackage tools\n\nimport _ "{pkg}"\n')
    _run([_go(), "mod", "tidy", "-e"], work, progress, "downloading Traefik's modules")
    flags = f"-s -w -X {versions.TRAEFIK_MODULE}/pkg/version.Version={versions.TRAEFIK}"
    _run(
        [_go(), "build", "-trimpath", f"-ldflags={flags}", "-o", str(out / TRAEFIK_BINARY), pkg],
        work,
        progress,
        f"building traefik {versions.TRAEFIK}",
    )


def build_gateway(progress: Progress | None = None) -> Path:
    """Traefik and the Gateway API CRDs (standard channel) in
    ``versions.gateway_dir()`` (no-op when present)."""
    out = versions.gateway_dir()
    if traefik_binary().exists() and any(gateway_crds().glob("*.yaml")):
        return out
    progress = progress or Progress("build-gateway")
    tmp = _partial(out)
    _traefik(tmp, progress)
    standard = (
        _module_dir(versions.GATEWAY_API_MODULE, versions.GATEWAY_API)
        / "config"
        / "crd"
        / "standard"
    )
    _copy_crds(standard, tmp / "gateway-api-crds")
    _finish(tmp, out)
    progress.step(f"done: Traefik {versions.TRAEFIK}, Gateway API {versions.GATEWAY_API} in {out}")
    return out
