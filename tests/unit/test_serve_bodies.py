"""Request bodies in the Serve runtime are read up to a cap: a client cannot make
a replica hold (or parse) more than that. Starlette requests built in memory;
no Ray needed (the ray and runtime tiers run the apps themselves)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request

from raykube_serve.bodies import MAX_REQUEST_BYTES, json_body

Message = dict[str, Any]
CHUNK = 64 * 1024


def request(
    chunks: list[bytes] | None = None,
    *,
    length: int | None = None,
    endless: bool = False,
) -> tuple[Request, list[int]]:
    """A POST whose body arrives in ``chunks`` (or forever); the list counts reads."""
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
    reads = [0]
    pending = list(chunks or [])

    async def receive() -> Message:
        reads[0] += 1
        if endless:
            return {"type": "http.request", "body": b" " * CHUNK, "more_body": True}
        body = pending.pop(0) if pending else b""
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    read: Callable[[], Awaitable[Message]] = receive
    return Request(scope, read), reads


async def test_a_body_within_the_cap_is_parsed() -> None:
    body = json.dumps({"texts": ["a", "b"]}).encode()
    req, _ = request([body[:5], body[5:]], length=len(body))
    payload, error = await json_body(req)
    assert error is None and payload == {"texts": ["a", "b"]}


async def test_a_declared_length_over_the_cap_is_refused_unread() -> None:
    req, reads = request([b"{}"], length=MAX_REQUEST_BYTES + 1)
    payload, error = await json_body(req)
    assert payload is None and error is not None and error.status_code == 413
    assert reads[0] == 0


async def test_an_endless_body_without_a_length_is_cut_at_the_cap() -> None:
    req, reads = request(endless=True)
    _, error = await json_body(req, limit=1_000_000)
    assert error is not None and error.status_code == 413
    assert reads[0] * CHUNK <= 1_000_000 + 2 * CHUNK
    assert b"1000000" in bytes(error.body)


async def test_bad_json_is_a_400() -> None:
    req, _ = request([b"{not json"])
    _, error = await json_body(req)
    assert error is not None and error.status_code == 400
