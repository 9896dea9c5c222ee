"""A small progress bar for long loops (no dependency): redraws in place on a terminal, and
prints a line every 10% otherwise (logs, CI)."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str = "", enabled: bool = True, stream=None):
        self.total, self.desc, self.enabled = max(int(total), 1), desc, enabled
        self.stream = stream or sys.stderr
        self.count, self.start = 0, time.perf_counter()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_decile = -1

    def update(self, n: int = 1, note: str = "") -> None:
        self.count = min(self.count + n, self.total)
        if not self.enabled:
            return
        frac = self.count / self.total
        elapsed = time.perf_counter() - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        text = (f"{self.desc} [{'#' * int(30 * frac):<30}] {self.count}/{self.total} "
                f"{elapsed:6.1f}s eta {eta:5.1f}s {note}")
        if self._tty:
            self.stream.write("\r" + text)
            if self.count == self.total:
                self.stream.write("\n")
        elif int(10 * frac) > self._last_decile:
            self._last_decile = int(10 * frac)
            self.stream.write(text + "\n")
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.enabled and self._tty and self.count < self.total:
            self.stream.write("\n")
