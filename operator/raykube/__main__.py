"""Entry point: ``python -m raykube``."""

from __future__ import annotations


def main() -> int:
    from raykube.cli import run

    return run()


if __name__ == "__main__":
    raise SystemExit(main())
