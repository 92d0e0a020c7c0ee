"""The operator of an earlier commit, built the way the current one is.

``git archive`` of the commit (``HEAD~1`` unless ``RAYKUBE_PREVIOUS_REF``
names another) is unpacked under ``cache_root()/previous/<commit>``, and its
own Dockerfile's ``operator`` target is built from that tree with buildah
(cached by input hash, like every image here); its own chart is used to
install it. So an upgrade test moves from exactly what that commit shipped,
chart and image, to what this tree ships.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from localcluster import images, versions
from localcluster.progress import Progress

REPO = Path(__file__).resolve().parent.parent
REF_VARIABLE = "RAYKUBE_PREVIOUS_REF"
TAG = "raykube-operator-previous"


@dataclass(frozen=True)
class Previous:
    commit: str
    chart: Path
    image: images.Image


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def export(ref: str) -> tuple[str, Path]:
    """The commit ``ref`` names, and its tree unpacked in the cache."""
    try:
        commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    except RuntimeError as err:
        raise RuntimeError(
            f"{err}; the operator-upgrade test needs the commit before this one in the "
            f"clone's history (a shallow clone has none), or {REF_VARIABLE} naming another"
        ) from None
    tree = versions.cache_root() / "previous" / commit
    done = tree / ".unpacked"
    if not done.exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit],
            cwd=REPO, capture_output=True, check=True, timeout=120,
        )  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        done.touch()
    return commit, tree


def build(progress: Progress | None = None) -> Previous:
    commit, tree = export(os.environ.get(REF_VARIABLE, "HEAD~1"))
    image = images.build(
        tree / "Dockerfile", tag=TAG, target="operator", context=tree, progress=progress
    )
    return Previous(commit, tree / "charts" / "raykube", image)
