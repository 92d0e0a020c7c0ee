"""Container images without a registry.

Three kinds of image, all built on this machine and cached by a hash of their
inputs under ``cache_root()/images``:

* the pause image that containerd's pod sandboxes need: a few lines of C,
  linked statically, alone in an otherwise empty image;
* a Debian bookworm base with Python 3.11, made by ``mmdebstrap`` from Debian
  packages only;
* any of the project's Dockerfiles, built by ``buildah`` on that base
  (``--build-arg BASE_IMAGE=...``).

Every image is kept as a ``docker-archive`` tarball, the one format that
both ``buildah pull`` and ``ctr images import`` read, and is imported into
containerd's ``k8s.io`` namespace, where the kubelet finds it, so pods use
``imagePullPolicy: Never`` or ``IfNotPresent``.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster import controlplane, node_record, versions
from localcluster.processes import ComponentFailed
from localcluster.progress import Progress

# Bump to rebuild every cached image (the hash of each image includes it).
FORMAT_VERSION = "1"
REPO_PREFIX = "localhost/raykube"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# What the base image holds: Python 3.11 with venv and pip, like the public
# python:3.11 images the Dockerfiles are written for, and CA certificates so
# `pip install` can verify PyPI.
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "ca-certificates")

PAUSE_C = r"""
/* The pod sandbox's first process: hold the namespaces, reap orphans, and
 * exit promptly when the runtime stops the sandbox. */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction on_stop = {0}, on_child = {0};
    on_stop.sa_handler = stop;
    on_child.sa_handler = reap;
    on_child.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGINT, &on_stop, NULL);
    sigaction(SIGTERM, &on_stop, NULL);
    sigaction(SIGCHLD, &on_child, NULL);
    for (;;) {
        pause();
    }
}
"""


@dataclass(frozen=True)
class Image:
    """A built image: its reference and the docker-archive that holds it."""

    ref: str
    archive: Path
    key: str


def images_dir() -> Path:
    return versions.cache_root() / "images"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run(argv: list[str], what: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a build tool; on failure say which step failed and show its output."""
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise ComponentFailed(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{tail}")
    return proc


# --------------------------------------------------------------------------
# docker-archive writing (stdlib only)


def _image_config(diff_id: str, config: dict[str, Any]) -> bytes:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created_by": "raykube localcluster.images"}],
    }
    return json.dumps(doc, sort_keys=True).encode()


def write_archive(ref: str, layer: Path, config: dict[str, Any], out: Path) -> None:
    """Wrap one uncompressed layer tarball as a single-layer docker-archive."""
    digest = hashlib.sha256()
    with layer.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    diff_id = digest.hexdigest()
    cfg = _image_config(diff_id, config)
    cfg_name = f"{_sha256(cfg)}.json"
    manifest = json.dumps(
        [{"Config": cfg_name, "RepoTags": [ref], "Layers": [f"{diff_id}/layer.tar"]}]
    ).encode()
    tmp = out.with_suffix(f".{os.getpid()}.partial")  # concurrent builders
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, cfg_name, cfg)
        tar.add(layer, arcname=f"{diff_id}/layer.tar")
        _add_bytes(tar, "manifest.json", manifest)
    tmp.rename(out)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


# --------------------------------------------------------------------------
# pause


def pause_key() -> str:
    return _sha256(f"{FORMAT_VERSION}\n{PAUSE_C}".encode())[:16]


def pause_ref() -> str:
    return f"{REPO_PREFIX}/pause:{pause_key()}"


def ensure_pause() -> Image:
    """The sandbox image: a static binary in an otherwise empty image."""
    key = pause_key()
    image = Image(pause_ref(), images_dir() / f"pause-{key}.tar", key)
    if image.archive.exists():
        return image
    images_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="raykube-pause-") as tmp:
        work = Path(tmp)
        (work / "pause.c").write_text(PAUSE_C)
        binary = work / "pause"
        _run(["cc", "-static", "-Os", "-s", "-o", str(binary), str(work / "pause.c")], "cc pause")
        layer = work / "layer.tar"
        with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
            _add_bytes(tar, "pause", binary.read_bytes(), mode=0o755)
        config = {"Entrypoint": ["/pause"], "User": "65535:65535"}
        write_archive(image.ref, layer, config, image.archive)
    return image


