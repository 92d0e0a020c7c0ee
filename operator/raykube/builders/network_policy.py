"""The NetworkPolicies of a RayCluster with ``networkPolicy`` (pure).

KubeRay 1.7's shape: one policy for the head pod (``<cluster>-head``) and one
per worker group (``<cluster>-workers-<group>``). A policy restricts only the
directions its mode names; in each, the first rule lets the cluster's own pods
in (ingress) or reaches them (egress) on every port, and the user's rules
follow. Nothing else is allowed by default, DNS included: a mode that
restricts egress needs a DNS rule from the user, as in KubeRay.
"""

from __future__ import annotations

from typing import Any

from raykube.builders import labels, owners
from raykube.builders.pods import BuildContext
from raykube.models.clusterspec import NetworkPolicyConfig, NetworkPolicyMode, NetworkPolicyRules
from raykube.models.raycluster import RayCluster

RESTRICTS_INGRESS = frozenset({NetworkPolicyMode.DENY_ALL, NetworkPolicyMode.DENY_ALL_INGRESS})
RESTRICTS_EGRESS = frozenset({NetworkPolicyMode.DENY_ALL, NetworkPolicyMode.DENY_ALL_EGRESS})


def _same_cluster(cluster: str) -> list[dict[str, Any]]:
    return [{"podSelector": {"matchLabels": {labels.CLUSTER: cluster}}}]


def _spec(
    cluster: str,
    selector: dict[str, str],
    mode: NetworkPolicyMode,
    extra: NetworkPolicyRules | None,
) -> dict[str, Any]:
    extra = extra or NetworkPolicyRules()
    spec: dict[str, Any] = {"podSelector": {"matchLabels": selector}}
    types: list[str] = []
    if mode in RESTRICTS_INGRESS:
        types.append("Ingress")
        spec["ingress"] = [{"from": _same_cluster(cluster)}, *(extra.ingress_rules or [])]
    if mode in RESTRICTS_EGRESS:
        types.append("Egress")
        spec["egress"] = [{"to": _same_cluster(cluster)}, *(extra.egress_rules or [])]
    spec["policyTypes"] = types
    return spec


def _policy(
    cluster: RayCluster, ctx: BuildContext, name: str, spec: dict[str, Any]
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": cluster.metadata.namespace,
            "labels": labels.network_labels(cluster.metadata.name, ctx.created_by),
            "ownerReferences": [owners.of_raycluster(cluster)],
        },
        "spec": spec,
    }


def _group_rules(config: NetworkPolicyConfig, group: str) -> NetworkPolicyRules | None:
    """A group's own entry replaces ``worker`` (it is not merged with it)."""
    for entry in config.worker_groups or []:
        if entry.group_name == group:
            return entry
    return config.worker


def build_network_policies(cluster: RayCluster, ctx: BuildContext) -> list[dict[str, Any]]:
    """The head's policy, then one per worker group; none without ``networkPolicy``."""
    config = cluster.spec.network_policy
    if config is None:
        return []
    name = cluster.metadata.name
    mode = config.mode or NetworkPolicyMode.DENY_ALL
    head = _spec(name, labels.head_selector_labels(name), mode, config.head)
    out = [_policy(cluster, ctx, labels.head_network_policy_name(name), head)]
    for group in cluster.spec.worker_group_specs:
        selector = {
            labels.CLUSTER: name,
            labels.NODE_TYPE: "worker",
            labels.GROUP: group.group_name,
        }
        spec = _spec(name, selector, mode, _group_rules(config, group.group_name))
        policy_name = labels.worker_network_policy_name(name, group.group_name)
        out.append(_policy(cluster, ctx, policy_name, spec))
    return out
