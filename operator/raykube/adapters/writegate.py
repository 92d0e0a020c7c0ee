"""The process-wide gate every write of the operator waits on.

A leader that cannot renew its Lease (the API server stopped, its network
cut) may no longer be the leader by the time its next write lands, so it
stops writing: the gate closes, writes to the API server and to Ray heads
wait, reads go on. It opens again only when the same Lease is renewed (a
PUT carrying the resourceVersion last seen, so nobody took it meanwhile);
a leader that finds another holder exits instead (``raykube.leader``).
Waiting instead of exiting keeps an outage of the API server from costing
a restart, a cold cache and the work in flight.
"""

from __future__ import annotations

import asyncio


class WriteGate:
    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()

    @property
    def closed(self) -> bool:
        return not self._open.is_set()

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def wait(self) -> None:
        """Return at once while open; otherwise when it opens."""
        if self.closed:
            await self._open.wait()


#: The operator's one gate; the elector's own client does not wait on it.
WRITES = WriteGate()
