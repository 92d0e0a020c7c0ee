"""Request bodies, read with a cap: a client decides how much it sends, the
replica decides how much it holds.

Starlette's ``request.json()`` reads the whole body into memory first, however
large; every ingress here reads through ``json_body`` instead, which refuses a
declared ``Content-Length`` over the cap without reading anything and stops a
body without one (chunked) as soon as it passes the cap. Either way the
answer is 413.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

#: The largest body an ingress reads unless it says otherwise: the walkthrough's
#: orders are a few bytes, and 1 MiB is far more than any JSON order. The
#: embeddings ingress sizes its own from its text limits.
MAX_REQUEST_BYTES = 2**20


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"error": f"request body larger than {limit} bytes"}, status_code=413)


def _declared_length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


async def read_body(request: Request, limit: int = MAX_REQUEST_BYTES) -> bytes | None:
    """The body, or None once it is known to be over ``limit`` bytes (read no further)."""
    declared = _declared_length(request)
    if declared is not None and declared > limit:
        return None
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            return None
    return bytes(buf)


async def json_body(
    request: Request, limit: int = MAX_REQUEST_BYTES
) -> tuple[Any, JSONResponse | None]:
    """(the decoded JSON body, None), or (None, the error answer: 413 or 400)."""
    body = await read_body(request, limit)
    if body is None:
        return None, _too_large(limit)
    try:
        return json.loads(body), None
    except ValueError:  # bad JSON or bad UTF-8
        return None, JSONResponse({"error": "body must be JSON"}, status_code=400)
