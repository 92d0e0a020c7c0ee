"""HTTP server for the real-node tests.

GET /        -> 200 "hello from <pod name>"
GET /healthz -> 200, or 503 while /tmp/unready exists (readiness probe)
"""

import os
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = socket.gethostname()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            ready = not os.path.exists("/tmp/unready")
            self._reply(200 if ready else 503, "ok" if ready else "unready")
        else:
            self._reply(200, f"hello from {NAME}")

    def _reply(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print(f"{self.command} {self.path}", flush=True)


print(f"serving on :8080 as {NAME}", flush=True)
ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
