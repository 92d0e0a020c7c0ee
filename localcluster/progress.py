"""Progress lines with elapsed time, for long builds and bring-ups."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, started: float | None = None) -> None:
        self.label = label
        self.started = time.monotonic() if started is None else started

    def step(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        minutes, seconds = divmod(int(elapsed), 60)
        print(f"[{self.label} {minutes:02d}:{seconds:02d}] {message}", file=sys.stderr, flush=True)
