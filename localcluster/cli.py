"""Command line for people: build, up, down, status."""

from __future__ import annotations

import argparse

from localcluster import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build", help="build the pinned Kubernetes binaries (cached)")
    args = parser.parse_args(argv)
    if args.cmd == "build":
        print(build.build_all())
    return 0
