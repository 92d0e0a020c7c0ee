"""RBAC from the code: the generator finds every API call, the chart's rules are
its output, and no rendered rule grants a verb or resource the code never uses."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

import pytest

from raykube import rbac
from raykube.adapters.kube import Kube
from raykube.builders.autoscaler import AUTOSCALER_RULES, autoscaler_rbac
from raykube.models.raycluster import RayCluster
from raykube.rbac import scan
from raykube.rbac.__main__ import main
from tests.chart.test_chart import MODES, REPO, of_kind, render

Triple = tuple[str, str, str]  # (apiGroup, resource, verb)
USES = rbac.uses()
USED: set[Triple] = {(u.group, u.resource, u.verb) for u in USES}


def granted(rules: list[dict[str, Any]]) -> set[Triple]:
    out = set()
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out |= {(group, resource, verb) for verb in rule["verbs"]}
    return out


def operator_roles(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every Role and ClusterRole but the autoscaler's (which the operator
    binds to autoscalers, never holds)."""
    roles = of_kind(docs, "ClusterRole") + of_kind(docs, "Role")
    return [r for r in roles if not r["metadata"]["name"].endswith("-ray-autoscaler")]


def rendered_rules(docs: list[dict[str, Any]]) -> set[Triple]:
    return set().union(*(granted(r["rules"]) for r in operator_roles(docs)))


# --- the chart holds the generator's output --------------------------------------------------


def test_chart_rules_are_the_generated_ones() -> None:
    path = REPO / rbac.OUTPUT
    assert path.read_text() == rbac.render(), (
        f"{rbac.OUTPUT} is stale: run `python -m raykube.rbac`"
    )
    assert main(["--check", f"--root={REPO}"]) == 0


def test_check_reports_a_drifted_file(tmp_path: Path) -> None:
    (tmp_path / rbac.OUTPUT).parent.mkdir(parents=True)
    (tmp_path / rbac.OUTPUT).write_text(rbac.render().replace('"delete", ', ""))
    assert main(["--check", f"--root={tmp_path}"]) == 1
    assert main([f"--root={tmp_path}"]) == 0
    assert main(["--check", f"--root={tmp_path}"]) == 0


# --- what is granted is what the code uses -----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_no_rule_grants_what_the_code_never_uses(mode: str) -> None:
    docs = render(MODES[mode])
    extra = rendered_rules(docs) - USED
    assert not extra, f"granted but never used: {sorted(extra)}"
    for role in operator_roles(docs):
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]


def test_everything_the_code_uses_is_granted_when_every_feature_is_on() -> None:
    values = {"replicaCount": "2", "dashboardAccess": "apiserver-proxy"}
    assert rendered_rules(render(values)) == USED


def test_features_off_take_their_rights_away() -> None:
    off = rendered_rules(render({"features.rayServiceAuthSecrets": "false"}))
    assert not {t for t in off if t[1] in ("secrets", "services/proxy", "leases")}
    assert ("", "pods", "create") in off


def test_watch_namespaces_uses_roles_only() -> None:
    cluster_wide = render()
    docs = render(MODES["namespaced"])
    # The autoscaler's ClusterRole is installed, but nothing cluster-wide is bound.
    assert [r["metadata"]["name"] for r in of_kind(docs, "ClusterRole")] == [
        "rk-raykube-ray-autoscaler"
    ]
    assert not of_kind(docs, "ClusterRoleBinding")
    roles = {r["metadata"]["namespace"]: r for r in of_kind(docs, "Role")}
    assert set(roles) == {"team-a", "team-b"}
    (cluster_role,) = operator_roles(cluster_wide)
    for role in roles.values():
        assert granted(role["rules"]) == granted(cluster_role["rules"])
    bindings = {b["metadata"]["namespace"]: b for b in of_kind(docs, "RoleBinding")}
    assert set(bindings) == {"team-a", "team-b"}
    for binding in bindings.values():
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "rk-raykube", "namespace": "raykube-system"}
        ]


def test_the_lease_is_only_granted_in_the_release_namespace() -> None:
    docs = render({"replicaCount": "2", **MODES["namespaced"]})
    lease_roles = [r for r in of_kind(docs, "Role") if "leases" in str(r["rules"])]
    assert [r["metadata"]["namespace"] for r in lease_roles] == ["raykube-system"]