# --------------------------------------------------------------------------
# base image (mmdebstrap)

# Make the Debian base behave like the public python images the project's
# Dockerfiles target: `python` exists, and `pip install` into the system
# interpreter is allowed (Debian marks it externally managed, PEP 668).
_BASE_HOOK = (
    'ln -sf python3 "$1/usr/bin/python" && '
    'rm -f "$1"/usr/lib/python3.*/EXTERNALLY-MANAGED && '
    'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin'
)


def base_key() -> str:
    parts = [FORMAT_VERSION, SUITE, MIRROR, *BASE_PACKAGES, _BASE_HOOK]
    return _sha256("\n".join(parts).encode())[:16]


def base_ref() -> str:
    return f"{REPO_PREFIX}/base-python:{base_key()}"


def _filter_rootfs(src: Path, dst: Path) -> None:
    """Copy the rootfs tarball without device nodes: runtimes mount /dev."""
    with tarfile.open(src) as inp, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as out:
        for member in inp:
            if member.ischr() or member.isblk() or member.isfifo():
                continue
            fileobj = inp.extractfile(member) if member.isfile() else None
            out.addfile(member, fileobj)


def ensure_base(progress: Progress | None = None) -> Image:
    """Debian bookworm + Python 3.11 from Debian packages, as an image archive."""
    key = base_key()
    image = Image(base_ref(), images_dir() / f"base-python-{key}.tar", key)
    if image.archive.exists():
        return image
    if shutil.which("mmdebstrap") is None:
        raise ComponentFailed("mmdebstrap is missing: run `python -m localcluster.node deps`")
    images_dir().mkdir(parents=True, exist_ok=True)
    if progress:
        progress.step(f"building base image {image.ref} with mmdebstrap (a few minutes)")
    with tempfile.TemporaryDirectory(prefix="raykube-base-", dir=images_dir()) as tmp:
        work = Path(tmp)
        rootfs = work / "rootfs.tar"
        argv = [
            "mmdebstrap",
            "--variant=minbase",
            "--mode=root",
            "--format=tar",
            '--aptopt=APT::Install-Recommends "false"',
            f"--include={','.join(BASE_PACKAGES)}",
            f"--customize-hook={_BASE_HOOK}",
            SUITE,
            str(rootfs),
            MIRROR,
        ]
        _run(argv, "mmdebstrap (base image)")
        layer = work / "layer.tar"
        _filter_rootfs(rootfs, layer)
        rootfs.unlink()
        config = {
            "Env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
            ],
            "Cmd": ["python3"],
        }
        write_archive(image.ref, layer, config, image.archive)
    return image


# --------------------------------------------------------------------------
# Dockerfile builds (buildah)


def _buildah_root() -> Path:
    return versions.cache_root() / "buildah"


@contextlib.contextmanager
def _buildah() -> Iterator[list[str]]:
    """buildah with its storage under the cache dir, in a private mount
    namespace so that no overlay mount it makes can outlive the command."""
    if shutil.which("buildah") is None:
        raise ComponentFailed("buildah is missing: run `python -m localcluster.node deps`")
    root = _buildah_root()
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="raykube-buildah-run-") as runroot:
        yield [
            "unshare",
            "--mount",
            "--propagation=private",
            "buildah",
            f"--root={root / 'storage'}",
            f"--runroot={runroot}",
            "--storage-driver=overlay",
        ]


def _ignore_patterns(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.exists():
        return []
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    return [ln.rstrip("/") for ln in lines if ln and not ln.startswith(("#", "!"))]


def _ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    for pattern in patterns:
        pattern = pattern.removeprefix("./").removeprefix("**/")
        if fnmatch.fnmatch(rel, pattern) or any(fnmatch.fnmatch(p, pattern) for p in parts):
            return True
    return False


# Never part of what an image depends on, even without a .dockerignore.
_ALWAYS_IGNORED = [".git", ".venv", "__pycache__", "*.pyc"]


def _walk(root: Path, context: Path, patterns: list[str]) -> list[Path]:
    if root.is_file():
        return [root]
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, context)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(d for d in dirnames if not _ignored(rel_dir + d, patterns))
        found += [
            Path(dirpath) / name
            for name in sorted(filenames)
            if not _ignored(rel_dir + name, patterns)
        ]
    return found


