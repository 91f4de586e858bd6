"""Exactly-once bookkeeping of the run loop: where each partition resumes, and the replay of
an interrupted flush.

A sink that keeps positions with its data (:attr:`streamkit.Sink.exactly_once`) may find a
flush that was started but not finished: its :meth:`~streamkit.Sink.positions` then gives a
:class:`~streamkit.Resume` with a ``replay_end``. That partition is read again from
``position`` and held back until it reaches ``replay_end``, so that the replay is written
whole, with the same boundaries, or not at all. Written in pieces, its first piece would
replace the stored intent and the end of the interrupted flush would be forgotten, so a
crash after that piece could merge records twice.

:class:`Replays` is that state machine; the engine asks it what to do and does it.
"""
from __future__ import annotations

import bisect
from typing import Iterable, Mapping

from .components import Batch, Resume

__all__ = ["Replays", "head", "tail"]


class Replays:
    """Per partition: the end of the interrupted flush it replays, and where the replay started."""

    def __init__(self) -> None:
        #: partition -> position its replay must end at (the end of the interrupted flush)
        self.ends: dict[str, int] = {}
        #: partition -> position its replay started at
        self.starts: dict[str, int] = {}

    def assigned(self, partitions: list[str], stored: Iterable[Mapping[str, Resume]]) -> dict[str, int]:
        """Partitions now owned, with what each sink stored for them: the position to resume
        from (the lowest wins), and the replays to hold back (the nearest end wins)."""
        for p in partitions:
            self.ends.pop(p, None)
            self.starts.pop(p, None)
        resume: dict[str, int] = {}
        for positions in stored:
            for p, r in positions.items():
                if r.replay_end is not None:
                    self.ends[p] = min(r.replay_end, self.ends.get(p, r.replay_end))
                    self.starts[p] = min(r.position, self.starts.get(p, r.position))
                resume[p] = min(r.position, resume.get(p, r.position))
        return resume

    def lost(self, partitions: list[str]) -> None:
        """Partitions gone without a revocation: their replay is the new owner's."""
        for p in partitions:
            self.ends.pop(p, None)

    def revoking(self, partitions: list[str]) -> list[str]:
        """Partitions about to move: an unfinished replay is left to the next owner, which
        replays it whole. Returns those partitions, whose buffered records must be dropped."""
        return [p for p in partitions if self.ends.pop(p, None) is not None]

    def replaying(self, partition: str) -> bool:
        return partition in self.ends

    def completes(self, batch: Batch) -> int | None:
        """If ``batch`` reaches the end of its partition's replay: how many of its records
        complete the replay (the rest belong to later flushes), and the replay is over.
        Otherwise None."""
        end = self.ends.get(batch.partition)
        if end is None or batch.next < end:
            return None
        del self.ends[batch.partition]
        if batch.positions is not None:
            return bisect.bisect_left(batch.positions, end)
        return max(0, min(len(batch.records), end - batch.first))

    def held(self, partitions: Iterable[str]) -> set[str]:
        """The partitions a flush holds back: those in the middle of a replay."""
        return {p for p in partitions if p in self.ends}

    def unfinished(self, reached: Mapping[str, int]) -> dict[str, tuple[int, int]]:
        """Partition -> (position reached, end) of every replay not finished; ``reached`` gives
        where each buffered partition got to (a partition read no further is at its start)."""
        return {p: (reached.get(p, self.starts.get(p, end)), end) for p, end in sorted(self.ends.items())}


def head(batch: Batch, n: int) -> Batch:
    """The first ``n`` records of ``batch``. Where positions are listed, the head ends where the
    next record starts (a line's byte offset: the position after a record is not its own plus one)."""
    if batch.positions is None:
        return Batch(batch.partition, batch.records[:n], batch.first, batch.first + n, None, batch.decoded)
    following = batch.positions[n] if n < len(batch.positions) else batch.next
    return Batch(batch.partition, batch.records[:n], batch.first, following, batch.positions[:n], batch.decoded)


def tail(batch: Batch, n: int) -> Batch:
    """``batch`` without its first ``n`` records."""
    positions = batch.positions[n:] if batch.positions is not None else None
    first = positions[0] if positions else batch.first + n
    return Batch(batch.partition, batch.records[n:], first, batch.next, positions, batch.decoded)
