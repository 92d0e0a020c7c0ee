"""Relay from the node's network namespace to the apiserver on host loopback.

The apiserver binds 127.0.0.1 in the host's namespace, which nothing in the
node's namespace can reach. This process opens its listening socket *inside*
the node namespace (a socket keeps the namespace it was made in), switches
back to the host's namespace, and forwards every connection to the
apiserver's loopback port byte for byte; TLS passes through untouched, so
clients still verify the apiserver's own certificate.

    python -m localcluster.node_proxy NETNS_PATH PORT

listens on 0.0.0.0:PORT in the node namespace (reached there as
127.0.0.1:PORT by node daemons and as <node IP>:PORT behind the
``kubernetes`` Service by pods) and connects to 127.0.0.1:PORT on the host.

SIGUSR1 cuts every connection open at that moment, both ways (a fault for
tests: every watch of the node's daemons and pods ends at once, as when a
load balancer in front of an API server drops them); new connections are
relayed as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys

from localcluster import netns

_CHUNK = 1 << 16


def listen_in(netns_path: str, port: int) -> socket.socket:
    host_ns = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        netns.setns(netns_path)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        sock.listen(512)
        sock.setblocking(False)
    finally:
        netns.setns(f"/proc/self/fd/{host_ns}")
        os.close(host_ns)
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


#: Both ends of every relayed connection, for SIGUSR1.
_OPEN: set[asyncio.StreamWriter] = set()


async def _relay(port: int, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    try:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        client_w.close()
        return
    ends = (client_w, up_w)
    _OPEN.update(ends)
    try:
        await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))
    finally:
        _OPEN.difference_update(ends)


def _cut_all() -> None:
    cut = list(_OPEN)
    for writer in cut:
        writer.transport.abort()  # a reset, not a graceful close
    print(f"cut {len(cut) // 2} connection(s)", flush=True)


async def serve(sock: socket.socket, port: int) -> None:
    server = await asyncio.start_server(lambda r, w: _relay(port, r, w), sock=sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, _cut_all)
    async with server:
        await stop.wait()


def main(argv: list[str]) -> int:
    netns_path, port = argv[0], int(argv[1])
    sock = listen_in(netns_path, port)
    print(f"relaying {netns_path} 0.0.0.0:{port} -> host 127.0.0.1:{port}", flush=True)
    asyncio.run(serve(sock, port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
