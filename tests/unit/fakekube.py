"""An in-memory Kubernetes API for fast handler tests.

``FakeKube`` has the async methods of ``raykube.adapters.kube.Kube`` with the
same signatures (``test_fakekube.py`` compares them) and fails the way the
API server does, with ``ApiError``: 404 for a missing object, 409 for an
existing name or a stale resourceVersion, 422 for a JSON Patch whose ``test``
fails. What it keeps of the API server's behaviour is what the handlers rely
on:

- resourceVersion: one global counter, bumped by every write. An update, a
  merge patch or an apply carrying ``metadata.resourceVersion`` fails with
  409 when the stored object has moved on (optimistic concurrency).
- ``uid`` and ``creationTimestamp`` on create, ``generation`` 1 on create and
  +1 when ``spec`` changes (never for metadata or status).
- status only through the status subresource: a status in a create, update,
  apply or plain patch is ignored, and a status write changes nothing else.
- server-side apply is a deep merge of the applied object into the stored one
  (maps merged key by key, lists, scalars and atomic maps such as a
  Service's selector replaced). Real SSA also removes
  fields this field manager applied before and leaves out now, and records
  managedFields; neither is modelled.
- merge patch is RFC 7386 (null deletes); JSON Patch is RFC 6902's ``add``,
  ``remove``, ``replace`` and ``test`` (all or nothing).
- delete: the ``uid`` precondition; an object with finalizers only gets a
  deletionTimestamp; background cascade (a dependent goes once none of the
  uids in its ownerReferences exists).
- every request is counted by verb (``requests``) and logged (``log``), so a
  test can say "this pass sent no GET and no write"; events are a list.

Not modelled: watches, admission (defaults, validation), managedFields,
label selectors beyond ``k=v``, ``k!=v``, ``k`` and ``!k``.

Tests change the world through ``put``, ``mutate`` and ``set_pod_ready``:
those are the cluster's doing (kubelet, users), so they bump
resourceVersions but are not counted as the operator's requests.

``FakeIndex`` views behave like the kopf indices the handlers take, computed
live from the store (``freeze()`` holds one back, like a watch that lags).
"""

from __future__ import annotations

import copy
import inspect
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

# Imported for its effect: it registers the operator's indices with kopf (operator_indices).
import raykube.handlers.registration  # noqa: F401
from raykube.adapters.kube import (
    BY_KIND,
    EVENTS,
    PODS,
    PROXY_BODY_LIMIT,
    SECRETS,
    ApiError,
    Resource,
)

JSON = dict[str, Any]
ObjKey = tuple[str, str, str]  # (kind, namespace, name)
IndexKey = tuple[str, str]

#: The kinds FakeKube stores (Secrets too: a test may hold a dashboard token).
KINDS = {**BY_KIND, SECRETS.kind: SECRETS}
#: Verbs that change the store (a dry-run apply is counted apart).
WRITES = ("create", "update", "patch", "apply", "delete")


@dataclass(frozen=True)
class RecordedEvent:
    kind: str
    name: str
    namespace: str
    type: str
    reason: str
    message: str
    component: str


@dataclass(frozen=True)
class Request:
    verb: str
    kind: str
    namespace: str
    name: str
    subresource: str = ""


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind.lower()} "{name}" not found')


def _conflict(kind: str, name: str, why: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind} "{name}": {why}')


