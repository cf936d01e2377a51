"""A dependency-free text progress bar for stderr: count, rate and ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from .util import format_time


class ProgressBar:
    """`ProgressBar(total, label).update(n)` ... `.close()`; redraws in place on a terminal, else prints lines.

    On a non-terminal stream (a log file, CI) a line is printed at most every `log_interval` seconds so logs
    stay short; the final count is always printed by `close()`.
    """

    def __init__(self, total: int | None, label: str = "images", stream: TextIO | None = None,
                 min_interval: float = 0.2, log_interval: float = 10.0, enabled: bool = True):
        self.total = total
        self.enabled = enabled
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.count = 0
        self._start = time.monotonic()
        self._last_draw = float("-inf")
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._interval = min_interval if self._interactive else log_interval

    def update(self, n: int = 1) -> None:
        self.count += n
        if self.total is not None and self.count >= self.total:
            self.close()  # the last line once (an update drawing it, then close again, printed it twice)
            return
        now = time.monotonic()
        if now - self._last_draw >= self._interval:
            self._last_draw = now
            self._draw(final=False)

    def set(self, count: int) -> None:
        """Absolute progress; the line for the last item is always printed."""
        self.update(count - self.count)

    def close(self) -> None:
        if self._last_draw == float("inf"):
            return
        self._last_draw = float("inf")
        self._draw(final=True)

    def text(self) -> str:
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.count / elapsed
        if self.total:
            remaining = max(self.total - self.count, 0)
            eta = format_time(remaining / rate) if rate > 0 else "?"
            pct = 100.0 * self.count / self.total
            return f"{self.count}/{self.total} {self.label} ({pct:5.1f}%)  {rate:.1f}/s  ETA {eta}"
        return f"{self.count} {self.label}  {rate:.1f}/s  elapsed {format_time(elapsed)}"

    def _draw(self, final: bool) -> None:
        if not self.enabled:
            return
        if self._interactive:
            self.stream.write("\r" + self.text() + ("\n" if final else ""))
        else:
            self.stream.write(self.text() + "\n")
        self.stream.flush()
