"""Bytes in, JSON lines out: the records of a byte stream, each with the position of its first byte.

What makes a line a record is a function of the bytes alone, never of how they were read, so a
file read again from any line start gives the same records at the same positions (a replay after
a crash must cut exactly the same flush):

- a record is a line without its ``\\n``; a line that is empty or only ``\\r`` is no record;
- a line longer than ``max_line_bytes`` is cut to its first ``max_line_bytes`` bytes, which the
  engine turns into a dead letter (they are not a JSON document), and the rest of it is skipped;
- the last line of a finished stream counts even without a ``\\n`` (:meth:`Lines.finish`); of a
  stream that may grow it waits for its ``\\n``.
"""
from __future__ import annotations

from itertools import accumulate, repeat
from operator import add
from typing import Any

from streamkit import Batch

_BLANK = (b"", b"\r")


class Lines:
    """The line state of one stream: where the line being read starts, and its bytes so far."""

    __slots__ = ("partition", "position", "max_line", "pending", "cut", "length", "cuts")

    def __init__(self, partition: str, position: int, max_line: int) -> None:
        self.partition = partition
        #: position of the first byte of the line being read (every byte before it is handed out)
        self.position = position
        self.max_line = max_line
        #: the bytes of the line being read, while it is not longer than ``max_line``
        self.pending = b""
        #: the first ``max_line`` bytes of an over-long line whose end is still to come, and its
        #: length so far
        self.cut: bytes | None = None
        self.length = 0
        #: (position, length) of the over-long lines cut since the source last looked (it says so)
        self.cuts: list[tuple[int, int]] = []

    def feed(self, data: bytes) -> Batch | None:
        """The records ``data`` completes (None if it completes none)."""
        if not data:
            return None
        records: list[bytes] = []
        positions: list[int] = []
        if self.cut is not None:  # inside an over-long line: skip to its end
            i = data.find(b"\n")
            if i < 0:
                self.length += len(data)
                return None
            records.append(self.cut)
            positions.append(self.position)
            self.cuts.append((self.position, self.length + i))
            self.position += self.length + i + 1
            self.cut, self.length = None, 0
            data = data[i + 1:]
        start = self.position
        buf = self.pending + data if self.pending else data
        lines = buf.split(b"\n")
        rest = lines.pop()
        if lines:
            starts = list(accumulate(map(add, map(len, lines), repeat(1)), initial=start))
            self.position = starts.pop()
            if b"" in lines or b"\r" in lines:
                keep = [i for i, line in enumerate(lines) if line not in _BLANK]
                lines = [lines[i] for i in keep]
                starts = [starts[i] for i in keep]
            if lines and max(map(len, lines)) > self.max_line:
                self.cuts += [(p, len(line)) for p, line in zip(starts, lines) if len(line) > self.max_line]
                lines = [line[:self.max_line] for line in lines]
            records += lines
            positions += starts
        if len(rest) > self.max_line:
            self.cut, self.length, self.pending = rest[:self.max_line], len(rest), b""
        else:
            self.pending = rest
        if not records:
            return None
        return Batch(self.partition, records, positions[0], self.position, positions)

    def finish(self) -> Batch | None:
        """The last line of a stream that ended without a ``\\n`` (None if there is none)."""
        first = self.position
        if self.cut is not None:
            record: bytes | None = self.cut
            self.cuts.append((first, self.length))
            self.position += self.length
        else:
            record = None if self.pending in _BLANK else self.pending
            self.position += len(self.pending)
        self.pending, self.cut, self.length = b"", None, 0
        if record is None:
            return None
        return Batch(self.partition, [record], first, self.position, [first])


def report_cuts(lines: Lines, where: str, log: Any) -> None:
    """Say which over-long lines ``lines`` cut (their first bytes are dead letters, not silently lost)."""
    for position, length in lines.cuts:
        log.warning("%s: the line at byte %d of %s has %d bytes, above max_line_bytes (%d): its first %d "
                    "bytes are a dead letter, the rest is skipped", where, position, lines.partition, length,
                    lines.max_line, lines.max_line)
    lines.cuts.clear()
