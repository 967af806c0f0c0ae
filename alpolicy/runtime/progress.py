"""Progress on long runs: a live bar on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Call :meth:`update` as often as you like; it redraws at most ``hz`` times a second."""

    def __init__(self, total: int | None, *, stream: TextIO | None = None, enabled: bool | None = None,
                 interval: float = 5.0, hz: float = 8.0) -> None:
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = self.tty if enabled is None else enabled
        self.total = total
        self.started = time.monotonic()
        self.min_gap = 1.0 / hz if self.tty else interval
        self._last = 0.0
        self._drawn = False

    def update(self, done: int, detail: str = "", *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self.min_gap:
            return
        self._last = now
        line = self._line(done, detail, now)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _line(self, done: int, detail: str, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = done / elapsed
        if self.total:
            fraction = min(done / self.total, 1.0)
            width = 24
            filled = int(width * fraction)
            bar = "█" * filled + "░" * (width - filled)
            remaining = (self.total - done) / rate if rate > 0 else 0
            eta = f" eta {_duration(remaining)}" if done < self.total and rate > 0 else ""
            head = f"{bar} {done}/{self.total} {fraction:4.0%}"
        else:
            head, eta = f"{done} images", ""
        return f"{head} | {rate:.1f} img/s{eta} | {detail}".rstrip(" |")

    def close(self) -> None:
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
