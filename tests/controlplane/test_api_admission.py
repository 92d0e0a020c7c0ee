"""Admission of the ray.io API by a real kube-apiserver: the bad-input corpus
is refused with the field named, what is left to the controller is accepted,
and the CRDs themselves fit client-side ``kubectl apply``."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "badinput"
REFUSED = sorted(CORPUS.glob("*.yaml"))
ACCEPTED = sorted((CORPUS / "accepted").glob("*.yaml"))
MODES = {"client-side": (), "server-side": ("--server-side",)}


def _expectation(path: Path, mode: str) -> str:
    """The text the refusal must contain (see tests/badinput/README.md)."""
    headers = dict(
        line.removeprefix("# ").split(": ", 1)
        for line in path.read_text().splitlines()
        if line.startswith(("# expect:", "# expect-server-side:"))
    )
    assert "expect" in headers, f"{path.name} has no '# expect:' line"
    if mode == "server-side":
        return headers.get("expect-server-side", headers["expect"])
    return headers["expect"]


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _apply(
    cp: ControlPlane, namespace: str, mode: str, doc: dict[str, Any], check: bool
) -> tuple[int, str]:
    result = cp.kubectl(
        "apply", "-n", namespace, *MODES[mode], "-f", "-", input=json.dumps(doc), check=check
    )
    return result.returncode, result.stderr


@pytest.fixture(scope="module")
def corpus_namespaces(control_plane: ControlPlane) -> Iterator[dict[str, str]]:
    """One namespace per apply mode: update cases leave their objects behind."""
    names = {mode: f"badinput-{mode}-{uuid.uuid4().hex[:6]}" for mode in MODES}
    for name in names.values():
        control_plane.kubectl("create", "namespace", name)
    yield names
    for name in names.values():
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_corpus_is_large_enough() -> None:
    assert len(REFUSED) >= 25
    assert any(p.name == "rayservice-malformed-serve-config.yaml" for p in ACCEPTED)


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("path", REFUSED, ids=[p.stem for p in REFUSED])
def test_bad_input_is_refused_naming_the_field(
    control_plane: ControlPlane, corpus_namespaces: dict[str, str], path: Path, mode: str
) -> None:
    namespace = corpus_namespaces[mode]
    *setup, bad = _documents(path)
    for doc in setup:
        _apply(control_plane, namespace, mode, doc, check=True)
    code, stderr = _apply(control_plane, namespace, mode, bad, check=False)
    assert code != 0, f"{path.name} was accepted"
    assert "Error from server" in stderr or " is invalid" in stderr, stderr
    assert _expectation(path, mode) in stderr, stderr


@pytest.mark.parametrize("path", ACCEPTED, ids=[p.stem for p in ACCEPTED])
def test_left_to_the_controller_is_accepted(
    control_plane: ControlPlane, namespace: str, path: Path
) -> None:
    for doc in _documents(path):
        _apply(control_plane, namespace, "server-side", doc, check=True)


@pytest.mark.parametrize("crd", ["ray.io_rayclusters.yaml", "ray.io_rayservices.yaml"])
def test_crds_fit_client_side_apply(control_plane: ControlPlane, crd: str) -> None:
    # Client-side apply stores the whole object in an annotation limited to
    # 256 KiB; a server dry-run runs that check without changing anything.
    control_plane.kubectl("apply", "--dry-run=server", "-f", str(REPO / "crds" / crd))
