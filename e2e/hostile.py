"""Hostile inputs (issue 14): what one tenant may write, and what must follow.

Each entry is what a careless or hostile user could apply to the one operator
every tenant shares: small manifests built from the project's own samples,
and what the operator must make of them. Nothing here may slow the operator
for everyone, crash it, or let it take over an object it did not create.

The catalogue is data; ``observe`` and ``problems`` turn a live cluster into
what an entry expects, so the abuse benchmark (``bench/abuse.py``) and the
control-plane tier (``tests/controlplane/test_hostile.py``) judge the same way.

Outcomes are of two kinds, both fine:

- **refused at admission**: the API server (the CRD's schema) refuses the
  manifest; nothing reaches the operator;
- **accepted**: the operator reconciles it and its status and Warning events
  say why it cannot go further; the objects named as bystanders (created
  beforehand, not by the operator) come through untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from e2e.kube import Kubectl, condition
from e2e.paths import manifest
from localcluster import processes
from raykube.builders import labels

#: The healthy objects every entry runs beside (one namespace, created first).
HEALTHY_SERVICE = "healthy-rs"
HEALTHY_CLUSTER = "healthy-rc"
#: Over this a status write is refused by the API server (and a pass that
#: tried to write it would loop): a hostile input must never get there.
STATUS_LIMIT = 32 * 1024
#: An event's message is a line for ``kubectl describe`` (the operator caps at
#: 1024 characters, plus its truncation marker).
EVENT_LIMIT = 1100
#: The size of "huge" text: larger than any status or event should carry.
HUGE = 100 * 1024

Doc = dict[str, Any]


@dataclass(frozen=True)
class Expect:
    """What the hostile object must show. Empty fields are not checked.

    ``admission``: the API server must refuse the last manifest, its message
    containing this. Otherwise the object is accepted and must carry a status
    (it was reconciled), under ``STATUS_LIMIT``, with events under
    ``EVENT_LIMIT``, and:
    """

    admission: str = ""
    #: ``status.state`` of a RayCluster.
    state: str = ""
    #: Conditions as (type, status, reason); an empty reason matches any.
    conditions: tuple[tuple[str, str, str], ...] = ()
    #: Top-level status fields and their values.
    status: Mapping[str, Any] = field(default_factory=dict)
    #: A Warning event with this reason on the hostile object.
    warning: str = ""
    #: Text a condition message or a Warning event on it must contain.
    says: str = ""
    #: The object is still there (same UID) once the operator has looked again.
    persists: bool = False


@dataclass(frozen=True)
class Bystander:
    """An object that exists before the hostile input and must come through
    untouched: same UID, owner references, labels, selector, type and data;
    a ServiceAccount is bound by no RoleBinding. ``manifest`` None: it exists
    already (the namespace's ``default`` ServiceAccount)."""

    kind: str
    name: str
    manifest: Doc | None = None


@dataclass(frozen=True)
class Hostile:
    name: str
    #: What the review found (issue 14), in a line.
    finding: str
    #: Applied in order; the objects of the ray.io kinds among them are the hostile ones.
    manifests: tuple[Doc, ...]
    expect: Expect
    bystanders: tuple[Bystander, ...] = ()
    #: Applied in the healthy objects' namespace (it must meet them); else in its own.
    beside_healthy: bool = False
    #: A hostile RayService whose clusters are answered by the healthy
    #: RayService's Ray head (same serve config: the head sees no change), so it
    #: gets as far as a serving one does.
    shares_head: bool = False

    @property
    def targets(self) -> list[tuple[str, str]]:
        """(kind, name) of the hostile ray.io objects."""
        return [
            (d["kind"], d["metadata"]["name"])
            for d in self.manifests
            if d["apiVersion"].startswith("ray.io/")
        ]


# --- manifests, from the project's samples ---------------------------------------------


def _sample(file: str, kind: str) -> Doc:
    docs = [d for d in yaml.safe_load_all(manifest(file).read_text()) if d]
    found: Doc = next(d for d in docs if d.get("kind") == kind)
    return found


def raycluster(name: str, edit: Callable[[Doc], object] | None = None) -> Doc:
    """KubeRay's sample RayCluster (1 head, 1 worker), renamed, then ``edit``-ed."""
    doc = _sample("ray-cluster.sample.yaml", "RayCluster")
    doc["metadata"] = {"name": name}
    if edit is not None:
        edit(doc["spec"])
    return doc


def serve_config(apps: tuple[str, ...] = ("fruit_app",)) -> Doc:
    """The walkthrough's serve config, its apps local (no working_dir download)."""
    doc = _sample("ray_v1alpha1_rayservice.yaml", "RayService")
    config: Doc = yaml.safe_load(doc["spec"]["serveConfigV2"])
    config["applications"] = [a for a in config["applications"] if a["name"] in apps]
    for app in config["applications"]:
        app.pop("runtime_env", None)
    return config


def rayservice(name: str, config: str | None = None, **spec: Any) -> Doc:
    """The walkthrough's RayService (``apiVersion`` ``ray.io/v1``), its serve
    config ``config`` (default: the healthy one) and ``spec`` merged in."""
    doc = _sample("ray_v1alpha1_rayservice.yaml", "RayService")
    doc["apiVersion"] = "ray.io/v1"
    doc["metadata"] = {"name": name}
    doc["spec"]["serveConfigV2"] = (
        config if config is not None else yaml.safe_dump(serve_config(), sort_keys=False)
    )
    doc["spec"].update(spec)
    return doc


def healthy_rayservice() -> Doc:
    return rayservice(HEALTHY_SERVICE)


def healthy_raycluster() -> Doc:
    return raycluster(HEALTHY_CLUSTER)


def _service(name: str, app: str) -> Doc:
    """A Service a team created by hand (not the operator's)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80}]},
    }


def _secret(name: str) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "stringData": {"auth_token": "db-password-not-for-ray", "username": "app"},
    }


def _quota(pods: int) -> Doc:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "pods"},
        "spec": {"hard": {"pods": str(pods)}},
    }


def _user_config(extra: str) -> str:
    """The healthy serve config with ``extra`` (YAML text) as MangoStand's
    ``user_config``: the hostile part sits where a tenant's own values go."""
    text = yaml.safe_dump(serve_config(), sort_keys=False)
    marker = "      price: 3\n"
    assert marker in text, text
    return text.replace(marker, extra)


def _alias_bomb() -> str:
    # Nine levels of nine aliases: 387 million "lol"s once expanded, about 600 bytes.
    lines = ['      a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n']
    prev = "a"
    for level in "bcdefghi":
        refs = ",".join([f"*{prev}"] * 9)
        lines.append(f"      {level}: &{level} [{refs}]\n")
        prev = level
    return "".join(lines)


def _nested(depth: int) -> str:
    return "      deep: " + "[" * depth + "1" + "]" * depth + "\n"


def _template(spec: Doc, group: str = "worker") -> Doc:
    """The pod spec of the head (``group="head"``) or the first worker group."""
    if group == "head":
        found: Doc = spec["headGroupSpec"]["template"]["spec"]
    else:
        found = spec["workerGroupSpecs"][0]["template"]["spec"]
    return found


def _set(path: str, value: Any, group: str = "worker") -> Callable[[Doc], None]:
    """An edit of the Ray container of ``group``: ``path`` dotted under it."""

    def edit(spec: Doc) -> None:
        node = _template(spec, group)["containers"][0]
        *parents, last = path.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return edit


def _pod_label(key: str, value: str) -> Callable[[Doc], None]:
    def edit(spec: Doc) -> None:
        template = spec["workerGroupSpecs"][0]["template"]
        template.setdefault("metadata", {}).setdefault("labels", {})[key] = value

    return edit


def _workers(**fields: Any) -> Callable[[Doc], None]:
    def edit(spec: Doc) -> None:
        spec["workerGroupSpecs"][0].update(fields)

    return edit


def _head(**fields: Any) -> Callable[[Doc], None]:
    def edit(spec: Doc) -> None:
        spec["headGroupSpec"].update(fields)

    return edit


def _autoscaling(spec: Doc) -> None:
    spec["enableInTreeAutoscaling"] = True


def _annotated(doc: Doc, key: str, value: str) -> Doc:
    doc["metadata"].setdefault("annotations", {})[key] = value
    return doc


def _labelled(doc: Doc, values: Mapping[str, str]) -> Doc:
    doc["metadata"].setdefault("labels", {}).update(values)
    return doc


def _invalid_config(says: str) -> Expect:
    return Expect(conditions=(("ServeConfigApplied", "False", "InvalidServeConfig"),), says=says)


def _invalid_spec(says: str) -> Expect:
    return Expect(
        state="failed", conditions=(("ReplicaFailure", "True", "InvalidRayClusterSpec"),), says=says
    )


NOT_OWNED = "ObjectNotOwned"
TEAM_SERVICE = "team-web-frontend"
TEAM_SECRET = "team-db-credentials"


def catalogue() -> list[Hostile]:
    """Every hostile input, built afresh (callers may change what they get)."""
    return [
        Hostile(
            "serve-config-alias-bomb",
            "a YAML alias bomb of ~600 bytes in serveConfigV2 expands to gigabytes",
            (rayservice("alias-bomb", _user_config(_alias_bomb())),),
            _invalid_config("anchors and aliases"),
        ),
        Hostile(
            "serve-config-recursive",
            "recursive YAML (an anchor inside itself) in user_config",
            (rayservice("recursive", _user_config("      loop: &loop {self: *loop}\n")),),
            _invalid_config("anchors and aliases"),
        ),
        Hostile(
            "serve-config-deep-nesting",
            "lists nested 5000 deep in user_config",
            (rayservice("deep", _user_config(_nested(5000))),),
            _invalid_config("nest"),
        ),
        Hostile(
            "serve-config-mixed-keys",
            "mixed-type keys (1, '1', true) in user_config",
            (rayservice("mixed-keys", _user_config("      1: a\n      '1': b\n      on: 3\n")),),
            _invalid_config("JSON cannot carry"),
        ),
        Hostile(
            "serve-config-yaml-date",
            "a YAML date in user_config",
            (rayservice("yaml-date", _user_config("      price: 3\n      start: 2024-02-01\n")),),
            _invalid_config("date"),
        ),
        Hostile(
            "serve-config-huge-runtime-env",
            "100 KiB runtime_env strings in serveConfigV2: status and events stay bounded",
            (
                rayservice(
                    "huge-env",
                    _user_config(f"      price: 3\n      note: {'x' * HUGE}\n"),
                ),
            ),
            Expect(),
        ),
        Hostile(
            "quantity-huge-exponent",
            "resources.limits.cpu: 1e1000000 (an unbounded decimal blocked the loop a minute)",
            (raycluster("huge-exponent", _set("resources.limits.cpu", "1e1000000")),),
            # Capped as the API server caps it: an absurd limit, but a valid one.
            Expect(state="ready"),
        ),
        Hostile(
            "quantity-nan",
            "resources.limits.memory: NaN",
            (raycluster("nan", _set("resources.limits.memory", "NaN", "head")),),
            _invalid_spec("invalid quantity 'NaN'"),
        ),
        Hostile(
            "quantity-infinity",
            "resources.requests.cpu: Infinity",
            (raycluster("infinity", _set("resources.requests.cpu", "Infinity")),),
            _invalid_spec("invalid quantity 'Infinity'"),
        ),
        Hostile(
            "replicas-int32-max-many-hosts",
            "replicas: 2147483647 with numOfHosts: 1000 (every pod was built before the first "
            "create); a ResourceQuota of 20 pods in the namespace",
            (
                _quota(20),
                raycluster(
                    "many-hosts",
                    _workers(replicas=2147483647, maxReplicas=2147483647, numOfHosts=1000),
                ),
            ),
            Expect(warning="FailedCreateWorkerPod", says="exceeded quota"),
        ),
        Hostile(
            "replicas-above-max",
            "replicas: 2147483647 above maxReplicas: 2 (clamped, as in KubeRay)",
            (raycluster("above-max", _workers(replicas=2147483647, maxReplicas=2)),),
            Expect(state="ready", status={"desiredWorkerReplicas": 2}),
        ),
        Hostile(
            "replacements-annotation-number",
            f'{labels.REPLACEMENTS}: "100000" on a RayService (fed 2 ** attempts)',
            (_annotated(rayservice("replacements-number"), labels.REPLACEMENTS, "100000"),),
            Expect(conditions=(("Ready", "True", ""),)),
            shares_head=True,
        ),
        Hostile(
            "replacements-annotation-huge-attempts",
            f"{labels.REPLACEMENTS} with attempts: 100000 and a far-future time",
            (
                _annotated(
                    rayservice("replacements-record"),
                    labels.REPLACEMENTS,
                    json.dumps(
                        {
                            "reason": "DashboardUnreachable",
                            "attempts": 100000,
                            "last": "9999-12-31T23:59:59Z",
                        }
                    ),
                ),
            ),
            Expect(conditions=(("Ready", "True", ""),)),
            shares_head=True,
        ),
        Hostile(
            "autoscaler-default-serviceaccount",
            "a RayCluster named default with the autoscaler took over the namespace's default "
            "ServiceAccount (bound it to the autoscaler Role, garbage-collected it)",
            (raycluster("default", _autoscaling),),
            Expect(state="ready"),
            bystanders=(Bystander("serviceaccount", "default"),),
        ),
        Hostile(
            "head-service-name-taken",
            "a RayCluster whose <name>-head-svc is a Service someone else created",
            (raycluster("team-web"),),
            Expect(warning=NOT_OWNED, says="team-web-head-svc"),
            bystanders=(
                Bystander("service", "team-web-head-svc", _service("team-web-head-svc", "web")),
            ),
        ),
        Hostile(
            "serve-service-name-taken",
            "serveService.metadata.name naming a Service the operator did not create",
            (
                rayservice(
                    "takeover", serveService={"metadata": {"name": TEAM_SERVICE}, "spec": {}}
                ),
            ),
            Expect(warning=NOT_OWNED, says=TEAM_SERVICE),
            bystanders=(Bystander("service", TEAM_SERVICE, _service(TEAM_SERVICE, "web")),),
            shares_head=True,
        ),
        Hostile(
            "serve-service-name-taken-suspended",
            "serveService.metadata.name naming someone else's Service, then suspend: true "
            "(a suspended RayService deletes its serve Service)",
            (
                rayservice(
                    "takeover-suspended",
                    suspend=True,
                    serveService={"metadata": {"name": TEAM_SERVICE}, "spec": {}},
                ),
            ),
            Expect(conditions=(("Ready", "False", "Suspended"),)),
            bystanders=(Bystander("service", TEAM_SERVICE, _service(TEAM_SERVICE, "web")),),
        ),
        Hostile(
            "cluster-labelled-as-member",
            "a RayCluster labelled as the healthy RayService's that it does not own "
            "(membership by label: deleted as stale)",
            (
                _labelled(
                    raycluster("not-a-member"),
                    {
                        labels.ORIGINATED_FROM_CRD: labels.RAYSERVICE_KIND,
                        labels.ORIGINATED_FROM_CR: HEALTHY_SERVICE,
                    },
                ),
            ),
            Expect(state="ready", persists=True),
            beside_healthy=True,
        ),
        Hostile(
            "service-type-external-name",
            "headGroupSpec.serviceType: ExternalName sends dashboard calls (and the token) "
            "to any host",
            (raycluster("external-name", _head(serviceType="ExternalName")),),
            Expect(admission="ExternalName"),
        ),
        Hostile(
            "head-service-external-name",
            "headGroupSpec.headService.spec.type: ExternalName",
            (
                raycluster(
                    "external-head-svc",
                    _head(
                        headService={
                            "spec": {"type": "ExternalName", "externalName": "example.com"}
                        }
                    ),
                ),
            ),
            Expect(admission="ExternalName"),
        ),
        Hostile(
            "serve-service-external-name",
            "serveService.spec.type: ExternalName",
            (
                rayservice(
                    "external-serve-svc",
                    serveService={"spec": {"type": "ExternalName", "externalName": "example.com"}},
                ),
            ),
            Expect(admission="ExternalName"),
        ),
        Hostile(
            "head-service-invalid-field",
            "a headService override the API server refuses (clusterIP not an address): the "
            "pass failed before any status said why",
            (raycluster("bad-head-svc", _head(headService={"spec": {"clusterIP": "300.0.0.1"}})),),
            Expect(says="clusterIP"),
        ),
        Hostile(
            "wrong-typed-port",
            "containerPort as a string",
            (
                raycluster(
                    "port-string",
                    _set("ports", [{"containerPort": "8265", "name": "dashboard"}], "head"),
                ),
            ),
            _invalid_spec("containerPort"),
        ),
        Hostile(
            "wrong-typed-env",
            "an env value that is a number",
            (raycluster("env-number", _set("env", [{"name": "WORKERS", "value": 4}])),),
            _invalid_spec("env[0].value"),
        ),
        Hostile(
            "wrong-typed-command",
            "command as one string, not a list",
            (raycluster("command-string", _set("command", "ray start --block")),),
            _invalid_spec("command"),
        ),
        Hostile(
            "huge-label-value",
            "a 100 KiB pod label value the API server refuses, quoting it (a status over "
            "32 KiB was refused and the pass looped)",
            (raycluster("huge-label", _pod_label("team", "x" * HUGE)),),
            Expect(conditions=(("ReplicaFailure", "True", "FailedCreateWorkerPod"),)),
        ),
        Hostile(
            "auth-secret-unrelated",
            "authOptions.secretName naming an unrelated Secret: its auth_token was sent to "
            "a head the tenant controls",
            (
                rayservice(
                    "auth-secret",
                    rayClusterConfig={
                        **healthy_rayservice()["spec"]["rayClusterConfig"],
                        "rayVersion": "2.60.0",
                        "authOptions": {"mode": "token", "secretName": TEAM_SECRET},
                    },
                ),
            ),
            # The pods may reference it (the kubelet reads it for them), but the
            # operator reads a Secret it does not own only when it opted in by label.
            Expect(warning="AuthSecretNotOptedIn", says="is not labelled"),
            bystanders=(Bystander("secret", TEAM_SECRET, _secret(TEAM_SECRET)),),
        ),
    ]


# --- observing --------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one hostile input came to."""

    refused: str = ""
    objects: dict[tuple[str, str], Doc | None] = field(default_factory=dict)
    #: (reason, message) of the Warning events on the hostile objects.
    warnings: list[tuple[str, str]] = field(default_factory=list)
    longest_event: int = 0

    def summary(self, limit: int = 160) -> str:
        """One line: the refusal, or each object's state, conditions and Warnings."""
        if self.refused:
            return f"refused at admission: {_short(self.refused, limit)}"
        parts = []
        for (kind, name), obj in self.objects.items():
            if obj is None:
                parts.append(f"{kind} {name}: gone")
                continue
            status = obj.get("status") or {}
            bits = [f"state={status['state']}"] if status.get("state") else []
            for c in status.get("conditions") or []:
                if c["type"] in ("Ready", "ReplicaFailure", "ServeConfigApplied", "Suspended"):
                    text = f"{c['type']}={c['status']}/{c.get('reason', '')}"
                    if c["status"] == ("True" if c["type"] == "ReplicaFailure" else "False"):
                        text += f" ({_short(c.get('message', ''), limit)})"
                    bits.append(text)
            parts.append(f"{kind} {name}: {', '.join(bits) or 'no status'}")
        reasons = sorted({r for r, _ in self.warnings})
        if reasons:
            first = next(m for r, m in self.warnings if r == reasons[0])
            parts.append(f"Warnings: {', '.join(reasons)} ({_short(first, limit)})")
        return "; ".join(parts)

    def brief(self) -> str:
        """``summary`` without the messages: for a table."""
        if self.refused:
            return "refused at admission"
        parts = []
        for obj in self.objects.values():
            status = (obj or {}).get("status") or {}
            parts += [f"state {status['state']}"] if status.get("state") else []
            parts += [
                f"{c['type']}={c['status']} {c.get('reason', '')}"
                for c in status.get("conditions") or []
                if c["type"] in ("Ready", "ReplicaFailure", "ServeConfigApplied")
                and c["status"] == ("True" if c["type"] == "ReplicaFailure" else "False")
            ]
        parts += [f"Warning {r}" for r in sorted({r for r, _ in self.warnings})]
        return ", ".join(parts) or "reconciled, nothing to report"


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def apply_all(k: Kubectl, docs: tuple[Doc, ...] | list[Doc]) -> str:
    """Apply ``docs`` in order; the API server's refusal of one (and stop), or ''."""
    for doc in docs:
        proc = k.cp.kubectl(
            "apply", "-n", k.namespace, "-f", "-", input=json.dumps(doc), check=False
        )
        if proc.returncode != 0:
            return proc.stderr.strip()
    return ""


def observe(k: Kubectl, h: Hostile, refused: str) -> Outcome:
    out = Outcome(refused=refused)
    if refused:
        return out
    for kind, name in h.targets:
        out.objects[(kind, name)] = k.get(kind.lower(), name)
    names = {name for _, name in h.targets}
    events = json.loads(k.run("get", "events", "-o", "json"))["items"]
    for e in events:
        if e.get("involvedObject", {}).get("name") not in names:
            continue
        message = e.get("message", "")
        out.longest_event = max(out.longest_event, len(message))
        if e.get("type") == "Warning":
            out.warnings.append((e["reason"], message))
    return out


def problems(h: Hostile, out: Outcome) -> list[str]:
    """How ``out`` falls short of ``h.expect`` (empty: as expected)."""
    want = h.expect
    if want.admission or out.refused:
        if not out.refused:
            return [f"accepted at admission; expected a refusal saying {want.admission!r}"]
        if not want.admission or want.admission not in out.refused:
            return [f"refused at admission: {out.refused}"]
        return []
    found: list[str] = []
    texts = [m for _, m in out.warnings]
    for (kind, name), obj in out.objects.items():
        if obj is None:
            found.append(f"{kind} {name} is gone")
            continue
        found += [f"{kind} {name} {p}" for p in _status_problems(want, obj.get("status") or {})]
        texts += [
            str(c.get("message", "")) for c in (obj.get("status") or {}).get("conditions") or []
        ]
    if out.longest_event > EVENT_LIMIT:
        found.append(f"an event message of {out.longest_event} characters")
    reasons = sorted({r for r, _ in out.warnings})
    if want.warning and want.warning not in reasons:
        found.append(f"no Warning {want.warning} (have {reasons})")
    if want.says and not any(want.says in t for t in texts):
        found.append(f"no condition or Warning says {want.says!r}")
    return found


def _status_problems(want: Expect, status: Doc) -> list[str]:
    if not status:
        return ["has no status yet"]
    found = []
    size = len(json.dumps(status))
    if size > STATUS_LIMIT:
        found.append(f"status is {size} bytes")
    if want.state and status.get("state") != want.state:
        found.append(f"state is {status.get('state')!r}, not {want.state!r}")
    for key, value in want.status.items():
        if status.get(key) != value:
            found.append(f"status.{key} is {status.get(key)!r}, not {value!r}")
    for type_, value, reason in want.conditions:
        c = condition({"status": status}, type_)
        if c.get("status") != value or (reason and c.get("reason") != reason):
            have = f"{c.get('status')}/{c.get('reason')}" if c else "absent"
            found.append(f"{type_} is {have}, not {value}/{reason or '*'}")
    return found


# --- bystanders -------------------------------------------------------------------------


def fingerprint(k: Kubectl, b: Bystander) -> Doc | None:
    """What must not change about ``b`` (None: it does not exist)."""
    obj = k.get(b.kind, b.name)
    if obj is None:
        return None
    meta = obj["metadata"]
    spec = obj.get("spec") or {}
    data = json.dumps(obj.get("data") or {}, sort_keys=True).encode()
    found: Doc = {
        "uid": meta["uid"],
        "ownerReferences": meta.get("ownerReferences") or [],
        "labels": meta.get("labels") or {},
        "selector": spec.get("selector"),
        "type": spec.get("type") or obj.get("type"),
        "data": hashlib.sha256(data).hexdigest(),
    }
    if b.kind == "serviceaccount":
        found["boundBy"] = _bindings_of(k, b.name)
    return found


def _bindings_of(k: Kubectl, account: str) -> list[str]:
    return sorted(
        rb["metadata"]["name"]
        for rb in k.items("rolebindings")
        if any(
            s.get("kind") == "ServiceAccount" and s.get("name") == account
            for s in rb.get("subjects") or []
        )
    )


def bystander_problems(b: Bystander, before: Doc | None, after: Doc | None) -> list[str]:
    """How ``b`` changed between two ``fingerprint``s."""
    if after is None:
        return [f"{b.kind} {b.name} was deleted"]
    if before is None:
        return [f"{b.kind} {b.name} did not exist beforehand"]
    return [
        f"{b.kind} {b.name} {key} changed: {before[key]!r} -> {after.get(key)!r}"
        for key in before
        if before[key] != after.get(key)
    ]


# --- the healthy objects and the head they share -----------------------------------------


def worker_pods(k: Kubectl, cluster: str) -> int:
    pods = k.items("pods", f"ray.io/cluster={cluster},ray.io/node-type=worker")
    return sum(1 for p in pods if not p["metadata"].get("deletionTimestamp"))


def active_cluster(k: Kubectl, service: str) -> str:
    rs = k.get("rayservice", service) or {}
    name = ((rs.get("status") or {}).get("activeServiceStatus") or {}).get("rayClusterName")
    return str(name or "")


def scale_workers(k: Kubectl, kind: str, name: str, replicas: int) -> None:
    """The spec change the healthy objects get: their first worker group's replicas."""
    prefix = "/spec/rayClusterConfig" if kind == "rayservice" else "/spec"
    patch = [{"op": "replace", "path": f"{prefix}/workerGroupSpecs/0/replicas", "value": replicas}]
    k.run("patch", kind, name, "--type=json", "-p", json.dumps(patch))


def clusters_of(k: Kubectl, service: str) -> list[str]:
    selector = f"{labels.ORIGINATED_FROM_CR}={service}"
    return [
        c["metadata"]["name"]
        for c in k.items("rayclusters", selector)
        if not c["metadata"].get("deletionTimestamp")
    ]


def point_at_head(k: Kubectl, service: str, dashboard_url: str, serve_url: str) -> list[str]:
    """Annotate the clusters of ``service`` that lack them with a head's URLs
    (the operator honours them with ``--dashboard-url-annotations``); the
    clusters annotated."""
    done = []
    for name in clusters_of(k, service):
        rc = k.get("raycluster", name) or {}
        notes = rc.get("metadata", {}).get("annotations") or {}
        if notes.get(labels.DASHBOARD_URL) != dashboard_url:
            k.run(
                "annotate", "raycluster", name, "--overwrite",
                f"{labels.DASHBOARD_URL}={dashboard_url}", f"{labels.SERVE_URL}={serve_url}",
            )  # fmt: skip
        done.append(name)
    return done


@dataclass(frozen=True)
class SharedHead:
    """The healthy RayService's Ray head, lent to hostile RayServices (``shares_head``)."""

    dashboard_url: str
    serve_url: str


def settle(
    k: Kubectl, h: Hostile, refused: str, head: SharedHead | None, timeout: float
) -> tuple[Outcome, list[str]]:
    """Observe ``h`` until it is as expected or ``timeout`` passes; the last
    outcome and what it still lacks (empty: as expected)."""
    last: list[tuple[Outcome, list[str]]] = []

    def check() -> bool:
        if h.shares_head and head is not None and not refused:
            for kind, name in h.targets:
                if kind == "RayService":
                    point_at_head(k, name, head.dashboard_url, head.serve_url)
        out = observe(k, h, refused)
        last[:] = [(out, problems(h, out))]
        return not last[0][1]

    # Not as expected in time is a finding to report, not an error here.
    with contextlib.suppress(processes.WaitTimeout):
        processes.wait_until(f"{h.name} as expected", check, timeout=timeout, interval=0.5)
    return last[0]


def replaced(first: Outcome, last: Outcome) -> list[str]:
    """Hostile objects of ``first`` gone or recreated (another UID) by ``last``."""
    found = []
    for key, obj in first.objects.items():
        now = last.objects.get(key)
        if obj is None:
            continue
        if now is None:
            found.append(f"{key[0]} {key[1]} was deleted")
        elif now["metadata"]["uid"] != obj["metadata"]["uid"]:
            found.append(f"{key[0]} {key[1]} was deleted and recreated")
    return found
