"""One status line on a terminal while a pipeline runs; nothing when stderr is not a terminal."""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

_lock = threading.Lock()
_active: "Progress | None" = None


def echo(text: str, file: TextIO | None = None) -> None:
    """Print a line above the status line (sinks that print use this)."""
    out = file or sys.stdout
    with _lock:
        p = _active
        if p is not None and p.shown:
            p.stream.write("\r\x1b[K")
            p.stream.flush()
        out.write(text if text.endswith("\n") else text + "\n")
        out.flush()
        if p is not None and p.shown and p.last_line:
            p.stream.write(p.last_line)
            p.stream.flush()


class Progress:
    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None, every: float = 0.5) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.every = every
        self.started = time.monotonic()
        self._last = 0.0
        self._last_count = 0
        self._last_t = self.started
        self.rate = 0.0
        self.shown = False
        self.last_line = ""

    def __enter__(self) -> "Progress":
        global _active
        _active = self
        return self

    def __exit__(self, *exc) -> None:
        global _active
        self.clear()
        _active = None

    def update(self, records: int, dead: int, flushes: int, extra: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.every:
            return
        dt = now - self._last_t
        if dt > 0:
            self.rate = (records - self._last_count) / dt
        self._last, self._last_t, self._last_count = now, now, records
        line = (f"\r\x1b[K{records:,} records | {self.rate:,.0f} rec/s | {flushes:,} flushes | "
                f"{dead:,} dead letters | {now - self.started:,.0f}s{extra}")
        with _lock:
            self.stream.write(line)
            self.stream.flush()
            self.shown = True
            self.last_line = line

    def clear(self) -> None:
        if self.enabled and self.shown:
            with _lock:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self.shown = False
