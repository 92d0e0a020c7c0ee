"""The Helm chart, rendered with the pinned helm: lint, CRDs, modes, values,
the operator's flags, the restricted Pod Security profile and the dashboard.

RBAC against the code is in test_chart_rbac.py.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster import versions
from raykube import crdgen, metrics, settings
from raykube.builders import labels

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "raykube"
NAMESPACE = "raykube-system"

Doc = dict[str, Any]


def helm_binary() -> Path:
    helm = versions.bin_dir() / "helm"
    if not helm.is_file():
        pytest.fail(f"pinned helm missing at {helm}: run `python -m localcluster build`")
    return helm


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {shlex.join(args)} failed:\n{proc.stderr}")
    return proc


def sets(values: dict[str, str] | None) -> list[str]:
    return [f"--set={k}={v}" for k, v in (values or {}).items()]


def render(values: dict[str, str] | None = None, *extra: str) -> list[Doc]:
    out = helm("template", "rk", str(CHART), "-n", NAMESPACE, *sets(values), *extra).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def of_kind(docs: Iterable[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def deployment(docs: list[Doc]) -> Doc:
    (found,) = of_kind(docs, "Deployment")
    return found


def container(docs: list[Doc]) -> Doc:
    spec = deployment(docs)["spec"]["template"]["spec"]
    (only,) = spec["containers"]
    c: Doc = only
    return c


MODES: dict[str, dict[str, str]] = {
    "default": {},
    "namespaced": {"watchNamespaces": "{team-a,team-b}"},
    "replicas": {"replicaCount": "3"},
    "proxy": {"dashboardAccess": "apiserver-proxy", "features.rayServiceAuthSecrets": "false"},
    "monitoring": {"metrics.serviceMonitor.enabled": "true", "grafanaDashboard.enabled": "true"},
    "network-policy": {"networkPolicy.enabled": "true"},
}


# --- lint and CRDs ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_lint_is_clean(mode: str) -> None:
    proc = helm("lint", "--strict", str(CHART), *sets(MODES[mode]))
    assert "[INFO]" not in proc.stdout and "[WARNING]" not in proc.stdout, proc.stdout


def test_chart_crds_are_the_generated_ones() -> None:
    generated = crdgen.generate()
    chart = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    top = {p.name: p.read_text() for p in (REPO / "crds").glob("*.yaml")}
    assert chart == generated == top
    rendered = of_kind(render(None, "--include-crds"), "CustomResourceDefinition")
    assert sorted(c["metadata"]["name"] for c in rendered) == [
        "rayclusters.ray.io",
        "rayservices.ray.io",
    ]
    for crd in rendered:
        name = f"ray.io_{crd['spec']['names']['plural']}.yaml"
        assert crd == yaml.safe_load(generated[name])


def test_templates_hold_no_crds() -> None:
    assert not of_kind(render(), "CustomResourceDefinition")


# --- the operator's arguments -----------------------------------------------------------------


def operator_settings(docs: list[Doc]) -> settings.Settings:
    """The rendered args, parsed by the operator's own parser (unknown flags fail)."""
    return settings.from_args(container(docs)["args"])


def test_default_args_parse_and_match_the_values() -> None:
    cfg = operator_settings(render())
    assert cfg.log_format == "json" and cfg.log_level == "INFO"
    assert (cfg.metrics_port, cfg.health_port) == (8080, 8081)
    assert cfg.namespaces == () and cfg.leader_election is False
    assert cfg.dashboard_access == "service-dns" and not cfg.dashboard_url_annotations


def test_every_value_reaches_the_operator() -> None:
    values = {
        "logLevel": "DEBUG",
        "logFormat": "text",
        "metrics.port": "9100",
        "health.port": "9101",
        "dashboardAccess": "apiserver-proxy",
        "clusterDomain": "corp.example",
        "workers": "3",
        "resyncSeconds": "120",
        "features.dashboardUrlAnnotations": "true",
        "watchNamespaces": "{a,b}",
        "replicaCount": "2",
        "leaderElection.leaseName": "my-lease",
        "leaderElection.leaseDuration": "20",
        "leaderElection.renewPeriod": "4",
        "leaderElection.renewDeadline": "12",
        "leaderElection.retryPeriod": "1",
    }
    cfg = operator_settings(render(values))
    assert (cfg.log_level, cfg.log_format) == ("DEBUG", "text")
    assert (cfg.metrics_port, cfg.health_port) == (9100, 9101)
    assert cfg.dashboard_access == "apiserver-proxy" and cfg.cluster_domain == "corp.example"
    assert (cfg.workers, cfg.resync_seconds) == (3, 120.0)
    assert cfg.dashboard_url_annotations and cfg.namespaces == ("a", "b")
    assert cfg.leader_election and cfg.lease_name == "my-lease"
    timing = (cfg.lease_duration, cfg.lease_renew_period)
    assert (*timing, cfg.lease_renew_deadline, cfg.lease_retry_period) == (20, 4, 12, 1)
    ports = {p["name"]: p["containerPort"] for p in container(render(values))["ports"]}
    assert ports == {"metrics": 9100, "health": 9101}


