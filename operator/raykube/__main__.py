"""Entry point: ``python -m raykube``."""

from __future__ import annotations

from raykube.cli import run


def main() -> int:
    return run()


if __name__ == "__main__":
    raise SystemExit(main())