def test_the_autoscaler_gets_a_cluster_role_the_operator_may_only_bind() -> None:
    """No Role creation, no escalate: the chart installs the autoscaler's rules
    once; the operator may bind that one ClusterRole, by name, and is told it."""
    cluster = RayCluster.model_validate(
        {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": {"name": "c", "namespace": "ns", "uid": "u"},
            "spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "r"}]}}}},
        }
    )
    for mode in MODES.values():
        docs = render(mode)
        (autoscaler,) = [
            r for r in of_kind(docs, "ClusterRole") if r["metadata"]["name"].endswith("-autoscaler")
        ]
        name = autoscaler["metadata"]["name"]
        assert autoscaler["rules"] == AUTOSCALER_RULES
        binds = [
            rule
            for role in operator_roles(docs)
            for rule in role["rules"]
            if "bind" in rule["verbs"]
        ]
        assert binds and all(
            rule["resources"] == ["clusterroles"] and rule["resourceNames"] == [name]
            for rule in binds
        )
        (deployment,) = of_kind(docs, "Deployment")
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--autoscaler-cluster-role={name}" in args
        assert not any(
            r == "roles"
            for role in operator_roles(docs)
            for rule in role["rules"]
            for r in rule["resources"]
        )
    (binding,) = [
        o
        for o in autoscaler_rbac(cluster, "raykube", "x-ray-autoscaler")
        if o["kind"] == "RoleBinding"
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "x-ray-autoscaler",
    }


# --- the generator finds what kopf and the code need --------------------------------------------


def test_kopf_watches_are_listed() -> None:
    for group, plural in [("", "pods"), ("", "services"), ("ray.io", "rayclusters")]:
        assert {(group, plural, "list"), (group, plural, "watch")} <= USED


def test_every_kube_method_has_its_verbs() -> None:
    methods = {
        name
        for name, fn in inspect.getmembers(Kube, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    assert methods == set(scan.METHOD_VERBS) | scan.NOT_REQUESTS


def test_every_use_points_at_code() -> None:
    for use in USES:
        assert use.where.startswith(("raykube/", "kopf")), use


SAMPLE = """
from raykube.adapters.kube import PODS, RAYCLUSTERS, SERVICES
from raykube.adapters import kube as k


def build_service(name):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}}


def build_pod(name):
    return wrap({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}})


async def ensure(rt):
    await rt.kube.apply(build_service("x"))
    await rt.kube.get(k.PODS, "ns", "n")


async def _touch(rt, res, name, sub="status"):
    await rt.kube.patch(res, "ns", name, {}, subresource=sub)


async def both(rt):
    await _touch(rt, RAYCLUSTERS, "a")
    await _touch(rt, SERVICES, "b", sub="scale")


async def _create(rt, obj):
    await rt.kube.apply(obj)


async def pods(rt):
    await _create(rt, build_pod("p"))


class Client:
    async def _once(self, method, path):
        return await self._proxy.proxy(method, "ns", "svc", 80, path)

    async def read(self):
        return await self._once("GET", "/")

    async def write(self):
        return await self._once(method="PUT", path="/")
"""


def _scan(tmp_path: Path, source: str) -> set[Triple]:
    package = tmp_path / "sample"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mod.py").write_text(textwrap.dedent(source))
    found = scan.Scanner(scan.load(package)).uses()
    return {(u.group, u.resource, u.verb) for u in found}


def test_scanner_follows_parameters_builders_and_http_methods(tmp_path: Path) -> None:
    assert _scan(tmp_path, SAMPLE) == {
        ("", "services", "create"),
        ("", "services", "patch"),
        ("", "pods", "get"),
        ("", "pods", "create"),
        ("", "pods", "patch"),
        ("ray.io", "rayclusters/status", "patch"),
        ("", "services/scale", "patch"),
        ("", "services/proxy", "get"),
        ("", "services/proxy", "update"),
    }


@pytest.mark.parametrize(
    "source",
    [
        "async def f(rt):\n    await rt.kube.get(pick(), 'ns', 'n')\n",
        "async def f(rt, res):\n    await rt.kube.get(res, 'ns', 'n')\n",
        "async def f(rt, obj):\n    await rt.kube.apply(obj)\n",
        "async def f(rt):\n    await rt.kube.apply(make())\n",
        "async def f(rt, m):\n    await rt.kube.proxy(m, 'ns', 's', 1, '/')\n\n"
        "async def g(rt):\n    await f(rt, 'FETCH')\n",
    ],
)
def test_scanner_refuses_what_it_cannot_resolve(tmp_path: Path, source: str) -> None:
    with pytest.raises(scan.Unresolved):
        _scan(tmp_path, source)
