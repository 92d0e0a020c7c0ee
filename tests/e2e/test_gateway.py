"""The Gateway API on the local cluster: Traefik (built from source, a host
process) routes an HTTPRoute's weighted backends to real pods on the real node.

Two Services, ``green`` and ``blue``, each one pod that answers its own name;
a Gateway of the ``traefik`` class and an HTTPRoute sending 80% to green and
20% to blue. Every answer is checked and counted, then the weights are turned
round (20/80) and counted again: what the operator's HTTPRoute relies on
during an incremental upgrade.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from e2e.kube import Kubectl, condition, eventually, pod_ready
from localcluster import gateway
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

REQUESTS = 200
#: A one-line HTTP server answering its pod's name (the runtime image's Python).
SERVER = (
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = os.environ['NAME'].encode()\n"
    "        self.send_response(200)\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def log_message(self, *args):\n"
    "        pass\n"
    "http.server.ThreadingHTTPServer(('', 8080), H).serve_forever()\n"
)


def _backend(name: str, image: str) -> list[dict[str, Any]]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", SERVER],
                    "env": [{"name": "NAME", "value": name}],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                }
            ]
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 8000, "targetPort": 8080}]},
    }
    return [pod, svc]


def _route(green: int, blue: int) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "split"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"name": "green", "port": 8000, "weight": green},
                        {"name": "blue", "port": 8000, "weight": blue},
                    ],
                }
            ],
        },
    }


def _count(url: str) -> Counter[str]:
    answers: Counter[str] = Counter()
    with httpx.Client(timeout=10) as client:
        for _ in range(REQUESTS):
            answer = client.get(url + "/")
            assert answer.status_code == 200, (answer.status_code, answer.text[:200])
            assert answer.text in ("green", "blue"), answer.text[:200]
            answers[answer.text] += 1
    return answers


def _split_is(url: str, green: int) -> bool:
    """Twenty answers already in the proportions (Traefik's reload is behind the route)."""
    seen = Counter(httpx.get(url + "/", timeout=5).text for _ in range(20))
    return abs(seen["green"] * 5 - green) <= 10


def test_traefik_routes_an_httproutes_weights_to_real_pods(
    e2e_stack: Stack, e2e_namespace: str, traefik: gateway.Traefik
) -> None:
    k = Kubectl(e2e_stack.cluster.cp, e2e_namespace)
    image = e2e_stack.images.runtime.ref
    for name in ("green", "blue"):
        for doc in _backend(name, image):
            k.apply(doc)
    k.apply(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw"},
            "spec": {
                "gatewayClassName": gateway.GATEWAY_CLASS,
                "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}],
            },
        }
    )
    k.apply(_route(80, 20))
    eventually(
        lambda: all(pod_ready(p) for p in k.items("pod")) and len(k.items("pod")) == 2,
        120,
        "both backend pods Ready",
    )
    gw = eventually(
        lambda: (g := k.get("gateway", "gw")) and condition(g, "Programmed").get("status") == "True"
        and g,
        60,
        "the Gateway Programmed by Traefik",
    )  # fmt: skip
    print(f"Gateway addresses: {gw['status'].get('addresses')}")
    eventually(lambda: _split_is(traefik.url, 80), 60, "Traefik routing 80/20", every=0.5)
    first = _count(traefik.url)
    print(f"80/20: {dict(first)} of {REQUESTS}")
    assert sum(first.values()) == REQUESTS
    assert 0.75 <= first["green"] / REQUESTS <= 0.85, first

    k.apply(_route(20, 80))
    eventually(lambda: _split_is(traefik.url, 20), 60, "Traefik routing 20/80", every=0.5)
    second = _count(traefik.url)
    print(f"20/80: {dict(second)} of {REQUESTS}")
    assert 0.15 <= second["green"] / REQUESTS <= 0.25, second
