"""Two versions of one model behind a weighted splitter: canary and A/B releases
(the user's documents, section 5, "多版本模型管理").

``import_path: raykube_serve.canary:app``. ``POST {"text": "..."}`` answers
``{"served_by": "v1", "model_version": "1.0", "label": ..., "length": ...}``.

The weights live in the ``Splitter`` deployment's ``user_config``
(``{"weights": {"v1": 90, "v2": 10}}``): Serve calls ``reconfigure`` inside the
running replica, so an edit of ``serveConfigV2`` moves traffic without a
restart and without a new cluster. The split is a smooth weighted round-robin,
not a coin toss: out of every ``sum(weights)`` requests a replica sends exactly
``weights[v]`` to version ``v``, interleaved, so a 1% canary gets 1 request in
100, neither 0 nor 3. The header ``x-model-version: v2`` pins a request to one
version (A/B tests by client, or checking the canary by hand). Each version's
own ``user_config`` names it (``{"version": "2.0"}``), so a new model version
is rolled out by editing that, in place too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import JSONResponse

from raykube_serve.bodies import json_body

VERSIONS = ("v1", "v2")
PIN_HEADER = "x-model-version"
#: Weights are small integers (percent, per mille): bounded so one request's
#: pick stays cheap and the counters cannot grow without limit.
MAX_WEIGHT = 1_000_000
MAX_TEXT = 10_000


def parse_weights(config: Mapping[str, Any]) -> dict[str, int]:
    """``user_config["weights"]`` checked: integers 0..MAX_WEIGHT for known versions,
    at least one above 0. ValueError names what is wrong (Serve then reports the
    application DEPLOY_FAILED, and raykube rolls the edit back)."""
    weights = config.get("weights")
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError('user_config.weights must be a mapping such as {"v1": 90, "v2": 10}')
    out: dict[str, int] = {}
    for name, value in weights.items():
        if name not in VERSIONS:
            raise ValueError(f"user_config.weights: unknown version {name!r}; known: {VERSIONS}")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_WEIGHT:
            raise ValueError(
                f"user_config.weights.{name}: an integer 0..{MAX_WEIGHT}, got {value!r}"
            )
        out[name] = value
    if sum(out.values()) == 0:
        raise ValueError("user_config.weights: at least one weight must be above 0")
    return out


class RoundRobin:
    """Smooth weighted round-robin: each pick adds every weight to its credit,
    takes the version with the most credit and charges it the total."""

    def __init__(self, weights: Mapping[str, int]) -> None:
        self.weights = dict(weights)
        self.credit = dict.fromkeys(self.weights, 0)

    def pick(self) -> str:
        total = sum(self.weights.values())
        for name, weight in self.weights.items():
            self.credit[name] += weight
        chosen = max(self.credit, key=lambda n: (self.credit[n], n))
        self.credit[chosen] -= total
        return chosen


class Model:
    """A stand-in model: what matters here is which version answered."""

    def __init__(self) -> None:
        self.version = ""

    def reconfigure(self, config: dict[str, Any]) -> None:
        version = config.get("version")
        if not isinstance(version, str) or not version:
            raise ValueError(f"user_config.version must be a non-empty string, got {version!r}")
        self.version = version

    async def predict(self, text: str) -> dict[str, Any]:
        positive = sum(text.lower().count(w) for w in ("good", "great", "好"))
        return {
            "model_version": self.version,
            "label": "positive" if positive else "neutral",
            "length": len(text),
        }


class Splitter:
    """The ingress: picks a version per request by the configured weights."""

    def __init__(self, v1: DeploymentHandle[Any], v2: DeploymentHandle[Any]) -> None:
        self._handles = {"v1": v1, "v2": v2}
        self._rr = RoundRobin({"v1": 1})

    def reconfigure(self, config: dict[str, Any]) -> None:
        self._rr = RoundRobin(parse_weights(config))

    async def __call__(self, request: Request) -> JSONResponse:
        payload, error = await json_body(request)
        if error is not None:
            return error
        text = payload.get("text") if isinstance(payload, dict) else None
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            message = f'expected {{"text": "..."}} of at most {MAX_TEXT} characters'
            return JSONResponse({"error": message}, status_code=400)
        pinned = request.headers.get(PIN_HEADER, "")
        if pinned and pinned not in VERSIONS:
            return JSONResponse({"error": f"{PIN_HEADER}: one of {VERSIONS}"}, status_code=400)
        version = pinned or self._rr.pick()
        result: dict[str, Any] = await self._handles[version].predict.remote(text)
        return JSONResponse({"served_by": version, **result})


_SMALL: dict[str, Any] = {"ray_actor_options": {"num_cpus": 0.1}, "max_ongoing_requests": 64}
ModelV1 = serve.deployment(name="ModelV1", user_config={"version": "1.0"}, **_SMALL)(Model)
ModelV2 = serve.deployment(name="ModelV2", user_config={"version": "2.0"}, **_SMALL)(Model)
TrafficSplitter = serve.deployment(
    name="TrafficSplitter",
    user_config={"weights": {"v1": 90, "v2": 10}},
    max_queued_requests=256,
    **_SMALL,
)(Splitter)

app = TrafficSplitter.bind(ModelV1.bind(), ModelV2.bind())
