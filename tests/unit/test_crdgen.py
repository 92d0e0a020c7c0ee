"""The CRD generator: committed files are current, structural, small and
carry the defaults, rules, columns and descriptions the API promises."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from raykube import crdgen
from raykube.crdgen.__main__ import main
from raykube.crdgen.structural import NotStructural, problems, to_structural, walk
from raykube.models import MAX_INT32
from raykube.models.clusterspec import UNSUPPORTED_FIELD_RULES

REPO = Path(__file__).resolve().parents[2]
CRDS = {name: yaml.safe_load(text) for name, text in crdgen.generate().items()}
RAYCLUSTER = CRDS["ray.io_rayclusters.yaml"]
RAYSERVICE = CRDS["ray.io_rayservices.yaml"]
# Under half of the 256 KiB that client-side `kubectl apply` can store in its
# last-applied annotation, to leave room for the API to grow.
SIZE_BUDGET = 128 * 1024


def _schema(crd: dict[str, Any], version: str = "v1") -> dict[str, Any]:
    (found,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    schema: dict[str, Any] = found["schema"]["openAPIV3Schema"]
    return schema


def _at(schema: dict[str, Any], dotted: str) -> dict[str, Any]:
    node = schema
    for part in dotted.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def _keys(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def test_committed_crds_are_current() -> None:
    assert crdgen.stale(REPO) == [], "run `python -m raykube.crdgen` and commit the result"


def test_chart_copies_are_identical() -> None:
    for name in CRDS:
        chart = (REPO / "charts/raykube/crds" / name).read_text()
        assert chart == (REPO / "crds" / name).read_text()


@pytest.mark.parametrize("name", sorted(CRDS))
def test_crd_fits_client_side_apply(name: str) -> None:
    compact = json.dumps(CRDS[name], separators=(",", ":"))
    assert len(compact) < SIZE_BUDGET
    assert len(crdgen.generate()[name].encode()) < SIZE_BUDGET


@pytest.mark.parametrize("name", sorted(CRDS))
def test_schema_is_structural(name: str) -> None:
    for version in ("v1", "v1alpha1"):
        schema = _schema(CRDS[name], version)
        assert problems(schema) == []
        keys = _keys(schema)
        assert not keys & {"$ref", "$defs", "anyOf", "allOf", "oneOf", "const", "title"}
        for _, node in walk(schema):
            assert node.get("additionalProperties") is not False


@pytest.mark.parametrize("name", sorted(CRDS))
def test_every_field_is_described(name: str) -> None:
    schema = _schema(CRDS[name])
    undocumented = [
        path
        for path, node in walk(schema)
        if path not in ("", ".metadata")
        and not path.endswith(("[]", "{}"))
        and not node.get("description")
    ]
    assert undocumented == []


def test_versions_and_names() -> None:
    for crd, plural in ((RAYCLUSTER, "rayclusters"), (RAYSERVICE, "rayservices")):
        spec = crd["spec"]
        assert crd["metadata"]["name"] == f"{plural}.ray.io"
        assert spec["group"] == "ray.io" and spec["scope"] == "Namespaced"
        assert spec["names"]["plural"] == plural
        assert spec["names"]["categories"] == ["all"]
        assert "shortNames" not in spec["names"]  # KubeRay defines none
        v1, v1alpha1 = spec["versions"]
        assert (v1["name"], v1["served"], v1["storage"]) == ("v1", True, True)
        assert (v1alpha1["name"], v1alpha1["served"], v1alpha1["storage"]) == (
            "v1alpha1",
            True,
            False,
        )
        assert v1alpha1["deprecated"] is True and "deprecated" not in v1
        # The same schema, without the field docs (kubectl explain reads v1).
        assert crdgen.crd._undescribed(v1["schema"]) == v1alpha1["schema"]
        assert v1["subresources"] == v1alpha1["subresources"] == {"status": {}}
        assert "conversion" not in spec


def test_printer_columns() -> None:
    def columns(crd: dict[str, Any]) -> dict[str, str]:
        cols = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        return {c["name"]: c["jsonPath"] for c in cols if not c.get("priority")}

    assert columns(RAYCLUSTER) == {
        "Desired Workers": ".status.desiredWorkerReplicas",
        "Available Workers": ".status.availableWorkerReplicas",
        "CPUs": ".status.desiredCPU",
        "Memory": ".status.desiredMemory",
        "GPUs": ".status.desiredGPU",
        "Status": ".status.state",
        "Age": ".metadata.creationTimestamp",
    }
    assert columns(RAYSERVICE) == {
        "Service Status": ".status.serviceStatus",
        "Serve Endpoints": ".status.numServeEndpoints",
        "Active Cluster": ".status.activeServiceStatus.rayClusterName",
        "Pending Cluster": ".status.pendingServiceStatus.rayClusterName",
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Age": ".metadata.creationTimestamp",
    }


def test_worker_group_defaults_and_bounds() -> None:
    for schema, prefix in (
        (_schema(RAYCLUSTER), "spec"),
        (_schema(RAYSERVICE), "spec.rayClusterConfig"),
    ):
        group = _at(schema, f"{prefix}.workerGroupSpecs.[]")
        expected = {"replicas": 0, "minReplicas": 0, "maxReplicas": MAX_INT32, "numOfHosts": 1}
        for field, default in expected.items():
            assert group["properties"][field]["default"] == default
            assert group["properties"][field]["minimum"] == (1 if field == "numOfHosts" else 0)
        assert group["properties"]["scaleStrategy"]["default"] == {}
        groups = _at(schema, f"{prefix}.workerGroupSpecs")
        assert groups["x-kubernetes-list-type"] == "map"
        assert groups["x-kubernetes-list-map-keys"] == ["groupName"]
        assert groups["maxItems"] == 100
        assert sorted(group["required"]) == ["groupName", "template"]


def test_only_contract_defaults_are_in_the_schema() -> None:
    defaults = {path for path, node in walk(_schema(RAYSERVICE)) if "default" in node}
    group = ".spec.rayClusterConfig.workerGroupSpecs[]"
    assert defaults == {
        f"{group}.{f}" for f in ("replicas", "minReplicas", "maxReplicas", "numOfHosts")
    } | {
        f"{group}.scaleStrategy",
        ".spec.upgradeStrategy",
        ".spec.upgradeStrategy.type",
        ".spec.upgradeStrategy.timeoutSeconds",
        # KubeRay's own default (kubebuilder:default=100).
        ".spec.upgradeStrategy.clusterUpgradeOptions.maxSurgePercent",
        ".spec.rayClusterDeletionDelaySeconds",
        ".spec.serviceUnhealthySecondThreshold",
        ".spec.deploymentUnhealthySecondThreshold",
        # KubeRay 1.7's own default (kubebuilder:default=DenyAll).
        ".spec.rayClusterConfig.networkPolicy.mode",
    }
    spec = _at(_schema(RAYSERVICE), "spec")["properties"]
    assert spec["upgradeStrategy"]["properties"]["type"]["default"] == "NewCluster"
    assert spec["upgradeStrategy"]["properties"]["type"]["enum"] == [
        "NewCluster",
        "NewClusterWithIncrementalUpgrade",
        "None",
        "Recreate",
    ]
    assert spec["upgradeStrategy"]["properties"]["timeoutSeconds"]["default"] == 1800
    assert spec["rayClusterDeletionDelaySeconds"] == {
        **spec["rayClusterDeletionDelaySeconds"],
        "default": 60,
        "minimum": 0,
    }


def test_pod_templates_are_open_objects() -> None:
    template = _at(_schema(RAYCLUSTER), "spec.headGroupSpec.template")
    assert template["required"] == ["spec"]
    pod_spec = template["properties"]["spec"]
    assert pod_spec["x-kubernetes-preserve-unknown-fields"] is True
    assert pod_spec["properties"]["containers"]["minItems"] == 1
    assert template["properties"]["metadata"]["x-kubernetes-preserve-unknown-fields"] is True
    serve_service = _at(_schema(RAYSERVICE), "spec.serveService")
    assert serve_service == {**serve_service, "x-kubernetes-preserve-unknown-fields": True}


def test_status_quantities_are_int_or_string() -> None:
    status = _at(_schema(RAYCLUSTER), "status")["properties"]
    for field in ("desiredCPU", "desiredMemory", "desiredGPU", "desiredTPU"):
        assert status[field]["x-kubernetes-int-or-string"] is True
        assert "type" not in status[field]
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert conditions["items"]["properties"]["lastTransitionTime"]["format"] == "date-time"


def _rules(node: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in node.get("x-kubernetes-validations", [])]


def test_cel_rules_are_where_they_belong() -> None:
    rc, rs = _schema(RAYCLUSTER), _schema(RAYSERVICE)
    assert "self.metadata.name.size() <= 53" in _rules(rc)
    assert "self.metadata.name.size() <= 47" in _rules(rs)
    assert any("matches(" in r for r in _rules(rc)) and any("matches(" in r for r in _rules(rs))
    group_rules = _rules(_at(rc, "spec.workerGroupSpecs.[]"))
    assert any("self.minReplicas <= self.maxReplicas" in r for r in group_rules)
    assert group_rules == _rules(_at(rs, "spec.rayClusterConfig.workerGroupSpecs.[]"))
    # numOfHosts is immutable for a RayCluster only: in a RayService a change
    # builds a new cluster instead.
    assert any("numOfHosts" in r for r in _rules(_at(rc, "spec")))
    assert not any("numOfHosts" in r for r in _rules(_at(rs, "spec.rayClusterConfig")))
    assert _rules(_at(rc, "spec.managedBy")) == ["self == oldSelf"]
    assert _rules(_at(rs, "spec.managedBy")) == ["self == oldSelf"]


@pytest.mark.parametrize("name", sorted(CRDS))
def test_rule_field_paths_exist(name: str) -> None:
    for _, node in walk(_schema(CRDS[name])):
        for rule in node.get("x-kubernetes-validations", []):
            assert "message" in rule
            field_path = rule.get("fieldPath")
            if field_path is None:
                continue
            target = node
            for part in field_path.lstrip(".").split("."):
                target = target["properties"][part]


def test_check_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--check", "--root", str(tmp_path)]) == 0
    chart_copy = tmp_path / "charts/raykube/crds/ray.io_rayservices.yaml"
    chart_copy.write_text(chart_copy.read_text() + "# edited\n")
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert "charts/raykube/crds/ray.io_rayservices.yaml" in capsys.readouterr().err


def test_structural_rewrite_of_pydantic_constructs() -> None:
    schema = {
        "$defs": {
            "Inner": {
                "type": "object",
                "title": "Inner",
                "description": "inner doc",
                "additionalProperties": True,
                "properties": {"a": {"type": "integer", "default": 3, "title": "A"}},
                "x-kubernetes-validations": [{"rule": "inner"}],
            }
        },
        "type": "object",
        "properties": {
            "opt": {
                "anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}],
                "default": None,
                "description": "field doc",
            },
            "ref": {"$ref": "#/$defs/Inner", "x-kubernetes-validations": [{"rule": "outer"}]},
            "lit": {"const": "x", "type": "string", "x-raykube-default": "x"},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    out = to_structural(schema)
    assert out["properties"]["opt"] == {
        "type": "object",
        "description": "field doc",
        "properties": {"a": {"type": "integer"}},
        "x-kubernetes-validations": [{"rule": "inner"}],
    }
    assert _rules(out["properties"]["ref"]) == ["inner", "outer"]
    assert out["properties"]["lit"] == {"type": "string", "default": "x", "enum": ["x"]}
    assert out["properties"]["map"]["additionalProperties"] == {"type": "string"}
    assert problems(out) == []


@pytest.mark.parametrize(
    "bad",
    [
        {
            "$defs": {"A": {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}}},
            "$ref": "#/$defs/A",
        },
        {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
    ],
)
def test_structural_rewrite_refuses_what_kubernetes_refuses(bad: dict[str, Any]) -> None:
    with pytest.raises(NotStructural):
        to_structural(bad)


def test_problems_names_offending_nodes() -> None:
    bad = {"type": "object", "properties": {"x": {"description": "no type"}}}
    assert problems(bad) == [".x: no type"]


@pytest.mark.parametrize("rule", UNSUPPORTED_FIELD_RULES, ids=lambda r: r["fieldPath"])
def test_a_refused_field_says_so_in_kubectl_explain(rule: dict[str, str]) -> None:
    """What `kubectl explain` shows for a field raykube refuses never promises
    what KubeRay does with it."""
    spec = _at(_schema(RAYCLUSTER), "spec")
    field = _at(spec, rule["fieldPath"].lstrip("."))
    text = field.get("description", "").lower()
    assert "refused" in text or "not supported" in text, (rule["fieldPath"], text)
