"""The Kube adapter's own credentials: kubeconfig and in-cluster, against a real
TLS server on 127.0.0.1 (its certificate is verified, client certificates
and tokens are presented, a rotated token is read again)."""

from __future__ import annotations

import base64
import json
import ssl
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from localcluster import pki, processes
from raykube.adapters import kubeauth
from raykube.adapters.kube import PODS, ApiError, Kube


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pki.KeyPair]:
    d = tmp_path_factory.mktemp("pki")
    ca = pki.make_ca(d)
    server = pki.issue(ca, d, "server", common_name="api", ips=("127.0.0.1",), server=True)
    client = pki.issue(ca, d, "client", common_name="raykube", client=True)
    return {"ca": ca, "server": server, "client": client}


class Server:
    """An API server's stand-in: answers GETs with who asked (token, client CN)."""

    def __init__(self) -> None:
        self.tokens: list[str | None] = []
        self.valid_token: str | None = None

    async def handle(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        self.tokens.append(auth)
        if self.valid_token is not None and auth != f"Bearer {self.valid_token}":
            return web.json_response({"reason": "Unauthorized", "message": "no"}, status=401)
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(x[0] for x in (peer or {}).get("subject", ()))
        return web.json_response({"auth": auth, "client": subject.get("commonName")})


@pytest.fixture
async def api(certs: dict[str, pki.KeyPair]) -> AsyncIterator[tuple[str, Server]]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(certs["ca"].cert))
    ctx.load_cert_chain(str(certs["server"].cert), str(certs["server"].key))
    ctx.verify_mode = ssl.CERT_OPTIONAL
    server = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = processes.free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
    try:
        yield f"https://127.0.0.1:{port}", server
    finally:
        await runner.cleanup()


def _kubeconfig(path: Path, server: str, user: dict[str, Any], **cluster: Any) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "here",
        "contexts": [{"name": "here", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
        "users": [{"name": "u", "user": user}],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


async def _get(creds: kubeauth.Credentials) -> Any:
    kube = Kube(kubeauth.Transport(creds), "raykube")
    try:
        return await kube.get(PODS, "ns", "p")
    finally:
        await kube.close()


async def test_client_certificate_from_kubeconfig_data(
    api: tuple[str, Server],
    certs: dict[str, pki.KeyPair],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, _ = api
    user = {
        "client-certificate-data": _b64(certs["client"].cert),
        "client-key-data": _b64(certs["client"].key),
    }
    path = _kubeconfig(
        tmp_path / "config", url, user, **{"certificate-authority-data": _b64(certs["ca"].cert)}
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    answer = await _get(kubeauth.load())
    assert answer == {"auth": None, "client": "raykube"}
    assert _names(scratch) == []  # the key went through a file that is gone


def _names(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir()]


async def test_relative_files_and_a_token(
    api: tuple[str, Server], certs: dict[str, pki.KeyPair], tmp_path: Path
) -> None:
    """Relative paths are relative to the kubeconfig's own directory, as kubectl reads them."""
    url, _ = api
    (tmp_path / "ca.crt").write_bytes(certs["ca"].cert.read_bytes())
    path = _kubeconfig(
        tmp_path / "config", url, {"token": "t0"}, **{"certificate-authority": "ca.crt"}
    )
    other = tmp_path / "elsewhere"
    other.mkdir()
    creds = _load(f"{path}:{other / 'missing'}")
    assert creds.ca_file == str(tmp_path / "ca.crt")
    assert (await _get(creds))["auth"] == "Bearer t0"


def _load(kubeconfig: str) -> kubeauth.Credentials:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", kubeconfig)
        mp.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        return kubeauth.load()


async def test_the_server_certificate_is_verified(api: tuple[str, Server], tmp_path: Path) -> None:
    url, server = api
    creds = _load(str(_kubeconfig(tmp_path / "config", url, {"token": "t"})))
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await _get(creds)
    assert server.tokens == []  # nothing was sent to an unverified server
    insecure = _load(
        str(_kubeconfig(tmp_path / "c2", url, {"token": "t"}, **{"insecure-skip-tls-verify": True}))
    )
    assert (await _get(insecure))["auth"] == "Bearer t"


async def test_in_cluster_token_is_read_again_when_refused(
    api: tuple[str, Server],
    certs: dict[str, pki.KeyPair],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, server = api
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("old\n")
    (account / "ca.crt").write_bytes(certs["ca"].cert.read_bytes())
    monkeypatch.setattr(kubeauth, "SERVICE_ACCOUNT", account)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", url.rsplit(":", 1)[1])
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "unused"))
    creds = kubeauth.load()
    assert creds.server == url
    kube = Kube(kubeauth.Transport(creds), "raykube")
    try:
        assert (await kube.get(PODS, "ns", "p") or {})["auth"] == "Bearer old"
        # The kubelet rotated the token; the server no longer takes the old one.
        (account / "token").write_text("new\n")
        server.valid_token = "new"
        assert (await kube.get(PODS, "ns", "p") or {})["auth"] == "Bearer new"
        assert server.tokens[-2:] == ["Bearer old", "Bearer new"]
        # A token the server refuses for good is an ApiError, after one retry.
        server.valid_token = "other"
        with pytest.raises(ApiError) as info:
            await kube.get(PODS, "ns", "p")
        assert info.value.status == 401
    finally:
        await kube.close()


def test_ipv6_service_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("t")
    monkeypatch.setattr(kubeauth, "SERVICE_ACCOUNT", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    creds = kubeauth.in_cluster()
    assert creds is not None
    assert creds.server == "https://[fd00::1]:443"
    assert creds.ca_file is None  # the system's CAs then


async def test_exec_plugin_token_until_it_expires(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    counter = tmp_path / "runs"
    plugin.write_text(
        "import json, os, pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "info = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "status = {'token': f\"tok-{n}-{os.environ['EXTRA']}\"}\n"
        "if sys.argv[1] == 'expired':\n"
        "    status['expirationTimestamp'] = '2000-01-01T00:00:00Z'\n"
        "print(json.dumps({'apiVersion': info['apiVersion'], 'status': status}))\n"
    )
    spec = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": sys.executable,
        "args": [str(plugin), "valid"],
        "env": [{"name": "EXTRA", "value": "x"}],
    }
    creds = kubeauth.Credentials(server="https://127.0.0.1:1", exec_plugin=spec)
    assert await creds.fresh_token() == "tok-1-x"
    assert await creds.fresh_token() == "tok-1-x"  # no expiry: kept until refused
    creds.invalidate()
    assert await creds.fresh_token() == "tok-2-x"
    expiring = kubeauth.Credentials(
        server="https://127.0.0.1:1", exec_plugin={**spec, "args": [str(plugin), "expired"]}
    )
    assert await expiring.fresh_token() == "tok-3-x"
    assert await expiring.fresh_token() == "tok-4-x"  # already expired: run again


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({"current-context": "nope", "contexts": []}, "current context 'nope'"),
        (
            {
                "current-context": "a",
                "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [{"name": "c", "cluster": {"server": "https://x"}}],
                "users": [{"name": "u", "user": {"auth-provider": {"name": "gcp"}}}],
            },
            "auth-provider",
        ),
    ],
)
def test_unusable_kubeconfigs_say_why(doc: dict[str, Any], why: str, tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text(json.dumps(doc))
    with pytest.raises(kubeauth.ConfigError, match=why):
        _load(str(path))
    with pytest.raises(kubeauth.ConfigError, match="no kubeconfig"):
        _load(str(tmp_path / "absent"))
