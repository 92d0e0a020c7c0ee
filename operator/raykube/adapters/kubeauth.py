"""Where the API server is and how to prove who we are to it.

In a pod: the service account (``KUBERNETES_SERVICE_HOST``/``_PORT``, its token
and CA). Elsewhere: the current context of ``$KUBECONFIG`` (or
``~/.kube/config``), with a CA, client certificates, a token or token file,
basic auth or an exec plugin. The TLS certificate of the server is always
verified, unless the kubeconfig itself says ``insecure-skip-tls-verify``.

A full client library (kubernetes_asyncio) did this before; it cost the
operator ~50 MiB of resident memory for its generated models, of which the
operator used none.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")

#: A token file (the service account's, or a kubeconfig's ``tokenFile``) is
#: read again after this many seconds: the kubelet rotates projected tokens.
TOKEN_REREAD_SECONDS = 60.0


#: Connections open to the API server at once. Each TLS connection costs
#: ~200 KiB (asyncio's 128 KiB read buffer and OpenSSL's); without a cap, a
#: burst of creations opened a hundred of them, which stayed in RSS.
MAX_CONNECTIONS = 32


class ConfigError(Exception):
    """Neither an in-cluster service account nor a usable kubeconfig."""


def _pem(data: str) -> str:
    """A kubeconfig's ``*-data`` field (base64 of PEM) as PEM text."""
    return base64.b64decode(data).decode("ascii")


@dataclass
class Credentials:
    """One API server and one identity; ``*_data`` fields hold PEM text."""

    server: str
    ca_file: str | None = None
    ca_data: str | None = None
    insecure: bool = False
    cert_file: str | None = None
    cert_data: str | None = None
    key_file: str | None = None
    key_data: str | None = None
    token: str | None = None
    token_file: str | None = None
    username: str | None = None
    password: str | None = None
    exec_plugin: Mapping[str, Any] | None = None
    _read_at: float = field(default=-1e9, repr=False)
    _expires: datetime | None = field(default=None, repr=False)

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file or self.cert_data:
            # ssl reads a certificate chain only from files: data goes through
            # a private temporary file that is gone once loaded.
            with contextlib.ExitStack() as stack:
                cert = self.cert_file or _written(stack, self.cert_data or "")
                key = self.key_file or (self.key_data and _written(stack, self.key_data))
                ctx.load_cert_chain(cert, key or None)
        return ctx

    @property
    def refreshable(self) -> bool:
        """Whether a 401 may be cured by reading the token again."""
        return bool(self.token_file or self.exec_plugin)

    def invalidate(self) -> None:
        """The server refused the token: fetch it again before the next request."""
        self._read_at = -1e9
        if self.exec_plugin:
            self.token, self._expires = None, None

    async def fresh_token(self) -> str | None:
        """The bearer token to send now: a token file is re-read every
        TOKEN_REREAD_SECONDS, an exec plugin is run again once its token expires."""
        now = time.monotonic()
        if self.token_file and now - self._read_at >= TOKEN_REREAD_SECONDS:
            self.token = _read_token(self.token_file)
            self._read_at = now
        elif self.exec_plugin and (self.token is None or self._expired()):
            self.token, self._expires = await _run_exec(self.exec_plugin)
        return self.token

    @property
    def expires(self) -> datetime | None:
        """When the current token (from an exec plugin) stops being valid."""
        return self._expires

    def _expired(self) -> bool:
        # No expiry given: the token serves until the server refuses it.
        return self._expires is not None and datetime.now(UTC) >= self._expires

    async def authorization(self) -> str | None:
        """The ``Authorization`` header's value, if any."""
        token = await self.fresh_token()
        if token:
            return f"Bearer {token}"
        if self.username and self.password:
            return aiohttp.BasicAuth(self.username, self.password).encode()
        return None


def _read_token(path: str) -> str | None:
    return Path(path).read_text().strip() or None


def _written(stack: contextlib.ExitStack, pem: str) -> str:
    fd, name = tempfile.mkstemp(suffix=".pem")  # readable by this user only
    stack.callback(os.unlink, name)
    with os.fdopen(fd, "w") as handle:
        handle.write(pem)
    return name