class FakeKube:
    """The API server's store, in memory. See the module docstring for what it models."""

    def __init__(self, field_manager: str = "raykube", now: Callable[[], str] = _now) -> None:
        self.field_manager = field_manager
        self.now = now
        self.objects: dict[ObjKey, JSON] = {}
        self.revision = 0
        self.requests: Counter[str] = Counter()
        self.log: list[Request] = []
        self.events: list[RecordedEvent] = []
        #: Answers ``proxy`` calls: (method, namespace, service, port, path, body) ->
        #: (status, body). Without one the API server "cannot reach" the service.
        self.proxy_handler: Callable[[str, str, str, int, str, Any], tuple[int, bytes]] | None = (
            None
        )
        self.closed = False
        self._uids = 0

    # --- what tests read -----------------------------------------------------------------

    def writes(self) -> int:
        return sum(self.requests[v] for v in WRITES)

    def reset_counts(self) -> None:
        self.requests.clear()
        self.log.clear()

    def stored(self, res: Resource, namespace: str | None, name: str) -> JSON | None:
        """The stored object (a copy), without counting a request."""
        obj = self.objects.get((res.kind, namespace or "", name))
        return copy.deepcopy(obj) if obj is not None else None

    def all(self, res: Resource, namespace: str | None = None) -> list[JSON]:
        """Every stored object of a kind (copies, by name), without counting a request."""
        return [
            copy.deepcopy(obj)
            for (kind, ns, _), obj in sorted(self.objects.items())
            if kind == res.kind and (namespace is None or ns == namespace)
        ]

    # --- what tests change (the cluster's doing, not counted) ------------------------------

    def put(self, obj: JSON) -> JSON:
        """Store ``obj`` as the API server would after a create, status included."""
        res = KINDS[obj["kind"]]
        meta = obj["metadata"]
        return self._insert(res, meta.get("namespace"), copy.deepcopy(obj), keep_status=True)

    def mutate(
        self, res: Resource, namespace: str | None, name: str, change: Callable[[JSON], None]
    ) -> JSON:
        """Change a stored object in place through ``change`` (status included)."""
        old = self._existing(res, namespace, name)
        new = copy.deepcopy(old)
        change(new)
        return self._store(res, old, new)

    def set_pod_ready(
        self, namespace: str, name: str, ready: bool = True, ip: str = "10.0.0.1"
    ) -> JSON:
        """What the kubelet does: Running, the Ready condition, a pod IP."""

        def change(pod: JSON) -> None:
            status = pod.setdefault("status", {})
            status.update(phase="Running", podIP=ip)
            status["conditions"] = [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": self.now(),
                }
            ]
            status["containerStatuses"] = [
                {"name": c["name"], "ready": ready, "restartCount": 0,
                 "state": {"running": {"startedAt": self.now()}}}
                for c in pod.get("spec", {}).get("containers", [])[:1]
            ]  # fmt: skip

        return self.mutate(PODS, namespace, name, change)

    # --- Kube's methods ------------------------------------------------------------------

    async def close(self) -> None:
        self.closed = True

    async def get(self, res: Resource, namespace: str | None, name: str) -> JSON | None:
        self._count("get", res, namespace, name)
        return self.stored(res, namespace, name)

    async def list(self, res: Resource, namespace: str | None, selector: str = "") -> list[JSON]:
        self._count("list", res, namespace, "")
        match = _selector(selector)
        return [o for o in self.all(res, namespace) if match(o["metadata"].get("labels") or {})]

    async def apply(self, obj: JSON, *, dry_run: bool = False) -> JSON:
        res = BY_KIND[obj["kind"]]
        meta = obj["metadata"]
        ns, name = meta.get("namespace"), meta["name"]
        self._count("apply-dry-run" if dry_run else "apply", res, ns, name)
        old = self.objects.get((res.kind, ns or "", name))
        if old is None:
            if dry_run:
                return self._created(res, ns, copy.deepcopy(obj), keep_status=False, number=0)
            return self._insert(res, ns, copy.deepcopy(obj), keep_status=False)
        self._check_version(res, old, obj)
        new: JSON = _merge(old, _without_status(obj), delete_nulls=False)
        for path in _ATOMIC.get(res.kind, ()):
            _replace_atomic(new, obj, path)
        new["status"] = copy.deepcopy(old.get("status"))
        if new["status"] is None:
            del new["status"]
        if dry_run:
            return new
        return self._store(res, old, new)

    async def create_object(self, obj: JSON, *, dry_run: bool = False) -> JSON:
        res = BY_KIND[obj["kind"]]
        meta = obj["metadata"]
        ns, name = meta.get("namespace"), meta["name"]
        if dry_run:
            self._count("create-dry-run", res, ns, name)
            if (res.kind, ns or "", name) in self.objects:
                raise ApiError(409, "AlreadyExists", f'{res.plural} "{name}" already exists')
            return self._created(res, ns, copy.deepcopy(obj), keep_status=False, number=0)
        self._count("create", res, ns, name)
        return self._insert(res, ns, copy.deepcopy(obj), keep_status=False)

    async def get_object(self, obj: JSON) -> JSON | None:
        meta = obj["metadata"]
        return await self.get(BY_KIND[obj["kind"]], meta.get("namespace"), meta["name"])

    async def create(self, res: Resource, namespace: str | None, body: JSON) -> JSON:
        name = body.get("metadata", {}).get("name", "")
        self._count("create", res, namespace, name)
        return self._insert(res, namespace, copy.deepcopy(body), keep_status=False)

    async def update(self, res: Resource, namespace: str | None, name: str, body: JSON) -> JSON:
        self._count("update", res, namespace, name)
        old = self._existing(res, namespace, name)
        self._check_version(res, old, body)
        new = copy.deepcopy(body)
        new.setdefault("metadata", {})
        if "status" in old:
            new["status"] = copy.deepcopy(old["status"])
        else:
            new.pop("status", None)
        return self._store(res, old, new)

    async def delete(
        self, res: Resource, namespace: str | None, name: str, *, uid: str | None = None
    ) -> bool:
        self._count("delete", res, namespace, name)
        old = self.objects.get((res.kind, namespace or "", name))
        if old is None or (uid and old["metadata"].get("uid") != uid):
            return False  # the real client turns 404 and a failed precondition (409) into False
        if old["metadata"].get("finalizers"):
            if not old["metadata"].get("deletionTimestamp"):
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = self.now()
                self._store(res, old, new)
            return True
        self._remove(res.kind, namespace or "", name)
        return True

    async def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        subresource: str = "",
        patch_type: str = "merge",
    ) -> JSON:
        self._count("patch", res, namespace, name, subresource)
        if subresource not in ("", "status"):
            raise ApiError(404, "NotFound", f"FakeKube has no subresource {subresource!r}")
        old = self._existing(res, namespace, name)
        if patch_type == "merge":
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
            self._check_version(res, old, patch)
            patched = _merge(old, patch, delete_nulls=True)
        elif patch_type == "json":
            patched = json_patch(old, patch)
        else:
            raise ValueError(f"unknown patch type {patch_type!r}")
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in patched:
                new["status"] = patched["status"]
            else:
                new.pop("status", None)
        else:
            new = patched
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        return self._store(res, old, new)

    async def proxy(
        self,
        method: str,
        namespace: str,
        service: str,
        port: int,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        request_timeout: float = 10,
        limit: int = PROXY_BODY_LIMIT,
    ) -> tuple[int, bytes]:
        self._count("proxy", Resource("", "v1", "services", "Service"), namespace, service)
        if self.proxy_handler is None:
            return 0, b"FakeKube: no service proxy handler"
        status, data = self.proxy_handler(method, namespace, service, port, path, body)
        return status, data[: limit + 1]  # as much as the real client reads

    async def event(
        self,
        involved: Mapping[str, Any],
        event_type: str,
        reason: str,
        message: str,
        component: str,
        at: str | None = None,
    ) -> None:
        meta = involved["metadata"]
        self._count("event", EVENTS, meta.get("namespace"), meta["name"])
        self.events.append(
            RecordedEvent(
                kind=str(involved.get("kind", "")),
                name=meta["name"],
                namespace=meta.get("namespace") or "",
                type=event_type,
                reason=reason,
                message=message[:1024],
                component=component,
            )
        )

    # --- the store -----------------------------------------------------------------------

    def _count(
        self, verb: str, res: Resource, namespace: str | None, name: str, sub: str = ""
    ) -> None:
        self.requests[verb] += 1
        self.log.append(Request(verb, res.kind, namespace or "", name, sub))

    def _existing(self, res: Resource, namespace: str | None, name: str) -> JSON:
        obj = self.objects.get((res.kind, namespace or "", name))
        if obj is None:
            raise _not_found(res.plural, name)
        return obj

    def _check_version(self, res: Resource, old: JSON, body: Mapping[str, Any]) -> None:
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        have = old["metadata"]["resourceVersion"]
        if wanted and wanted != have:
            raise _conflict(
                res.plural,
                old["metadata"]["name"],
                "the object has been modified; please apply your changes to the latest "
                f"version and try again (sent {wanted}, stored {have})",
            )

    def _bump(self) -> str:
        self.revision += 1
        return str(self.revision)

    def _created(
        self, res: Resource, namespace: str | None, obj: JSON, *, keep_status: bool, number: int
    ) -> JSON:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "Invalid", "name or generateName is required")
            meta["name"] = f"{meta['generateName']}{number:05x}"
        if res.namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        obj.setdefault("apiVersion", res.api_version)
        obj.setdefault("kind", res.kind)
        meta["uid"] = str(uuid.UUID(int=number)) if number else "dry-run"
        meta["creationTimestamp"] = meta.get("creationTimestamp") or self.now()
        meta["generation"] = 1
        meta.pop("deletionTimestamp", None)
        if not keep_status:
            obj.pop("status", None)
            if res.kind == "Pod":
                obj["status"] = {"phase": "Pending"}
        return obj

    def _insert(
        self, res: Resource, namespace: str | None, obj: JSON, *, keep_status: bool
    ) -> JSON:
        self._uids += 1
        obj = self._created(res, namespace, obj, keep_status=keep_status, number=self._uids)
        meta = obj["metadata"]
        key = (res.kind, meta.get("namespace", ""), meta["name"])
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{res.plural} "{meta["name"]}" already exists')
        meta["resourceVersion"] = self._bump()
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def _store(self, res: Resource, old: JSON, new: JSON) -> JSON:
        """Write ``new`` over ``old``: system metadata kept, generation and resourceVersion."""
        meta, before = new.setdefault("metadata", {}), old["metadata"]
        for field in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp"):
            if field in before:
                meta[field] = before[field]
        spec_changed = old.get("spec") != new.get("spec")
        meta["generation"] = int(before.get("generation", 1)) + int(spec_changed)
        new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
        meta["resourceVersion"] = before["resourceVersion"]
        if new == old:
            # A write that changes nothing gets no new resourceVersion (as on the API server).
            return copy.deepcopy(old)
        meta["resourceVersion"] = self._bump()
        key = (res.kind, before.get("namespace", ""), before["name"])
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(*key)
            return copy.deepcopy(new)
        self.objects[key] = new
        return copy.deepcopy(new)

    def _remove(self, kind: str, namespace: str, name: str) -> None:
        gone = self.objects.pop((kind, namespace, name), None)
        if gone is None:
            return
        self._bump()
        self._collect_garbage()

    def _collect_garbage(self) -> None:
        """Background cascade: dependents whose owners are all gone are deleted."""
        while True:
            uids = {o["metadata"]["uid"] for o in self.objects.values()}
            orphans = [
                key
                for key, obj in self.objects.items()
                if (refs := obj["metadata"].get("ownerReferences"))
                and not any(r.get("uid") in uids for r in refs)
                and not obj["metadata"].get("deletionTimestamp")
            ]
            if not orphans:
                return
            for key in orphans:
                obj = self.objects[key]
                if obj["metadata"].get("finalizers"):
                    obj["metadata"]["deletionTimestamp"] = self.now()
                    obj["metadata"]["resourceVersion"] = self._bump()
                else:
                    del self.objects[key]
                    self._bump()


