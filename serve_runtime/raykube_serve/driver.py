"""A JSON-over-HTTP ingress named `DAGDriver`, for the walkthrough's apps.

Ray removed its own `DAGDriver` (and the deployment-graph API) long before
2.60, but the walkthrough's serve config still lists a deployment called
`DAGDriver` in both applications. Serve refuses a config that names a
deployment the application does not contain, so each app's ingress is this
small deployment under that name: it decodes the request body (at most
``bodies.MAX_REQUEST_BYTES``, else 413) as JSON, hands
it to the first deployment of the app and encodes the answer as JSON (so
`6` comes back as `6` and a string comes back quoted, as the walkthrough shows).
"""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import JSONResponse

from raykube_serve.bodies import json_body


class JsonIngress:
    """Body as JSON to the app's first deployment, its answer back as JSON."""

    def __init__(self, entry: DeploymentHandle[Any]) -> None:
        self._entry = entry

    async def __call__(self, request: Request) -> JSONResponse:
        payload, error = await json_body(request)
        if error is not None:
            return error
        try:
            result = await self._entry.remote(payload)
        except (ValueError, KeyError, TypeError) as exc:
            # Bad input raised in a downstream replica arrives wrapped in a
            # RayTaskError that also subclasses the original type.
            return JSONResponse({"error": _last_line(exc)}, status_code=400)
        return JSONResponse(result)


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


# Applied as a call, not as a class decorator, so type checkers see a Deployment.
DAGDriver = serve.deployment(
    name="DAGDriver",
    ray_actor_options={"num_cpus": 0.1},
    # The ingress handles cheap async hops; Ray's default of 5 ongoing requests
    # would queue clients in the proxy long before the replica is busy.
    max_ongoing_requests=64,
    # Bounded proxy queue: beyond this the proxy answers 503 at once instead of
    # letting latency grow without limit (load shedding, seed 001).
    max_queued_requests=256,
)(JsonIngress)