async def _run_exec(spec: Mapping[str, Any]) -> tuple[str, datetime | None]:
    """A client-go credential plugin's token and its expiry (None: until refused)."""
    env = {**os.environ, **{e["name"]: e["value"] for e in spec.get("env") or []}}
    api_version = spec.get("apiVersion", "client.authentication.k8s.io/v1")
    info = {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
    proc = await asyncio.create_subprocess_exec(
        spec["command"],
        *(spec.get("args") or []),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise ConfigError(f"exec plugin {spec['command']} failed: {err.decode()[-500:]}")
    status = json.loads(out).get("status") or {}
    if not status.get("token"):
        raise ConfigError(f"exec plugin {spec['command']} gave no token")
    expiry = status.get("expirationTimestamp")
    expires = datetime.fromisoformat(expiry.replace("Z", "+00:00")) if expiry else None
    return str(status["token"]), expires


def in_cluster() -> Credentials | None:
    """The pod's service account, or None outside a pod."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    token = SERVICE_ACCOUNT / "token"
    if not (host and port and token.is_file()):
        return None
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    ca = SERVICE_ACCOUNT / "ca.crt"
    return Credentials(
        server=f"https://{host}:{port}",
        ca_file=str(ca) if ca.is_file() else None,
        token_file=str(token),
    )


def _kubeconfig_paths() -> list[Path]:
    value = os.environ.get("KUBECONFIG")
    if value:
        return [Path(p).expanduser() for p in value.split(os.pathsep) if p]
    return [Path("~/.kube/config").expanduser()]


def from_kubeconfig() -> Credentials:
    """The current context of the kubeconfig files, merged first-wins as kubectl does."""
    current: str | None = None
    found: dict[str, dict[str, Any]] = {"contexts": {}, "clusters": {}, "users": {}}
    kind_of = {"contexts": "context", "clusters": "cluster", "users": "user"}
    loaded = False
    for path in _kubeconfig_paths():
        if not path.is_file():
            continue
        loaded = True
        config = yaml.safe_load(path.read_text()) or {}
        current = current or config.get("current-context")
        for section, key in kind_of.items():
            for item in config.get(section) or []:
                entry = dict(item.get(key) or {})
                entry["_dir"] = path.parent  # relative file names are relative to their file
                found[section].setdefault(item["name"], entry)
    if not loaded:
        raise ConfigError("no service account and no kubeconfig file")
    if not current or current not in found["contexts"]:
        raise ConfigError(f"kubeconfig: current context {current!r} is not defined")
    context = found["contexts"][current]
    try:
        cluster = found["clusters"][context["cluster"]]
        user = found["users"].get(context.get("user", ""), {"_dir": cluster["_dir"]})
    except KeyError as missing:
        raise ConfigError(f"kubeconfig: context {current!r} names no {missing}") from None
    if "auth-provider" in user:
        raise ConfigError("kubeconfig: auth-provider is not supported; use an exec plugin")
    return _credentials(cluster, user)


def _file(entry: Mapping[str, Any], key: str) -> str | None:
    value = entry.get(key)
    return str(Path(entry["_dir"]) / value) if value else None


def _credentials(cluster: Mapping[str, Any], user: Mapping[str, Any]) -> Credentials:
    def data(entry: Mapping[str, Any], key: str) -> str | None:
        value = entry.get(key)
        return _pem(value) if value else None

    return Credentials(
        server=str(cluster["server"]).rstrip("/"),
        ca_file=None
        if cluster.get("certificate-authority-data")
        else _file(cluster, "certificate-authority"),
        ca_data=data(cluster, "certificate-authority-data"),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        cert_file=None
        if user.get("client-certificate-data")
        else _file(user, "client-certificate"),
        cert_data=data(user, "client-certificate-data"),
        key_file=None if user.get("client-key-data") else _file(user, "client-key"),
        key_data=data(user, "client-key-data"),
        token=user.get("token"),
        token_file=None if user.get("token") else _file(user, "tokenFile"),
        username=user.get("username"),
        password=user.get("password"),
        exec_plugin=user.get("exec"),
    )


def load() -> Credentials:
    """In-cluster first, then the kubeconfig: the order client-go's tools use."""
    return in_cluster() or from_kubeconfig()


class Transport:
    """Authenticated HTTP to the API server; one connection pool per process."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=self.credentials.ssl_context(), limit=MAX_CONNECTIONS
            )
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": "raykube"}
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        time_limit: float,
    ) -> aiohttp.ClientResponse:
        """The response, its body unread: the caller reads (or drops) it."""
        session = self._open()
        for attempt in (1, 2):
            sent = dict(headers)
            auth = await self.credentials.authorization()
            if auth:
                sent["Authorization"] = auth
            resp = await session.request(
                method,
                self.credentials.server + path,
                headers=sent,
                data=body,
                timeout=aiohttp.ClientTimeout(total=time_limit),
            )
            if resp.status != 401 or attempt == 2 or not self.credentials.refreshable:
                return resp
            # A rotated token: read it again and retry once.
            resp.release()
            self.credentials.invalidate()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
