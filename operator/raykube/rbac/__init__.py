"""The operator's RBAC, generated from what its code calls:
``python -m raykube.rbac [--check] [--explain]``.

Three sources, nothing else:

* the calls of ``adapters/kube.py`` found in the package (``scan``);
* what kopf needs for each handler registered in ``handlers/registration``:
  list and watch of the resource (plus patch for the change-detecting
  handlers, whose progress kopf stores on the object);
* what creating RBAC objects takes: the rules of a Role the operator
  creates, and ``bind`` on the ClusterRole a RoleBinding of its grants
  (the autoscaler's, whose rules are rendered too, as the chart installs it).

The rules are written to the Helm chart as named templates, one per rule
set, in ``charts/raykube/templates/_rules.tpl``; the chart decides where each
set is bound (ClusterRole, or a Role per watched namespace; the Lease in the
release namespace only).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf

from raykube.adapters import kube
from raykube.builders.autoscaler import AUTOSCALER_RULES
from raykube.handlers import registration  # registers the handlers kopf_uses() reads
from raykube.rbac import scan
from raykube.rbac.scan import Scanner, Unresolved, Use, load

__all__ = ["RULE_SETS", "Unresolved", "Use", "render", "rule_sets", "stale", "uses", "write"]

OUTPUT = Path("charts/raykube/templates/_rules.tpl")
#: Verbs that cannot be limited to named objects (there is no name yet, or many).
UNNAMEABLE = frozenset({"create", "list", "watch", "deletecollection"})


@dataclass(frozen=True)
class RuleSet:
    """Rules the chart binds together; ``resources`` empty: all not claimed by another."""

    name: str
    about: str
    resources: frozenset[tuple[str, str]] = frozenset()
    #: Template expression for resourceNames of the nameable verbs.
    names: str | None = None


RULE_SETS = (
    RuleSet(
        "leaderElection",
        "the leader Lease, in the operator's own namespace (leaderElection.enabled)",
        frozenset({("coordination.k8s.io", "leases")}),
        names="{{ .Values.leaderElection.leaseName | quote }}",
    ),
    RuleSet(
        "dashboardProxy",
        "Ray dashboards through the API server's service proxy "
        '(dashboardAccess: "apiserver-proxy")',
        frozenset({("", "services/proxy")}),
    ),
    RuleSet(
        "autoscalerBind",
        "binding the autoscaler ClusterRole to each autoscaling RayCluster's ServiceAccount",
        frozenset({("rbac.authorization.k8s.io", "clusterroles")}),
        names='{{ include "raykube.autoscalerClusterRole" . | quote }}',
    ),
    RuleSet(
        "authSecrets",
        "Secrets: a token-mode RayCluster's generated token, the token Secret a RayService "
        "names, each RayService's last good serve config (features.rayServiceAuthSecrets)",
        frozenset({("", "secrets")}),
    ),
    RuleSet("operator", "what the operator reconciles, in every namespace it watches"),
)


def kopf_uses() -> list[Use]:
    """List/watch (and patch) of every resource a registered kopf handler watches."""
    registry = kopf.get_default_registry()
    # kopf keeps its handler registries private; pinned kopf version, see pyproject.toml.
    parts: dict[str, tuple[Any, tuple[str, ...]]] = {
        "index": (registry._indexing, ("list", "watch")),
        "event": (registry._watching, ("list", "watch")),
        "daemon/timer": (registry._spawning, ("list", "watch", "patch")),
        "change": (registry._changing, ("list", "watch", "patch")),
    }
    by_plural = {r.plural: r for r in scan.resources().values()}
    found = []
    for part, (handlers, verbs) in parts.items():
        for handler in handlers.get_all_handlers():
            res = _resource(handler.selector, by_plural)
            where = f"kopf {part} handler {handler.id} ({registration.__name__})"
            found += [Use(res.group, res.plural, verb, where) for verb in verbs]
    if found:  # kopf posts Events about the objects it handles
        found.append(Use("", "events", "create", "kopf: events about handled objects"))
    return found


def _resource(selector: Any, by_plural: dict[str, kube.Resource]) -> kube.Resource:
    plural = selector.plural or selector.any_name
    res = by_plural.get(plural)
    if res is None or (selector.group is not None and selector.group != res.group):
        raise Unresolved(f"kopf watches {selector!r}, which adapters/kube.py does not know")
    return res


def uses() -> list[Use]:
    """Everything the operator does with the API, from all three sources."""
    return sorted({*Scanner(load()).uses(), *kopf_uses()})


def rule_sets(found: Iterable[Use]) -> dict[str, dict[tuple[str, str], list[str]]]:
    """Rule set name -> (group, resource) -> sorted verbs."""
    claimed = {key: s.name for s in RULE_SETS for key in s.resources}
    catch_all = next(s.name for s in RULE_SETS if not s.resources)
    out: dict[str, dict[tuple[str, str], set[str]]] = {s.name: defaultdict(set) for s in RULE_SETS}
    for use in found:
        key = (use.group, use.resource)
        out[claimed.get(key, catch_all)][key].add(use.verb)
    return {
        name: {key: sorted(verbs) for key, verbs in sorted(rules.items())}
        for name, rules in out.items()
    }


HEADER = """\
{{- /*
Generated by `python -m raykube.rbac` from the operator's code: do not edit.
Each rule is a call of adapters/kube.py found in operator/raykube, a watch kopf
opens for a registered handler, or a rule of a Role the operator creates.
`python -m raykube.rbac --explain` shows where each verb comes from.
*/ -}}
"""


def _quoted(items: Iterable[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def _rule(group: str, resource: str, verbs: list[str], names: str | None = None) -> str:
    text = f"- apiGroups: {_quoted([group])}\n  resources: {_quoted([resource])}\n"
    if names is not None:
        text += f"  resourceNames: [{names}]\n"
    return text + f"  verbs: {_quoted(verbs)}\n"


def _rules_of(rule_set: RuleSet, rules: dict[tuple[str, str], list[str]]) -> str:
    text = ""
    for (group, resource), verbs in rules.items():
        open_verbs = [v for v in verbs if rule_set.names is None or v in UNNAMEABLE]
        named = [v for v in verbs if v not in open_verbs]
        if open_verbs:
            text += _rule(group, resource, open_verbs)
        if named:
            text += _rule(group, resource, named, rule_set.names)
    return text


def render(found: Iterable[Use] | None = None) -> str:
    sets = rule_sets(uses() if found is None else found)
    text = HEADER
    for rule_set in RULE_SETS:
        body = _rules_of(rule_set, sets[rule_set.name])
        text += _define(rule_set.name, rule_set.about, body)
    autoscaler = "".join(
        _rule(group, resource, rule["verbs"])
        for rule in AUTOSCALER_RULES
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    )
    about = "Ray's autoscaler (a ClusterRole, granted to nobody but by the operator's RoleBindings)"
    return text + _define("autoscaler", about, autoscaler)


def _define(name: str, about: str, body: str) -> str:
    text = f"\n{{{{- /* {about} */}}}}\n"
    text += f'{{{{- define "raykube.rules.{name}" -}}}}\n'
    return text + (body or "[]\n") + "{{- end }}\n"


def stale(root: Path) -> bool:
    path = root / OUTPUT
    return not path.is_file() or path.read_text(encoding="utf-8") != render()


def write(root: Path) -> bool:
    """Write the rules; True when the file changed."""
    path = root / OUTPUT
    text = render()
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def explain(found: Iterable[Use] | None = None) -> str:
    """Each rule set, resource and verb with the places that need it."""
    lines = []
    by_key: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for use in uses() if found is None else found:
        by_key[(use.group, use.resource, use.verb)].append(use.where)
    sets = rule_sets(uses() if found is None else found)
    for rule_set in RULE_SETS:
        lines.append(f"{rule_set.name}: {rule_set.about}")
        for (group, resource), verbs in sets[rule_set.name].items():
            for verb in verbs:
                lines.append(f"  {group or 'core'}/{resource} {verb}")
                lines += [f"      {w}" for w in sorted(by_key[(group, resource, verb)])]
    return "\n".join(lines) + "\n"