def _instructions(dockerfile_text: str) -> list[list[str]]:
    """Dockerfile instructions as word lists, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", dockerfile_text)
    lines = [ln.strip() for ln in joined.splitlines()]
    return [ln.split() for ln in lines if ln and not ln.startswith("#")]


def copy_sources(dockerfile_text: str) -> list[str] | None:
    """Context paths that COPY/ADD read; None when they cannot be known
    statically (a variable in a source), so the whole context counts."""
    sources: list[str] = []
    for words in _instructions(dockerfile_text):
        if words[0].upper() not in ("COPY", "ADD"):
            continue
        args = words[1:]
        if any(a.startswith("--from=") for a in args):
            continue  # from another stage, not from the context
        args = [a for a in args if not a.startswith("--")]
        if args and args[0].startswith("["):
            args = json.loads(" ".join(args))
        for src in args[:-1]:
            if "$" in src:
                return None
            sources.append(src)
    return sources


def context_files(context: Path, dockerfile_text: str | None = None) -> list[Path]:
    """The files a build reads: what COPY/ADD name (or the whole context),
    less what .dockerignore drops."""
    patterns = [*_ignore_patterns(context), *_ALWAYS_IGNORED]
    sources = copy_sources(dockerfile_text) if dockerfile_text is not None else None
    if sources is None:
        return _walk(context, context, patterns)
    found: set[Path] = set()
    for src in sources:
        pattern = src.removeprefix("./").strip("/")
        matches = [context] if pattern in ("", ".") else sorted(context.glob(pattern))
        for match in matches:
            if match.exists():
                found.update(_walk(match, context, patterns))
    return sorted(found)


def build_key(
    dockerfile: Path, context: Path, target: str | None, build_args: dict[str, str], base: Image
) -> str:
    """Hash of every input of a build: Dockerfile, context files, base, options."""
    text = dockerfile.read_text()
    h = hashlib.sha256()
    h.update(f"{FORMAT_VERSION}\n{base.key}\n{target}\n".encode())
    h.update(json.dumps(build_args, sort_keys=True).encode())
    h.update(text.encode())
    for path in context_files(context, text):
        h.update(str(path.relative_to(context)).encode() + b"\0")
        h.update(path.read_bytes() if not path.is_symlink() else os.readlink(path).encode())
    return h.hexdigest()[:16]


HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _trust_volumes() -> list[str]:
    """Let RUN steps trust what the host trusts, without changing the image.

    Where HTTPS to PyPI passes through an intercepting proxy, its CA is in the
    host's bundle only. The host's bundle and a pip.conf naming it are
    mounted for the duration of each RUN step; nothing of them is committed.
    """
    if not HOST_CA_BUNDLE.exists():
        return []
    pip_conf = _buildah_root() / "pip.conf"
    pip_conf.write_text(f"[global]\ncert = {HOST_CA_BUNDLE}\n")
    return [
        f"--volume={HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
        f"--volume={pip_conf}:/etc/pip.conf:ro",
    ]


def _ensure_base_in_buildah(base: Image, buildah: list[str]) -> None:
    have = subprocess.run(
        [*buildah, "inspect", "--type=image", base.ref], capture_output=True, text=True
    )
    if have.returncode != 0:
        _run([*buildah, "pull", f"docker-archive:{base.archive}"], "buildah pull (base)")


def build(
    dockerfile: Path,
    *,
    tag: str,
    target: str | None = None,
    context: Path | None = None,
    build_args: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> Image:
    """Build ``dockerfile`` on the local base with buildah; cached by input hash.

    ``tag`` names the image for pods (``localhost/...`` is used as given;
    a bare name gets the ``localhost/raykube/`` prefix).
    """
    dockerfile = dockerfile.resolve()
    context = (context or dockerfile.parent).resolve()
    base = ensure_base(progress)
    args = {"BASE_IMAGE": base.ref, **(build_args or {})}
    key = build_key(dockerfile, context, target, args, base)
    ref = tag if "/" in tag else f"{REPO_PREFIX}/{tag}"
    if ":" not in ref.rsplit("/", 1)[-1]:
        ref = f"{ref}:{key}"
    repo = ref.rsplit(":", 1)[0].replace("/", "_")
    image = Image(ref, images_dir() / f"build-{repo}--{key}.tar", key)
    if image.archive.exists():
        return image
    with _buildah() as buildah:
        _ensure_base_in_buildah(base, buildah)
        if progress:
            progress.step(f"buildah: building {ref} from {dockerfile.name}")
        argv = [*buildah, "bud", "--isolation=chroot", "--network=host", "--pull=never"]
        argv += [*_trust_volumes(), "--layers", "-f", str(dockerfile), "-t", ref]
        if target:
            argv += ["--target", target]
        for name, value in sorted(args.items()):
            argv += ["--build-arg", f"{name}={value}"]
        _run([*argv, str(context)], f"buildah build of {dockerfile}")
        tmp = image.archive.with_suffix(f".{os.getpid()}.partial")
        tmp.unlink(missing_ok=True)
        _run([*buildah, "push", ref, f"docker-archive:{tmp}:{ref}"], "buildah push")
        tmp.rename(image.archive)
    _prune(f"build-{repo}--", keep=3)
    return image


def _prune(prefix: str, keep: int) -> None:
    """Each archive holds its base too (~250 MB): keep the newest few."""
    archives = sorted(images_dir().glob(f"{prefix}*.tar"), key=lambda p: p.stat().st_mtime)
    for old in archives[:-keep]:
        old.unlink(missing_ok=True)


# --------------------------------------------------------------------------
# containerd import


def ctr(socket: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return _run(["ctr", f"--address={socket}", "--namespace=k8s.io", *args], "ctr", timeout=timeout)


def imported(socket: Path, ref: str) -> bool:
    out = ctr(socket, "images", "ls", "-q", f"name=={ref}").stdout.split()
    return ref in out


def import_image(socket: Path, image: Image) -> bool:
    """Import ``image`` into containerd's k8s.io namespace unless it is there."""
    if imported(socket, image.ref):
        return False
    # Keep the image's own name (no docker.io normalisation of the ref).
    ctr(socket, "images", "import", "--no-unpack=false", str(image.archive))
    if not imported(socket, image.ref):
        raise ComponentFailed(f"ctr import of {image.archive} did not yield {image.ref}")
    return True