def test_no_service_links_shadow_the_operators_environment() -> None:
    """A Service "raykube-metrics" would set RAYKUBE_METRICS_PORT=tcp://... otherwise."""
    assert deployment(render())["spec"]["template"]["spec"]["enableServiceLinks"] is False


def test_pod_knows_its_name_and_namespace_for_the_lease() -> None:
    env = {e["name"]: e for e in container(render())["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_probes_use_the_health_port() -> None:
    c = container(render())
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_scheduling_and_image_values() -> None:
    values = {
        "image.repository": "localhost/raykube/operator",
        "image.tag": "abc",
        "image.pullPolicy": "Never",
        "nodeSelector.role": "ops",
        "tolerations[0].key": "dedicated",
        "tolerations[0].operator": "Exists",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].key": "zone",
        "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
        ".nodeSelectorTerms[0].matchExpressions[0].operator": "Exists",
        "priorityClassName": "system-cluster-critical",
        "resources.limits.cpu": "1",
        "extraArgs[0]": "--workers=2",
    }
    docs = render(values)
    spec = deployment(docs)["spec"]["template"]["spec"]
    c = container(docs)
    assert c["image"] == "localhost/raykube/operator:abc" and c["imagePullPolicy"] == "Never"
    assert spec["nodeSelector"] == {"role": "ops"}
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert "nodeAffinity" in spec["affinity"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert c["resources"]["limits"] == {"cpu": 1, "memory": "512Mi"}
    assert c["args"][-1] == "--workers=2"


def test_image_tag_defaults_to_the_app_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert container(render())["image"] == f"raykube/operator:{chart['appVersion']}"


# --- replicas and leader election -----------------------------------------------------------


def test_one_replica_without_election_never_overlaps() -> None:
    docs = render()
    assert deployment(docs)["spec"]["strategy"] == {"type": "Recreate"}
    assert "--no-leader-election" in container(docs)["args"]
    assert not of_kind(docs, "PodDisruptionBudget")


def test_several_replicas_elect_a_leader() -> None:
    docs = render({"replicaCount": "2"})
    dep = deployment(docs)
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert operator_settings(docs).leader_election
    (role,) = of_kind(docs, "Role")  # cluster-wide mode: only the Lease is namespaced
    assert role["metadata"]["namespace"] == NAMESPACE
    named = [r for r in role["rules"] if "resourceNames" in r]
    assert named and all(r["resourceNames"] == ["raykube-leader"] for r in named)
    assert all("create" not in r["verbs"] for r in named)
    (pdb,) = of_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1


def test_several_replicas_without_election_are_refused() -> None:
    proc = helm(
        "template",
        "rk",
        str(CHART),
        *sets({"replicaCount": "2", "leaderElection.enabled": "false"}),
        check=False,
    )
    assert proc.returncode != 0 and "needs leader election" in proc.stderr


def test_election_can_be_forced_on_for_one_replica() -> None:
    docs = render({"leaderElection.enabled": "true"})
    assert operator_settings(docs).leader_election


# --- metrics ----------------------------------------------------------------------------------


def test_metrics_service_selects_the_operator_pods() -> None:
    docs = render()
    (svc,) = of_kind(docs, "Service")
    labels = deployment(docs)["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert not of_kind(docs, "ServiceMonitor")


def test_service_monitor_scrapes_the_metrics_port() -> None:
    docs = render(MODES["monitoring"])
    (monitor,) = of_kind(docs, "ServiceMonitor")
    (svc,) = of_kind(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    (dashboard,) = of_kind(docs, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["raykube.json"])["uid"] == "raykube-operator"


DASHBOARD = json.loads((CHART / "dashboards" / "raykube.json").read_text())
METRIC = re.compile(r"\b(raykube_[a-z_]+?)(?:_bucket|_sum|_count)?\b")


def _defined_metrics() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        name = getattr(value, "_name", None)
        if isinstance(name, str) and name.startswith("raykube_"):
            # Counters are exposed with _total; the client keeps the bare name.
            suffix = "_total" if type(value).__name__ == "Counter" else ""
            names.add(name + suffix)
    return names


def test_dashboard_shows_every_metric_and_only_real_ones() -> None:
    exprs = [t["expr"] for p in DASHBOARD["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used == _defined_metrics()


def test_dashboard_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        g = panel["gridPos"]
        area = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & area, panel["title"]
        cells |= area


# --- the restricted Pod Security Standard ------------------------------------------------------

ALLOWED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip


def restricted_violations(pod_spec: Doc) -> list[str]:
    """The checks of the "restricted" Pod Security Standard (Kubernetes 1.34),
    including the baseline ones a Deployment could break."""
    problems = []
    psc = pod_spec.get("securityContext") or {}
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(flag):
            problems.append(f"{flag} is set")
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            problems.append(f"volume {volume['name']} of type {kinds - ALLOWED_VOLUMES}")
    for c in [*pod_spec.get("initContainers", []), *pod_spec["containers"]]:
        problems += [f"{c['name']}: {p}" for p in _container_violations(c, psc)]
    if (psc.get("seccompProfile") or {}).get("type") == "Unconfined":
        problems.append("pod seccompProfile Unconfined")
    return problems


def _container_violations(c: Doc, psc: Doc) -> list[str]:
    sc = c.get("securityContext") or {}
    out = []
    if sc.get("privileged"):
        out.append("privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append("allowPrivilegeEscalation must be false")
    if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
        out.append("runAsNonRoot must be true")
    if sc.get("runAsUser", psc.get("runAsUser")) == 0:
        out.append("runAsUser must not be 0")
    seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        out.append("seccompProfile must be RuntimeDefault or Localhost")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        out.append("capabilities must drop ALL")
    if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
        out.append("only NET_BIND_SERVICE may be added")
    if any(p.get("hostPort") for p in c.get("ports") or []):
        out.append("hostPort")
    return out


@pytest.mark.parametrize("mode", MODES)
def test_rendered_pod_meets_the_restricted_profile(mode: str) -> None:
    pod_spec = deployment(render(MODES[mode]))["spec"]["template"]["spec"]
    assert restricted_violations(pod_spec) == []
    sc = pod_spec["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in pod_spec["containers"][0]["volumeMounts"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"podSecurityContext.runAsNonRoot": "false", "securityContext.runAsNonRoot": "false"},
         "runAsNonRoot"),
        ({"securityContext.allowPrivilegeEscalation": "true"}, "allowPrivilegeEscalation"),
        ({"podSecurityContext.seccompProfile.type": "Unconfined"}, "seccompProfile"),
        ({"securityContext.capabilities.drop": "null"}, "drop ALL"),
    ],
)  # fmt: skip
def test_the_profile_check_catches_weakened_values(values: dict[str, str], expected: str) -> None:
    pod_spec = deployment(render(values))["spec"]["template"]["spec"]
    assert any(expected in p for p in restricted_violations(pod_spec))


def test_schema_rejects_unknown_values() -> None:
    proc = helm("template", "rk", str(CHART), "--set", "replicas=2", check=False)
    assert proc.returncode != 0 and "replicas" in proc.stderr


# --- docs/operator.md keeps up -----------------------------------------------------------------

DOCS = (REPO / "docs" / "operator.md").read_text()
#: Values whose content is the user's (Kubernetes fields), documented as one.
FREE_FORM = {"resources", "podSecurityContext", "securityContext", "labels", "annotations"}


def _value_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in FREE_FORM:
            paths += _value_paths(value, f"{path}.")
        else:
            paths.append(path)
    return paths


def test_docs_describe_every_value() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    missing = [p for p in _value_paths(values) if f"`{p}`" not in DOCS]
    assert not missing, f"docs/operator.md does not describe: {missing}"


def test_docs_list_every_flag_with_its_variable() -> None:
    for action in settings.parser()._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert f"`{action.option_strings[0]}" in DOCS, action.option_strings[0]
        variable = "NAMESPACES" if action.dest == "namespace" else action.dest.upper()
        assert f"`RAYKUBE_{variable}`" in DOCS, variable


# --- the operator's NetworkPolicy ---------------------------------------------------------------


def test_network_policy_is_off_by_default_and_limits_the_operator_when_on() -> None:
    assert not of_kind(render(), "NetworkPolicy")
    docs = render(
        {"networkPolicy.enabled": "true", "networkPolicy.apiServer.cidrs": "{10.0.0.1/32}"}
    )
    (policy,) = of_kind(docs, "NetworkPolicy")
    spec = policy["spec"]
    assert (
        spec["podSelector"]["matchLabels"] == (deployment(docs)["spec"]["selector"]["matchLabels"])
    )
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = spec["ingress"]
    assert {p["port"] for p in ingress["ports"]} == {8080, 8081}
    dns, api, ray = spec["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    assert ray["to"][0]["podSelector"]["matchLabels"] == {labels.IS_RAY_NODE: "yes"}
