"""The last good serve config lives in a Secret the RayService owns, not in an
annotation on it: a serve config may carry credentials, and an annotation has
a 256 KiB limit and outlives the user's edits. What an older version wrote in
the annotation is moved into the Secret, never lost."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from raykube.adapters.kube import RAYSERVICES, SECRETS, ApiError, Resource
from raykube.builders import labels
from tests.unit.harness import NS, Harness, load
from tests.unit.test_handlers_rayservice import SAMPLE, serving


def secret_name(name: str) -> str:
    return labels.last_good_serve_config_name(name)


def recorded(h: Harness, name: str) -> str | None:
    secret = h.kube.stored(SECRETS, NS, secret_name(name))
    if secret is None:
        return None
    return base64.b64decode(secret["data"][labels.LAST_GOOD_SERVE_CONFIG_KEY]).decode()


def notes_of(h: Harness, name: str) -> dict[str, str]:
    return dict(h.rayservice(name)["metadata"].get("annotations") or {})


async def test_the_last_good_config_is_kept_in_a_secret_the_rayservice_owns(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    name, _ = await serving(h, manifests)
    await h.service_pass(name)
    rs = h.rayservice(name)
    assert recorded(h, name) == rs["spec"]["serveConfigV2"]
    secret = h.kube.stored(SECRETS, NS, secret_name(name))
    assert secret is not None
    assert secret["type"] == "Opaque"
    assert secret["metadata"]["labels"] == labels.rayservice_labels(name)
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "RayService",
        rs["metadata"]["uid"],
        True,
    )
    assert labels.LAST_GOOD_SERVE_CONFIG not in notes_of(h, name)
    # Written once: a steady pass reads it from the watch cache.
    applies = [r for r in h.kube.log if r.kind == "Secret" and r.verb == "apply"]
    assert len(applies) == 1
    h.kube.reset_counts()
    await h.service_pass(name)
    assert not [r for r in h.kube.log if r.kind == "Secret"]
    # It goes with its RayService.
    await h.kube.delete(RAYSERVICES, NS, name)
    assert h.kube.stored(SECRETS, NS, secret_name(name)) is None


async def test_an_annotation_written_by_an_older_version_is_moved_into_the_secret(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    doc = load(manifests, SAMPLE, "RayService")
    older = "applications: []  # the last config the older version saw running\n"
    doc["metadata"].setdefault("annotations", {})[labels.LAST_GOOD_SERVE_CONFIG] = older
    h.kube.put(doc)
    name = doc["metadata"]["name"]
    await h.service_pass(name)  # nothing serves yet: the older record is all there is
    assert recorded(h, name) == older
    assert labels.LAST_GOOD_SERVE_CONFIG not in notes_of(h, name)
    for _ in range(2):
        await h.service_pass(name)
    assert recorded(h, name) == older


async def test_a_secret_of_that_name_that_is_not_ours_is_left_alone(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    theirs = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": secret_name("rayservice-sample"), "namespace": NS},
        "data": {"mine": base64.b64encode(b"do not touch").decode()},
    }
    h.kube.put(theirs)
    name, _ = await serving(h, manifests)
    await h.service_pass(name)
    secret = h.kube.stored(SECRETS, NS, secret_name(name))
    assert secret is not None and set(secret["data"]) == {"mine"}
    assert not secret["metadata"].get("ownerReferences")
    await h.events_posted()
    assert [e.reason for e in h.kube.events].count("LastGoodServeConfigNotRecorded") == 1


async def test_an_older_record_stays_where_it_is_when_the_secret_is_not_ours(
    harness: Harness, manifests: Path
) -> None:
    h = harness
    doc = load(manifests, SAMPLE, "RayService")
    name = doc["metadata"]["name"]
    older = "applications: []\n"
    doc["metadata"].setdefault("annotations", {})[labels.LAST_GOOD_SERVE_CONFIG] = older
    h.kube.put(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret_name(name), "namespace": NS},
            "data": {},
        }
    )
    h.kube.put(doc)
    for _ in range(2):
        await h.service_pass(name)
    assert notes_of(h, name)[labels.LAST_GOOD_SERVE_CONFIG] == older  # not lost
    secret = h.kube.stored(SECRETS, NS, secret_name(name))
    assert secret is not None and not secret["data"]


async def test_secrets_are_read_once_and_not_watched(harness: Harness, manifests: Path) -> None:
    """Least privilege: the Secret is read on the first pass of each RayService
    in a process and never again while the operator remembers what it wrote."""
    h = harness
    name, _ = await serving(h, manifests)
    await h.service_pass(name)
    h.kube.reset_counts()
    for _ in range(3):
        await h.service_pass(name)
    assert not [r for r in h.kube.log if r.kind == "Secret"], h.kube.log


async def test_without_rights_on_secrets_the_pass_goes_on_and_says_so(
    harness: Harness, manifests: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    real_get, real_apply = h.kube.get, h.kube.apply

    async def get(res: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        if res is SECRETS:
            raise ApiError(403, "Forbidden", "secrets is forbidden")
        return await real_get(res, namespace, name)

    async def apply(obj: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        if obj["kind"] == "Secret":
            raise ApiError(403, "Forbidden", "secrets is forbidden")
        return await real_apply(obj, dry_run=dry_run)

    monkeypatch.setattr(h.kube, "get", get)
    monkeypatch.setattr(h.kube, "apply", apply)
    name, _ = await serving(h, manifests)
    for _ in range(2):
        await h.service_pass(name)
    await h.events_posted()
    warnings = [e for e in h.kube.events if e.reason == "LastGoodServeConfigNotRecorded"]
    assert len(warnings) == 1
