"""``python -m raykube.crdgen [--check] [--root DIR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from raykube.crdgen import stale, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m raykube.crdgen",
        description="Generate the ray.io CRDs from raykube.models.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if any generated file is missing or differs",
    )
    parser.add_argument(
        "--root", type=Path, default=Path.cwd(), help="repository root (default: current dir)"
    )
    args = parser.parse_args(argv)
    if args.check:
        outdated = stale(args.root)
        for path in outdated:
            print(f"stale: {path} (run `python -m raykube.crdgen`)", file=sys.stderr)
        return 1 if outdated else 0
    for path in write(args.root):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