# --------------------------------------------------------------------------
# command line: python -m localcluster.images build <Dockerfile> --tag T


def add_parser(sub: Any) -> None:
    """Let the lead's CLI mount this as `python -m localcluster image ...`."""
    image = sub.add_parser("image", help="build images locally and import them into the node")
    isub = image.add_subparsers(dest="image_cmd", required=True)
    b = isub.add_parser("build", help="build a Dockerfile with buildah on the local base")
    b.add_argument("dockerfile", type=Path)
    b.add_argument("--tag", required=True)
    b.add_argument("--target", default=None)
    b.add_argument("--context", type=Path, default=None)
    b.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE")
    isub.add_parser("base", help="build (or find) the Debian base image")
    isub.add_parser("pause", help="build (or find) the pause image")


def run_cli(args: argparse.Namespace, state: Path | None = None) -> int:
    """``state``: the cluster whose running node (if any) gets the image."""
    progress = Progress("image")
    if args.image_cmd == "base":
        print(ensure_base(progress).ref)
        return 0
    if args.image_cmd == "pause":
        print(ensure_pause().ref)
        return 0
    build_args = dict(a.split("=", 1) for a in args.build_arg)
    image = build(
        args.dockerfile,
        tag=args.tag,
        target=args.target,
        context=args.context,
        build_args=build_args,
        progress=progress,
    )
    # A node may be running: give it the image.
    socket = node_record.running_containerd_socket(state or controlplane.default_state())
    if socket is not None:
        import_image(socket, image)
        progress.step(f"imported into the node's containerd ({socket})")
    print(image.ref)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.images")
    parser.add_argument("--state", type=Path, default=None, help="cluster to import into")
    add_parser(parser.add_subparsers(dest="cmd", required=True))
    args = list(argv if argv is not None else [])
    # `--state X build ...` or `build ...`: the sub-command sits under "image".
    split = 2 if args[:1] == ["--state"] else 0
    parsed = parser.parse_args([*args[:split], "image", *args[split:]])
    return run_cli(parsed, parsed.state)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
