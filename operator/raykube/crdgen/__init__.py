"""raykube's CRD generator: ``python -m raykube.crdgen [--check]``.

The CRDs are derived from ``raykube.models`` (pydantic JSON Schema rewritten
into a Kubernetes structural schema) and written to ``crds/`` and to the Helm
chart's ``charts/raykube/crds/``. They are never edited by hand.
"""

from __future__ import annotations

from pathlib import Path

from raykube.crdgen.crd import build_crd, render
from raykube.models import raycluster, rayservice
from raykube.models.base import GROUP, KindInfo, KubeModel

KINDS: tuple[tuple[type[KubeModel], KindInfo], ...] = (
    (raycluster.RayCluster, raycluster.KIND),
    (rayservice.RayService, rayservice.KIND),
)
OUTPUT_DIRS = (Path("crds"), Path("charts/raykube/crds"))


def generate() -> dict[str, str]:
    """File name -> YAML text, for every kind."""
    return {f"{GROUP}_{kind.plural}.yaml": render(build_crd(model, kind)) for model, kind in KINDS}


def outputs(root: Path) -> dict[Path, str]:
    """Every file the generator owns under ``root``, with its content."""
    files = generate()
    return {root / d / name: text for d in OUTPUT_DIRS for name, text in files.items()}


def stale(root: Path) -> list[Path]:
    """Files under ``root`` that are missing or differ from what would be generated."""
    return [
        path
        for path, text in outputs(root).items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def write(root: Path) -> list[Path]:
    """Write every generated file; return those that changed."""
    changed = stale(root)
    for path, text in outputs(root).items():
        if path in changed:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    return changed
