"""``python -m raykube.rbac [--check] [--explain] [--root DIR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from raykube import rbac


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m raykube.rbac",
        description="Generate the chart's RBAC rules from the API calls in the operator's code.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if the chart's rules differ"
    )
    parser.add_argument(
        "--explain", action="store_true", help="print each verb with the code that needs it"
    )
    parser.add_argument(
        "--root", type=Path, default=Path.cwd(), help="repository root (default: current dir)"
    )
    args = parser.parse_args(argv)
    try:
        if args.explain:
            sys.stdout.write(rbac.explain())
            return 0
        if args.check:
            if rbac.stale(args.root):
                print(
                    f"stale: {args.root / rbac.OUTPUT} (run `python -m raykube.rbac`)",
                    file=sys.stderr,
                )
                return 1
            return 0
    except rbac.Unresolved as err:
        print(f"cannot derive the RBAC rules: {err}", file=sys.stderr)
        return 2
    changed = rbac.write(args.root)
    print(f"{'wrote' if changed else 'unchanged'}: {args.root / rbac.OUTPUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