# --- label selectors -------------------------------------------------------------------------


def _selector(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """``k=v``, ``k==v``, ``k!=v``, ``k`` and ``!k`` terms, all of which must hold."""
    terms: list[tuple[str, str, str]] = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            terms.append(("!=", k.strip(), v.strip()))
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            terms.append(("=", k.strip(), v.strip()))
        elif term.startswith("!"):
            terms.append(("absent", term[1:].strip(), ""))
        else:
            terms.append(("present", term, ""))

    def holds(op: str, key: str, value: str, labels: Mapping[str, str]) -> bool:
        if op == "=":
            return labels.get(key) == value
        if op == "!=":
            return labels.get(key) != value
        return (key in labels) == (op == "present")

    return lambda labels: all(holds(*t, labels) for t in terms)


# --- merge patch, apply and JSON Patch ----------------------------------------------------------


def _without_status(obj: JSON) -> JSON:
    return {k: v for k, v in obj.items() if k != "status"}


#: Maps the API server replaces whole in an apply (``+mapType=atomic``): a key
#: left out of the applied map is gone, whoever set it.
_ATOMIC: dict[str, tuple[tuple[str, ...], ...]] = {"Service": (("spec", "selector"),)}


def _replace_atomic(merged: JSON, applied: JSON, path: tuple[str, ...]) -> None:
    src: Any = applied
    dst: Any = merged
    for key in path[:-1]:
        if not isinstance(src, dict) or not isinstance(dst, dict):
            return
        src, dst = src.get(key), dst.get(key)
    if isinstance(src, dict) and isinstance(dst, dict) and path[-1] in src:
        dst[path[-1]] = copy.deepcopy(src[path[-1]])


def _merge(target: Any, patch: Any, *, delete_nulls: bool) -> Any:
    """RFC 7386 merge (``delete_nulls``), or the deep merge that stands in for SSA."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None and delete_nulls:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value, delete_nulls=delete_nulls)
    return result


class JsonPatchError(ApiError):
    """A JSON Patch that cannot be applied (422, like the API server)."""

    def __init__(self, message: str) -> None:
        super().__init__(422, "Invalid", message)


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise JsonPatchError(f"bad JSON pointer {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (token != "0" and token.startswith("0")):
        raise JsonPatchError(f"bad array index {token!r}")
    index = int(token)
    if index > len(container) or (index == len(container) and not allow_end):
        raise JsonPatchError(f"array index {index} out of range")
    return index


def _resolve(doc: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(doc, dict):
            if token not in doc:
                raise JsonPatchError(f"path element {token!r} not found")
            doc = doc[token]
        elif isinstance(doc, list):
            doc = doc[_index(doc, token, allow_end=False)]
        else:
            raise JsonPatchError(f"cannot descend into {type(doc).__name__} at {token!r}")
    return doc


def json_patch(doc: JSON, ops: Any) -> JSON:
    """RFC 6902 add/remove/replace/test on a copy of ``doc``; all or nothing."""
    if not isinstance(ops, list):
        raise JsonPatchError("a JSON Patch must be a list of operations")
    root: Any = copy.deepcopy(doc)
    for op in ops:
        root = _operation(root, op)
    if not isinstance(root, dict):
        raise JsonPatchError("the patched document is not an object")
    return root


def _operation(root: Any, op: Mapping[str, Any]) -> Any:
    """One operation, applied to ``root`` in place; the (possibly new) root."""
    kind, path = op.get("op"), op.get("path")
    if not isinstance(path, str):
        raise JsonPatchError(f"operation without a path: {op!r}")
    tokens = _tokens(path)
    if kind == "test":
        if _resolve(root, tokens) != op.get("value"):
            raise JsonPatchError(f"test operation failed at {path}")
        return root
    if kind not in ("add", "remove", "replace"):
        raise JsonPatchError(f"FakeKube does not implement JSON Patch op {kind!r}")
    value = copy.deepcopy(op.get("value"))
    if not tokens:
        if kind == "remove":
            raise JsonPatchError("cannot remove the whole document")
        return value
    parent, last = _resolve(root, tokens[:-1]), tokens[-1]
    if isinstance(parent, dict):
        if kind != "add" and last not in parent:
            raise JsonPatchError(f"path {path} not found")
        if kind == "remove":
            del parent[last]
        else:
            parent[last] = value
    elif isinstance(parent, list):
        index = _index(parent, last, allow_end=kind == "add")
        if kind == "add":
            parent.insert(index, value)
        elif kind == "remove":
            del parent[index]
        else:
            parent[index] = value
    else:
        raise JsonPatchError(f"path {path}: parent is not a container")
    return root


# --- kopf-like indices -----------------------------------------------------------------------

#: An index function as kopf calls it: keyword arguments in, {key: value} or None out.
IndexFn = Callable[..., object]
#: A label filter as kopf takes it: value None means "present, any value".
LabelFilter = Mapping[str, str | None]


class FakeIndex(Mapping[IndexKey, list[Any]]):
    """A kopf index over one kind, computed live from the store.

    ``fn`` is the index function itself (called with the keyword arguments kopf
    passes: ``namespace``, ``name``, ``labels``, ``annotations``, ``body``,
    ``meta``, ``spec``, ``status``, ``uid``); ``labels`` filters like the
    handler's ``labels=``. ``freeze()`` keeps what it shows now until ``thaw()``,
    like a watch that has not delivered the latest events yet.
    """

    def __init__(
        self, kube: FakeKube, res: Resource, fn: IndexFn, labels: LabelFilter | None = None
    ) -> None:
        self.kube, self.res, self.fn, self.labels = kube, res, fn, dict(labels or {})
        self._frozen: dict[IndexKey, list[Any]] | None = None
        #: The last computation and the store revision it was made at: every
        #: write bumps the revision, so until one happens it is what a
        #: computation would give (and a pass reads the indices many times).
        self._computed: tuple[int, dict[IndexKey, list[Any]]] | None = None

    def freeze(self) -> None:
        self._frozen = self._compute()

    def thaw(self) -> None:
        self._frozen = None

    def _compute(self) -> dict[IndexKey, list[Any]]:
        out: dict[IndexKey, list[Any]] = {}
        for obj in self.kube.all(self.res):
            meta = obj["metadata"]
            labels = meta.get("labels") or {}
            if not all(
                k in labels and (v is None or labels[k] == v) for k, v in self.labels.items()
            ):
                continue
            found = self.fn(
                namespace=meta.get("namespace"),
                name=meta["name"],
                labels=labels,
                annotations=meta.get("annotations") or {},
                body=obj,
                meta=meta,
                spec=obj.get("spec") or {},
                status=obj.get("status") or {},
                uid=meta.get("uid"),
            )
            found = _finished(found)
            if isinstance(found, Mapping):
                for key, value in found.items():
                    out.setdefault(key, []).append(value)
        return out

    def _view(self) -> dict[IndexKey, list[Any]]:
        if self._frozen is not None:
            return self._frozen
        if self._computed is None or self._computed[0] != self.kube.revision:
            self._computed = (self.kube.revision, self._compute())
        return self._computed[1]

    def __getitem__(self, key: IndexKey) -> list[Any]:
        return self._view()[key]

    def __iter__(self) -> Iterator[IndexKey]:
        return iter(self._view())

    def __len__(self) -> int:
        return len(self._view())

    def __contains__(self, key: object) -> bool:
        return key in self._view()


def _finished(found: object) -> object:
    """The value of an ``async def`` index function, run to its end here: the
    operator's never await (kopf calls them on its event loop), so a sync
    Mapping can compute them; one that awaited would fail here."""
    if not inspect.iscoroutine(found):
        return found
    try:
        found.send(None)
    except StopIteration as done:
        return done.value
    found.close()
    raise AssertionError("an index function awaited: kopf's indices must not block")


def operator_indices(kube: FakeKube) -> dict[str, FakeIndex]:
    """Every index the operator registers with kopf (``handlers.registration``), by
    name, over ``kube``: the same functions, resources and label filters, read from
    kopf's registry (filled by importing ``handlers.registration``) so that an
    index added there appears here too."""
    out: dict[str, FakeIndex] = {}
    for handler in kopf.get_default_registry()._indexing.get_all_handlers():
        selector = handler.selector
        assert selector is not None, handler
        group = selector.group or ""
        (res,) = [r for r in BY_KIND.values() if (r.group, r.plural) == (group, selector.any_name)]
        labels = {
            k: None if v is kopf.PRESENT else str(v) for k, v in (handler.labels or {}).items()
        }
        out[str(handler.id)] = FakeIndex(kube, res, handler.fn, labels)
    return out
