"""Console progress with rate and ETA for long feature extractions (printed by rank 0 only)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from dnnlib.util import format_time


class ProgressMonitor:
    """Call update(done) as items complete; prints at most every `interval` seconds, and once at the end."""

    def __init__(self, tag: str, total: int, verbose: bool = True, interval: float = 5.0, stream: TextIO | None = None):
        self.tag = tag
        self.total = max(int(total), 1)
        self.verbose = verbose
        self.interval = interval
        self.stream = stream or sys.stdout
        self.start = time.time()
        self.last_print = self.start
        self.done = 0

    def update(self, done: int) -> None:
        self.done = min(int(done), self.total)
        now = time.time()
        finished = self.done >= self.total
        if not self.verbose or (now - self.last_print < self.interval and not finished):
            return
        self.last_print = now
        print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float | None = None) -> str:
        elapsed = (time.time() if now is None else now) - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta_text = format_time(eta) if eta == eta else "?"
        return (f"{self.tag:<19s} items {self.done:<7d}/{self.total:<7d} {100 * self.done / self.total:5.1f}% "
                f"time {format_time(elapsed):<12s} {rate:8.1f} img/s  ETA {eta_text}")
