"""The ``stdin`` source: JSON lines from standard input, at least once.

A pipe cannot be read again: nothing a process read can be given to it twice, so there is no
resume and no replay. What a run reads is flushed before it stops (end of input, SIGTERM,
Ctrl-C), and a write that fails is retried, so every record read reaches the sinks at least
once; a process that is killed loses what it read since its last flush.

Positions are byte offsets from a start point taken from the clock (milliseconds since 1970
times 2**20), above every position an earlier run stored: a sink that keeps positions (the
mongodb sink) never takes a new run's records for ones it already merged, and its intents and
fences still keep a retried write from counting twice. Reading 2**20 bytes (a MiB) per
millisecond (a GB/s) would be needed for one run's positions to reach the next run's start.
"""
from __future__ import annotations

import logging
import os
import select
import sys
import time
from typing import Any

from streamkit import Batch, Option, Source

from .lines import Lines, report_cuts

log = logging.getLogger("streamkit.stdin")

PARTITION = "stdin"


def clock_start() -> int:
    """The first position of a run that starts now."""
    return time.time_ns() // 1_000_000 << 20


class StdinSource(Source):
    """JSON lines from standard input; ends at end of input (at least once: a pipe has no replay)."""

    options = {
        "read_size": Option(int, 1 << 20, "bytes read at a time at most", min=1, max=1 << 30),
        "max_line_bytes": Option(int, 16 << 20, "a longer line is cut to this many bytes: a dead letter",
                                 min=1, max=1 << 30),
    }

    def __init__(self, config: dict, context: Any) -> None:
        super().__init__(config, context)
        self.fd = -1
        self.lines: Lines | None = None
        self.done = False

    def open(self, hooks: Any) -> None:
        self.fd = sys.stdin.fileno()
        stored = (hooks.assigned([PARTITION]) or {}).get(PARTITION, 0)
        self.lines = Lines(PARTITION, max(stored, clock_start()), self.config["max_line_bytes"])

    def poll(self, timeout: float) -> list[Batch] | None:
        assert self.lines is not None
        if self.done:
            return None
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return []
        data = os.read(self.fd, self.config["read_size"])
        if not data:
            self.done = True
            last = self.lines.finish()
            report_cuts(self.lines, self.context.name, log)
            return [last] if last is not None else None
        batch = self.lines.feed(data)
        if self.lines.cuts:
            report_cuts(self.lines, self.context.name, log)
        return [batch] if batch is not None else []
