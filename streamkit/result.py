"""The counters of a run, as :meth:`streamkit.Pipeline.run` returns them."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RunResult:
    """The counters of a run; ``str()`` is the summary line the CLI prints."""

    records_read: int = 0
    records_aggregated: int = 0
    dead_letters: int = 0
    flushes: int = 0
    elapsed: float = 0.0
    stopped_by: str = ""
    positions: dict = field(default_factory=dict)
    #: partition -> (position reached, end) of an interrupted flush left unreplayed at the stop
    unfinished: dict = field(default_factory=dict)
    #: aggregation -> records too late for every one of their windows (counted, not merged)
    late: dict = field(default_factory=dict)

    @property
    def stuck(self) -> bool:
        """The source ended before an interrupted flush could be replayed to its end: nothing
        of that partition can progress until the source reaches that end again."""
        return self.stopped_by == "source_finished" and bool(self.unfinished)

    @property
    def records_per_second(self) -> float:
        return self.records_read / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict:
        return {"records_read": self.records_read, "records_aggregated": self.records_aggregated,
                "dead_letters": self.dead_letters, "flushes": self.flushes,
                "elapsed": round(self.elapsed, 3), "records_per_second": round(self.records_per_second, 1),
                "stopped_by": self.stopped_by, "late": dict(self.late),
                "unfinished": {p: {"reached": r, "end": e} for p, (r, e) in self.unfinished.items()}}

    def __str__(self) -> str:
        late = f"{sum(self.late.values()):,} late, " if self.late else ""
        return (f"{self.records_read:,} records read, {self.records_aggregated:,} aggregated, "
                f"{late}{self.dead_letters:,} dead letters, {self.flushes:,} flushes in {self.elapsed:.2f}s "
                f"({self.records_per_second:,.0f} records/s)")
