"""Liveness/readiness checks for Ray pods, without wget or curl.

KubeRay probes Ray >= 2.53 with `httpGet /api/healthz` on the dashboard
agent; older Ray lacks that endpoint, so the pod runs an exec probe instead:
the raylet check on the agent port (52365) everywhere and, on the head, the
GCS check on the dashboard port (8265). Images need not ship wget: this
module only uses the standard library, and `inline_command()` renders the
same check as a `python -c` command for Ray images that lack this package.

    python -m raykube_serve.health --head          # head pod
    python -m raykube_serve.health                 # worker pod
    python -m raykube_serve.health --serve         # + Serve proxy (:8000/-/healthz)
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Sequence

AGENT_PORT = 52365
DASHBOARD_PORT = 8265
SERVE_PORT = 8000
# Kubernetes' default probe timeout is 1 s and Ray's own `ray health-check`
# takes ~41 s to fail; each URL gets this long.
DEFAULT_TIMEOUT_S = 2.0


def probe_urls(
    host: str = "127.0.0.1",
    head: bool = False,
    serve: bool = False,
    agent_port: int = AGENT_PORT,
    dashboard_port: int = DASHBOARD_PORT,
    serve_port: int = SERVE_PORT,
) -> list[str]:
    urls = [f"http://{host}:{agent_port}/api/local_raylet_healthz"]
    if head:
        urls.append(f"http://{host}:{dashboard_port}/api/gcs_healthz")
    if serve:
        urls.append(f"http://{host}:{serve_port}/-/healthz")
    return urls


def check(urls: Sequence[str], timeout: float) -> int:
    """0 when every URL answers 200, else 1 with the failure on stderr.

    Self-contained on purpose (imports inside, stdlib only): `inline_command`
    ships this function's source to images that lack this package.
    """
    import sys
    import urllib.request

    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                if response.status != 200:
                    print(f"{url}: HTTP {response.status}", file=sys.stderr)
                    return 1
        except Exception as exc:  # any failure means unhealthy
            print(f"{url}: {exc}", file=sys.stderr)
            return 1
    return 0


def inline_command(
    urls: Sequence[str], timeout: float = DEFAULT_TIMEOUT_S, python: str = "python"
) -> list[str]:
    """An exec-probe command running `check` with nothing but Python's stdlib."""
    source = inspect.getsource(check)
    program = (
        "from __future__ import annotations\n"  # leaves check()'s type hints unevaluated
        f"{source}\nimport sys\nsys.exit(check(sys.argv[2:], float(sys.argv[1])))\n"
    )
    return [python, "-c", program, str(timeout), *urls]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--head", action="store_true", help="also check the GCS (head pods)")
    parser.add_argument("--serve", action="store_true", help="also check the Serve proxy")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--agent-port", type=int, default=AGENT_PORT)
    parser.add_argument("--dashboard-port", type=int, default=DASHBOARD_PORT)
    parser.add_argument("--serve-port", type=int, default=SERVE_PORT)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S)
    args = parser.parse_args(argv)
    urls = probe_urls(
        args.host, args.head, args.serve, args.agent_port, args.dashboard_port, args.serve_port
    )
    return check(urls, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
