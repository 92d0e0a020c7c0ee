"""Reading an HTTP answer with a byte cap, for both of our HTTP clients.

A peer we do not control (a Ray head, or one behind the API server's proxy)
decides how much it sends; the operator decides how much it keeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

#: The size of one read from an answer's stream.
CHUNK = 64 * 1024


async def read_at_most(chunks: AsyncIterable[bytes], limit: int) -> bytes:
    """The body, or its first ``limit + 1`` bytes as soon as it passes ``limit``:
    one byte too many says "too large" without reading (or keeping) the rest."""
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            return bytes(buf[: limit + 1])
    return bytes(buf)
