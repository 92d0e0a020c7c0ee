"""The Kubernetes adapter: the only module that talks to the API server.

It speaks plain JSON dicts over an authenticated aiohttp transport (kubeauth),
so builders and decisions never see a client type. Writes of objects we own
are server-side applies under one field manager.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlencode

from raykube.adapters import jsonwire
from raykube.adapters.bodies import CHUNK, read_at_most
from raykube.adapters.kubeauth import Transport, load
from raykube.adapters.writegate import WRITES, WriteGate
from raykube.metrics import KUBE_REQUESTS
from raykube.timefmt import now_iso

log = logging.getLogger(__name__)

JSON = dict[str, Any]

#: What one answer through the service proxy may bring, by default: whatever
#: sits behind a Service is not ours, and must not decide our memory.
PROXY_BODY_LIMIT = 8 * 2**20


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


PODS = Resource("", "v1", "pods", "Pod")
SECRETS = Resource("", "v1", "secrets", "Secret")
SERVICES = Resource("", "v1", "services", "Service")
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts", "ServiceAccount")
EVENTS = Resource("", "v1", "events", "Event")
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles", "Role")
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding")
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease")
JOBS = Resource("batch", "v1", "jobs", "Job")
INGRESSES = Resource("networking.k8s.io", "v1", "ingresses", "Ingress")
NETWORK_POLICIES = Resource("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy")
PERSISTENT_VOLUME_CLAIMS = Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
RAYCLUSTERS = Resource("ray.io", "v1", "rayclusters", "RayCluster")
RAYSERVICES = Resource("ray.io", "v1", "rayservices", "RayService")
# Gateway API (only with a RayService's clusterUpgradeOptions.gatewayClassName).
GATEWAYS = Resource("gateway.networking.k8s.io", "v1", "gateways", "Gateway")
HTTPROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute")

BY_KIND = {
    r.kind: r
    for r in (
        PODS,
        SECRETS,
        SERVICES,
        SERVICE_ACCOUNTS,
        EVENTS,
        ROLES,
        ROLE_BINDINGS,
        LEASES,
        JOBS,
        INGRESSES,
        NETWORK_POLICIES,
        PERSISTENT_VOLUME_CLAIMS,
        RAYCLUSTERS,
        RAYSERVICES,
        GATEWAYS,
        HTTPROUTES,
    )
}


class ApiError(Exception):
    """An API call failed; ``status`` is the HTTP code, ``message`` the server's words."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def invalid(self) -> bool:
        """The server judged the request itself wrong: retrying it unchanged cannot help."""
        return self.status in (400, 422)

    @property
    def forbidden(self) -> bool:
        return self.status == 403

    @property
    def namespace_terminating(self) -> bool:
        """Creation refused because the namespace is being deleted (its objects go with it)."""
        return self.status == 403 and "being terminated" in self.message


def _status_error(code: int, data: bytes) -> ApiError:
    try:
        body = json.loads(data)
        return ApiError(code, str(body.get("reason", "")), str(body.get("message", "")))
    except (TypeError, ValueError, AttributeError):
        return ApiError(code, "", data.decode(errors="replace")[:2000])


def _encoded(body: Any) -> bytes | None:
    if body is None or isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


