"""The parity tier's own pure parts: what counts as the same, what is removed
for KubeRay, how differences are matched against allowed.yaml (no server)."""

from __future__ import annotations

from typing import Any

from tests.parity import normalise
from tests.parity.compare import ABSENT, Allowance, Difference, differences, load_allowed
from tests.parity.samples import discover, expected_pods, prepare, refused_paths, remove_path


def test_ray_start_is_split_into_flags_whatever_their_order() -> None:
    a = normalise.ray_start("ulimit -n 65536; ray start --head  --block --num-cpus=1 ")
    b = normalise.ray_start("ulimit -n 65536; ray start --num-cpus=1 --head --block")
    assert a == b
    bare = "(bare flag)"
    assert a["flags"] == {"[--head]": bare, "[--block]": bare, "[--num-cpus]": "1"}
    assert a["before"] == "ulimit -n 65536;"


def test_a_probe_is_the_urls_it_checks() -> None:
    wget = {
        "exec": {
            "command": [
                "bash",
                "-c",
                "wget -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success",
            ]
        },
        "periodSeconds": 5,
    }
    python = {
        "exec": {
            "command": [
                "python3",
                "-c",
                "import urllib.request; urllib.request.urlopen("
                "'http://localhost:52365/api/local_raylet_healthz', timeout=2)",
            ]
        },
        "periodSeconds": 5,
    }
    get = {"httpGet": {"path": "/api/local_raylet_healthz", "port": 52365}, "periodSeconds": 5}
    assert normalise.probe(wget) == normalise.probe(python) == normalise.probe(get)


def _pod(name: str, namespace: str, env: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/created-by": name[:2], "raykube.ray.io/x": "1"},
            "ownerReferences": [{"kind": "RayCluster", "name": "c", "controller": True}],
        },
        "spec": {
            "nodeName": "kwok-cpu-0",
            "containers": [{"name": "ray", "env": env}],
            "volumes": [{"name": "kube-api-access-abcde", "projected": {}}],
        },
    }


def test_namespaces_suffixes_and_bookkeeping_are_normalised_away() -> None:
    kr = _pod("c-head-abcde", "kr-x", [{"name": "A", "value": "c-head-svc.kr-x.svc"}])
    rk = _pod("c-head-fghij", "rk-x", [{"name": "A", "value": "c-head-svc.rk-x.svc"}])
    kr_views, rk_views = normalise.views("kr-x", [kr]), normalise.views("rk-x", [rk])
    assert list(kr_views) == ["Pod/c-head-<random>"]
    assert differences("s", kr_views, rk_views) == []


def test_an_env_difference_is_named_by_its_variable() -> None:
    kr = normalise.views("kr-x", [_pod("c-head-abcde", "kr-x", [{"name": "A", "value": "1"}])])
    rk = normalise.views("rk-x", [_pod("c-head-abcde", "rk-x", [])])
    (d,) = differences("s", kr, rk)
    assert (d.object, d.path) == ("Pod/c-head-<random>", "spec.containers[ray].env[A]")
    assert d.raykube is ABSENT


def test_refused_fields_are_found_in_api_server_errors_and_removed() -> None:
    message = (
        'strict decoding error: unknown field "spec.authOptions", '
        'unknown field "spec.workerGroupSpecs[0].resources"'
    )
    assert refused_paths(message) == ["spec.authOptions", "spec.workerGroupSpecs[0].resources"]
    doc: dict[str, Any] = {"spec": {"authOptions": {}, "workerGroupSpecs": [{"resources": {}}]}}
    assert remove_path(doc, "spec.workerGroupSpecs[0].resources")
    assert not remove_path(doc, "spec.nothing.here")
    assert doc == {"spec": {"authOptions": {}, "workerGroupSpecs": [{}]}}


def test_an_object_missing_a_field_kuberay_1_6_requires_is_removed_whole() -> None:
    message = (
        'The RayCluster "rocksdb" is invalid: \n'
        "* spec.gcsFaultToleranceOptions.redisAddress: Required value\n"
        "* <nil>: Invalid value: null: some validation rules were not checked"
    )
    assert refused_paths(message) == ["spec.gcsFaultToleranceOptions"]


def test_recreate_is_removed_for_kuberay_and_said_so() -> None:
    (recreate,) = [s for s in discover() if s.path.name == "rayservice-recreate.yaml"]
    prepared = prepare(recreate)
    assert "type" not in prepared.ray_documents[0]["spec"]["upgradeStrategy"]
    assert prepared.removed and "Recreate" in prepared.removed[0]
    assert expected_pods(prepared) == 2


def test_allowances_match_by_glob_and_exact_values() -> None:
    rule = Allowance("Pod/*", "spec.containers[[]*[]].x", reason="r", raykube="(absent)")
    assert rule.matches(Difference("s", "Pod/a", "spec.containers[ray].x", 1, ABSENT))
    assert not rule.matches(Difference("s", "Pod/a", "spec.containers[ray].x", 1, 2))
    assert all(a.reason for a in load_allowed())
