"""Where the repository, its own samples and the shared test data are: the one definition.

The project's own sample manifests live in ``samples/`` (written here; the
demo and the README use them, so a clone of the repository is enough).

The shared data (``manifests/``: KubeRay's sample RayClusters and RayServices
as users download them) is not part of this repository: it sits beside it, in
``../shared``, unless ``RAYKUBE_SHARED_DIR`` names another directory. The
tests, the end-to-end flows and the benchmarks all read it from here (this
module lives in ``e2e/`` because ``e2e`` and ``bench`` must not import the
test suite, while the tests may import ``e2e``).

Reading it never skips anything: a missing directory or file is an error that
says where it was looked for and how to point elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("RAYKUBE_SHARED_DIR") or REPO.parent / "shared")
MANIFESTS = SHARED / "manifests"
SAMPLES = REPO / "samples"
#: The project's RayService of Ray's walkthrough (fruit_app and math_app).
WALKTHROUGH = SAMPLES / "rayservice-walkthrough.yaml"


class SharedDataMissing(FileNotFoundError):
    """The shared test data is not where it is expected."""


def _missing(what: Path) -> SharedDataMissing:
    return SharedDataMissing(
        f"shared test data missing: {what} does not exist (expected ../shared/manifests "
        f"beside the repository at {REPO}, or set RAYKUBE_SHARED_DIR to the directory "
        "holding manifests/)"
    )


def manifests_dir() -> Path:
    """``MANIFESTS``, checked to exist."""
    if not MANIFESTS.is_dir():
        raise _missing(MANIFESTS)
    return MANIFESTS


def manifest(name: str) -> Path:
    """One shared manifest by file name, checked to exist."""
    path = manifests_dir() / name
    if not path.is_file():
        raise _missing(path)
    return path


def manifest_files(pattern: str = "*.yaml") -> list[Path]:
    """The shared manifests matching ``pattern``, sorted; never empty (an empty
    list would silently parametrize a test into a skip)."""
    found = sorted(manifests_dir().glob(pattern))
    if not found:
        raise _missing(MANIFESTS / pattern)
    return found


def sample(name: str) -> Path:
    """One of the project's own samples (``samples/``) by file name."""
    path = SAMPLES / name
    if not path.is_file():
        raise FileNotFoundError(f"no sample {name} in {SAMPLES}")
    return path


def sample_files() -> list[Path]:
    """The project's own sample manifests, sorted; never empty."""
    found = sorted(SAMPLES.glob("*.yaml"))
    if not found:
        raise FileNotFoundError(f"no sample manifests in {SAMPLES}")
    return found