class Kube:
    """One authenticated API client per process, opened at start-up."""

    def __init__(self, api: Transport, field_manager: str, gate: WriteGate | None = WRITES) -> None:
        self._api = api
        self.field_manager = field_manager
        #: Writes wait while it is closed (None: never, the elector's client).
        self._gate = gate

    @classmethod
    async def connect(cls, field_manager: str, *, gated: bool = True) -> Kube:
        return cls(Transport(load()), field_manager, WRITES if gated else None)

    async def _may_write(self, method: str) -> None:
        if method != "GET" and self._gate is not None:
            await self._gate.wait()

    async def close(self) -> None:
        await self._api.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSON:
        if query:
            path = f"{path}?{urlencode(query)}"
        await self._may_write(method)
        code = "error"
        try:
            raw = await self._api.request(
                method,
                path,
                headers={"Content-Type": content_type, "Accept": "application/json"},
                body=_encoded(body),
                time_limit=30,
            )
            code = str(raw.status)
            data = await raw.read()
        finally:
            KUBE_REQUESTS.labels(method, code).inc()
        if not 200 <= int(raw.status) <= 299:
            raise _status_error(int(raw.status), data)
        return cast(JSON, jsonwire.loads(data)) if data else {}

    async def get(self, res: Resource, namespace: str | None, name: str) -> JSON | None:
        try:
            return await self._call("GET", res.path(namespace, name))
        except ApiError as err:
            if err.not_found:
                return None
            raise

    async def apply(self, obj: JSON, *, dry_run: bool = False) -> JSON:
        """Server-side apply, forcing our fields; the object must carry apiVersion,
        kind and name. Only for objects the operator controls (the callers check
        the controller reference first): a forced apply would adopt anything."""
        res = BY_KIND[obj["kind"]]
        meta = obj["metadata"]
        query = {"fieldManager": self.field_manager, "force": "true"}
        if dry_run:
            query["dryRun"] = "All"
        return await self._call(
            "PATCH",
            res.path(meta.get("namespace"), meta["name"]),
            query=query,
            body=obj,
            content_type="application/apply-patch+yaml",
        )

    async def create_object(self, obj: JSON, *, dry_run: bool = False) -> JSON:
        """POST ``obj`` (its kind names the resource); ``ApiError.conflict`` when an
        object of that name exists, whoever made it: creating never takes over."""
        res = BY_KIND[obj["kind"]]
        query = {"fieldManager": self.field_manager}
        if dry_run:
            query["dryRun"] = "All"
        return await self._call(
            "POST", res.path(obj["metadata"].get("namespace")), query=query, body=obj
        )

    async def get_object(self, obj: JSON) -> JSON | None:
        """The live object of ``obj``'s kind, namespace and name, or None."""
        meta = obj["metadata"]
        return await self.get(BY_KIND[obj["kind"]], meta.get("namespace"), meta["name"])

    async def create(self, res: Resource, namespace: str | None, body: JSON) -> JSON:
        """POST a new object; fails with ``ApiError.conflict`` when it exists already."""
        query = {"fieldManager": self.field_manager}
        return await self._call("POST", res.path(namespace), query=query, body=body)

    async def update(self, res: Resource, namespace: str | None, name: str, body: JSON) -> JSON:
        """PUT the whole object. With ``metadata.resourceVersion`` in ``body`` the
        server refuses (409, ``ApiError.conflict``) if the object changed since it
        was read: optimistic concurrency for read-modify-write decisions."""
        query = {"fieldManager": self.field_manager}
        return await self._call("PUT", res.path(namespace, name), query=query, body=body)

    async def delete(
        self, res: Resource, namespace: str | None, name: str, *, uid: str | None = None
    ) -> bool:
        """Delete; with ``uid`` only that incarnation. False when already gone."""
        body: JSON = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "propagationPolicy": "Background",
        }
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            await self._call("DELETE", res.path(namespace, name), body=body)
        except ApiError as err:
            if err.not_found or err.conflict:
                return False
            raise
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
        content = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
        }[patch_type]
        path = res.path(namespace, name) + (f"/{subresource}" if subresource else "")
        return await self._call(
            "PATCH",
            path,
            query={"fieldManager": self.field_manager},
            body=patch,
            content_type=content,
        )

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
        """Any request through the API server's service proxy; (0, why) when the API
        server itself could not be reached. At most ``limit + 1`` bytes of the answer
        are read: a longer body says it is too large by its length."""
        url = f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy{path}"
        params = {"Accept": "application/json", **(headers or {})}
        if body is not None:
            params["Content-Type"] = "application/json"
        await self._may_write(method)
        try:
            raw = await self._api.request(
                method, url, headers=params, body=_encoded(body), time_limit=request_timeout
            )
        except (OSError, TimeoutError) as exc:
            return 0, f"{type(exc).__name__}: {exc}".encode()
        data = await read_at_most(raw.content.iter_chunked(CHUNK), limit)
        if len(data) > limit:
            raw.close()  # the rest is never read; the connection is not reused
        return int(raw.status), data

    async def event(
        self,
        involved: Mapping[str, Any],
        event_type: str,
        reason: str,
        message: str,
        component: str,
        at: str | None = None,
    ) -> None:
        """Record a core/v1 Event about ``involved`` (dated ``at``, else now);
        failures are logged, never raised."""
        meta = involved["metadata"]
        now = at or now_iso()
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": component,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._call("POST", EVENTS.path(meta.get("namespace")), body=body)
        except ApiError as err:
            log.warning("could not record event %s on %s: %s", reason, meta["name"], err)
