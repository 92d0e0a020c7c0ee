"""Child objects, as a user compares them (pure).

What must differ between two operators' runs is normalised away, and nothing
else:

- the namespace (``kr-...`` or ``rk-...``) becomes ``<ns>`` in every value;
- random name suffixes: a RayService's cluster ``<rs>-xxxxx`` becomes
  ``<rs>-<suffix>``, a pod's generated name ``<generateName><random>``;
- what the API server or the cluster fills in: UIDs, resourceVersions,
  timestamps, status, the node, Service IPs and node ports, the
  ServiceAccount token volume, Secret values (random tokens: their keys are
  compared);
- the operator's own bookkeeping: ``app.kubernetes.io/created-by`` (its value
  names the operator), raykube's ``raykube.ray.io/*`` labels and annotations,
  and KubeRay's internal annotations (``BOOKKEEPING_ANNOTATIONS``: hashes and
  versions it keeps to decide upgrades, which no user selects on).

A probe is compared by the URLs it checks and its timing, not by the tool
that checks them (``wget`` or Python in an exec probe, or the kubelet's
httpGet). Worker replica indices (``ray.io/worker-group-replica-index``) read
``<index>``, so the workers of a group compare as one; a slice's name
(``ray.io/worker-group-replica-name``) reads ``<group>-<random>`` and a
host's index in it (``ray.io/replica-host-index``) ``<host>`` (the unit and
control-plane tests check the values).

Lists whose items have names become maps keyed ``[name]`` (containers, env,
ports, volumes; mounts by path), so a difference reads as
``spec.containers[ray-head].env[RAY_ADDRESS].value`` and the order of env
entries does not count; the order of containers does (``containers[0]`` is
the Ray container), as ``containerOrder``. A command line running
``ray start`` is split into the shell around it and its flags, so one flag
reads as one difference and the flags' order does not count (Ray parses them
by name).
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

CREATED_BY = "app.kubernetes.io/created-by"
RAYKUBE_PREFIX = "raykube.ray.io/"
BOOKKEEPING_ANNOTATIONS = frozenset(
    {
        "ray.io/kuberay-version",
        "ray.io/upgrade-strategy-recreate-hash",
        "ray.io/hash-without-replicas-and-workers-to-delete",
        "ray.io/num-worker-groups",
        "kubectl.kubernetes.io/last-applied-configuration",
    }
)
_TOKEN_VOLUME = re.compile(r"^kube-api-access-[a-z0-9]+$")
_RAY_START = "ray start"
# The five random characters the API server (generateName) or an operator appends.
_URL = re.compile(r"https?://[^\s'\"|;)]+")
REPLICA_INDEX = "ray.io/worker-group-replica-index"
REPLICA_NAME = "ray.io/worker-group-replica-name"
HOST_INDEX = "ray.io/replica-host-index"
_RANDOM_SUFFIX = re.compile(r"^(.+-)[a-z0-9]{5}$")

Subst = list[tuple[str, str]]


def substitutions(namespace: str, objects: list[dict[str, Any]]) -> Subst:
    """What to replace in every value of this namespace's objects, longest first.

    ``objects`` is everything in the namespace (the sample's own objects too):
    a UID written into a child (Ray's external storage namespace is the
    cluster's UID) reads as ``<uid of Kind/name>``."""
    subs: Subst = [(namespace, "<ns>")]
    for obj in objects:
        meta = obj["metadata"]
        if meta.get("uid"):
            subs.append((meta["uid"], f"<uid of {obj['kind']}/{meta['name']}>"))
        owners = [o["name"] for o in meta.get("ownerReferences") or [] if o["kind"] == "RayService"]
        if obj["kind"] == "RayCluster" and owners and meta["name"].startswith(owners[0] + "-"):
            subs.append((meta["name"], f"{owners[0]}-<suffix>"))
        if obj["kind"] == "Pod":
            subs.append((meta["name"], pod_name(meta)))
    return sorted(subs, key=lambda s: -len(s[0]))


def pod_name(meta: dict[str, Any]) -> str:
    """A pod's name with its random part replaced: ``<cluster>-head-<random>``.

    KubeRay lets the API server pick the suffix (``generateName``); an operator
    may pick it itself: users see the same names either way."""
    if meta.get("generateName"):
        return str(meta["generateName"]) + "<random>"
    found = _RANDOM_SUFFIX.match(meta["name"])
    return found.group(1) + "<random>" if found else str(meta["name"])


def substitute(value: Any, subs: Subst) -> Any:
    if isinstance(value, str):
        for old, new in subs:
            value = value.replace(old, new)
        return value
    if isinstance(value, dict):
        return {k: substitute(v, subs) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, subs) for v in value]
    return value


def keyed(items: list[Any], key: str = "name") -> Any:
    """A list of dicts that all carry a distinct ``key`` as a map ``[key] -> item``."""
    if not items:
        return {}
    if not all(isinstance(i, dict) and key in i for i in items):
        return items
    names = [str(i[key]) for i in items]
    if len(set(names)) != len(names):
        return items
    return {f"[{n}]": i for n, i in zip(names, items, strict=True)}


def ray_start(text: str) -> Any:
    """A shell line running ``ray start``, as {before, flags, after}; else unchanged."""
    at = text.find(_RAY_START)
    if at < 0:
        return text
    before, rest = text[:at], text[at + len(_RAY_START) :]
    try:
        tokens = shlex.split(rest, posix=False)
    except ValueError:
        return text
    flags: dict[str, str] = {}
    used = 0
    for token in tokens:
        if not token.startswith("--"):
            break
        name, sep, value = token.partition("=")
        flags[f"[{name}]"] = value if sep else "(bare flag)"
        used += 1
    return {"before": before.strip(), "flags": flags, "after": " ".join(tokens[used:])}


def _ray_start_fields(values: list[Any] | None) -> Any:
    if not values:
        return values
    return [ray_start(v) if isinstance(v, str) else v for v in values]


def _env(env: list[dict[str, Any]] | None) -> Any:
    out = []
    for item in env or []:
        item = dict(item)
        if item.get("name") == "KUBERAY_GEN_RAY_START_CMD" and "value" in item:
            item["value"] = ray_start(item["value"])
        out.append(item)
    return keyed(out)


def probe(p: dict[str, Any] | None) -> Any:
    """A probe as the URLs it checks plus its timing: ``wget`` and Python exec
    commands and the kubelet's httpGet that check the same URLs compare equal."""
    if not p:
        return p
    out = {k: v for k, v in p.items() if k not in ("exec", "httpGet")}
    if "httpGet" in p:
        get = p["httpGet"]
        host = get.get("host") or "localhost"
        out["checks"] = [
            f"{get.get('scheme', 'HTTP').lower()}://{host}:{get['port']}{get.get('path', '/')}"
        ]
    elif "exec" in p:
        text = " ".join(p["exec"].get("command") or [])
        urls = _URL.findall(text)
        out["checks"] = urls if urls else p["exec"]
    return out


def container(c: dict[str, Any]) -> dict[str, Any]:
    c = dict(c)
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        c[kind] = probe(c.get(kind))
    c["command"] = _ray_start_fields(c.get("command"))
    c["args"] = _ray_start_fields(c.get("args"))
    c["env"] = _env(c.get("env"))
    c["ports"] = keyed(
        [dict(p, name=p.get("name", str(p["containerPort"]))) for p in c.get("ports") or []]
    )
    mounts = [m for m in c.get("volumeMounts") or [] if not _TOKEN_VOLUME.match(m["name"])]
    c["volumeMounts"] = keyed(mounts, "mountPath")
    # Named lists stay (empty: {}), so a missing entry reads as `volumeMounts[/dev/shm]`.
    return {k: v for k, v in c.items() if v not in (None, [])}


def pod_spec(spec: dict[str, Any]) -> dict[str, Any]:
    spec = {k: v for k, v in spec.items() if k not in ("nodeName", "serviceAccount")}
    spec["volumes"] = keyed(
        [v for v in spec.get("volumes") or [] if not _TOKEN_VOLUME.match(v["name"])]
    )
    for kind in ("containers", "initContainers"):
        if spec.get(kind):
            spec[f"{kind[:-1]}Order"] = [c["name"] for c in spec[kind]]
            spec[kind] = keyed([container(c) for c in spec[kind]])
    return {k: v for k, v in spec.items() if v not in (None, [])}


def _labels(labels: dict[str, str] | None) -> dict[str, str]:
    out = {k: v for k, v in (labels or {}).items() if not k.startswith(RAYKUBE_PREFIX)}
    if CREATED_BY in out:
        out[CREATED_BY] = "<operator>"
    # Each worker of a group has its own index: pods of a group stay comparable as one.
    if REPLICA_INDEX in out:
        out[REPLICA_INDEX] = "<index>"
    # A slice's name is its group's and a random suffix; its hosts, like the
    # replicas of a group, compare as one.
    found = _RANDOM_SUFFIX.match(out.get(REPLICA_NAME, ""))
    if found:
        out[REPLICA_NAME] = found.group(1) + "<random>"
    if HOST_INDEX in out:
        out[HOST_INDEX] = "<host>"
    return out


def _annotations(annotations: dict[str, str] | None) -> dict[str, str]:
    return {
        k: v
        for k, v in (annotations or {}).items()
        if not k.startswith(RAYKUBE_PREFIX) and k not in BOOKKEEPING_ANNOTATIONS
    }


def metadata(meta: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "labels": _labels(meta.get("labels")),
        "annotations": _annotations(meta.get("annotations")),
        "ownerReferences": [
            {
                k: o.get(k)
                for k in ("apiVersion", "kind", "name", "controller", "blockOwnerDeletion")
            }
            for o in meta.get("ownerReferences") or []
        ],
        "finalizers": meta.get("finalizers") or [],
    }
    return {k: v for k, v in out.items() if v not in (None, [], {})}


def _service_spec(spec: dict[str, Any]) -> dict[str, Any]:
    spec = dict(spec)
    if spec.get("selector"):
        spec["selector"] = _labels(spec["selector"])
    for key in ("clusterIP", "clusterIPs"):
        if key in spec:
            spec[key] = substitute_ips(spec[key])
    ports = []
    for p in spec.get("ports") or []:
        p = dict(p)
        if "nodePort" in p:
            p["nodePort"] = "<allocated>"
        ports.append(p)
    spec["ports"] = keyed(ports)
    if "healthCheckNodePort" in spec:
        spec["healthCheckNodePort"] = "<allocated>"
    return spec


def substitute_ips(value: Any) -> Any:
    """A Service's IPs: ``None`` (headless) is kept, an allocated address is not."""
    if isinstance(value, list):
        return [substitute_ips(v) for v in value]
    return value if value == "None" else "<allocated>"


def _job_spec(spec: dict[str, Any]) -> dict[str, Any]:
    spec = {k: v for k, v in spec.items() if k != "selector"}
    template = dict(spec.get("template") or {})
    tmeta = dict(template.get("metadata") or {})
    tmeta["labels"] = {
        k: v
        for k, v in (tmeta.get("labels") or {}).items()
        if "controller-uid" not in k and k != "job-name"
    }
    template["metadata"] = tmeta
    template["spec"] = pod_spec(template.get("spec") or {})
    spec["template"] = template
    return spec


def body(obj: dict[str, Any]) -> Any:
    """Everything but metadata that a user sees of ``obj``."""
    kind = obj["kind"]
    if kind == "Pod":
        return pod_spec(obj["spec"])
    if kind == "Service":
        return _service_spec(obj["spec"])
    if kind == "Secret":
        return {"type": obj.get("type"), "keys": sorted(obj.get("data") or {})}
    if kind == "ConfigMap":
        return {"data": obj.get("data") or {}}
    if kind == "Role":
        return {"rules": obj.get("rules") or []}
    if kind == "RoleBinding":
        return {"roleRef": obj.get("roleRef"), "subjects": obj.get("subjects") or []}
    if kind == "ServiceAccount":
        return {k: obj[k] for k in ("automountServiceAccountToken", "imagePullSecrets") if k in obj}
    if kind == "Job":
        return _job_spec(obj["spec"])
    return obj.get("spec") or {}


def view(obj: dict[str, Any], subs: Subst) -> dict[str, Any]:
    """The comparable form of one child object."""
    return {
        "metadata": substitute(metadata(obj["metadata"]), subs),
        "spec": substitute(body(obj), subs),
    }


def object_key(obj: dict[str, Any], subs: Subst) -> str:
    meta = obj["metadata"]
    name = pod_name(meta) if obj["kind"] == "Pod" else meta["name"]
    return f"{obj['kind']}/{substitute(name, subs)}"


def views(
    namespace: str, objects: list[dict[str, Any]], context: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """key -> view for one namespace's children (``context``: everything in the
    namespace, for its names and UIDs). Pods of one group share a key:
    identical pods count once (with ``count``), different ones get ``#i``."""
    subs = substitutions(namespace, context if context is not None else objects)
    grouped: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        grouped.setdefault(object_key(obj, subs), []).append(view(obj, subs))
    out: dict[str, Any] = {}
    for key, members in sorted(grouped.items()):
        distinct = sorted({json.dumps(m, sort_keys=True) for m in members})
        if len(distinct) == 1:
            out[key] = {**members[0], "count": len(members)} if len(members) > 1 else members[0]
            continue
        out[f"{key} (count)"] = len(members)
        for i, text in enumerate(distinct):
            out[f"{key}#{i}"] = json.loads(text)
    return out
