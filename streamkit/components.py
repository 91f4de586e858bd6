"""The base classes a plugin type derives from, and the objects passed between them.

A *source* yields :class:`Batch` es, the engine turns them into per-partition
deltas (one :class:`Flush` per flush interval), every *sink* writes the flush,
and only then are the source positions acknowledged.
"""
from __future__ import annotations

from base64 import b64encode as _b64encode
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Mapping, Protocol

from .merging import Expr
from .options import OneOf, Option
from .windows import iso_time

if TYPE_CHECKING:
    from .pipeline import Pipeline

__all__ = [
    "Batch", "DeadLetter", "Flush", "PartitionDelta", "Delta", "Resume", "WindowResult",
    "Source", "SourceHooks", "Sink", "Aggregator", "DeadLetterDestination", "PluginType", "Context",
]


@dataclass
class Batch:
    """Records of one source partition, in position order.

    ``records`` are raw (``bytes``/``str`` JSON) unless ``decoded`` is true, in which
    case they are dicts already. ``first`` is the position of the first record and
    ``next`` the position to resume from after the last one. ``positions`` is given
    only when positions are not contiguous (Kafka offsets after compaction, the byte offsets of
    lines in a file): then the position after a record is the next record's (or ``next``).
    """

    partition: str
    records: list
    first: int
    next: int
    positions: list[int] | None = None
    decoded: bool = False

    def position(self, index: int) -> int:
        return self.positions[index] if self.positions is not None else self.first + index


@dataclass(frozen=True)
class Resume:
    """Where a partition resumes, as a sink that keeps positions stored it.

    ``position`` is the first position not yet merged. ``replay_end`` is set when a flush of
    that partition was started but not finished (a crash between its intent and its
    positions): the records from ``position`` to ``replay_end`` are then read again and
    written as one flush with exactly those boundaries, before anything after them.
    """

    position: int
    replay_end: int | None = None
    #: the partition's event-time clock as stored with ``position`` (:mod:`streamkit.watermarks`)
    clock: dict | None = None


@dataclass
class DeadLetter:
    """A record the pipeline could not use, with the reason and where it came from."""

    partition: str
    position: int
    reason: str
    record: Any

    def to_json(self) -> dict:
        """JSON-ready form. Bytes that are not UTF-8 are shown with replacement characters under
        ``record`` and kept exactly under ``record_base64``."""
        rec = self.record
        raw = None
        if isinstance(rec, (bytes, bytearray, memoryview)):
            try:
                rec = bytes(rec).decode("utf-8")
            except UnicodeDecodeError:
                raw = _b64encode(bytes(rec)).decode("ascii")
                rec = bytes(rec).decode("utf-8", "replace")
        out = {"partition": self.partition, "position": self.position, "reason": self.reason, "record": rec}
        if raw is not None:
            out["record_base64"] = raw
        return out


@dataclass
class Delta:
    """What one flush adds to one document: aggregation, group key and window."""

    aggregation: str
    key: dict
    window_start: float | None
    window_end: float | None
    partial: Any
    aggregator: "Aggregator"

    @property
    def values(self) -> dict:
        """The document fields this delta alone would give (``{"count": 3}``)."""
        return self.aggregator.result(self.partial)

    def window_json(self) -> dict:
        return {"start": iso_time(self.window_start), "end": iso_time(self.window_end)}


@dataclass(frozen=True)
class WindowResult:
    """A closed window's final values, as a sink that keeps windows stored them."""

    aggregation: str
    key: dict
    window_start: float
    window_end: float
    values: dict
    #: stable across processes and replays: the same window always has the same id
    id: str

    def window_json(self) -> dict:
        return {"start": iso_time(self.window_start), "end": iso_time(self.window_end)}

    def to_json(self) -> dict:
        """``{id, aggregation, key, window, final: true, <values>}``, JSON-ready."""
        return {"id": self.id, "aggregation": self.aggregation, "key": self.key, "window": self.window_json(),
                "final": True, **self.values}


#: the option of the sinks that can emit closed windows instead of every flush's deltas
EMIT_OPTION = Option(OneOf("updates", "final"), "updates",
                     "updates: every flush's deltas; final: one record per closed window, with its final values")


@dataclass
class PartitionDelta:
    """The deltas one source partition contributed to a flush, and its position range.

    ``tables`` maps aggregation name to ``{table_key: partial}``; use
    :meth:`Flush.deltas` rather than reading tables directly.
    """

    partition: str
    first: int
    next: int
    records: int = 0
    tables: dict[str, dict] = field(default_factory=dict)


@dataclass
class Flush:
    """Everything produced since the previous flush. Sinks must make it durable in ``write``."""

    seq: int
    parts: dict[str, PartitionDelta]
    aggregations: list  # list[AggregationSpec], in configuration order
    records: list | None = None        # raw decoded records, for sinks with ``wants_records``
    dead_letters: list[DeadLetter] = field(default_factory=list)
    created_at: float = 0.0
    #: partition -> its event-time clock after this flush (JSON-ready), for every partition whose
    #: clock changed, also one with no records in ``parts`` (an idle partition's frontier raised):
    #: a sink that keeps positions stores each with the partition's position
    clocks: dict[str, dict] = field(default_factory=dict)
    #: every partition of this process -> its clock as durable once this flush is (or None)
    view: dict[str, dict | None] = field(default_factory=dict)

    @property
    def positions(self) -> dict[str, int]:
        """Partition -> position to resume from once this flush is durable."""
        return {p: part.next for p, part in self.parts.items()}

    @property
    def record_count(self) -> int:
        return sum(p.records for p in self.parts.values())

    def partition_deltas(self, partition: str) -> Iterator[Delta]:
        """The deltas of one partition (what an exactly-once sink fences per partition)."""
        part = self.parts[partition]
        for agg in self.aggregations:
            table = part.tables.get(agg.name)
            if table:
                yield from agg.deltas(table.items())

    def deltas(self) -> Iterator[Delta]:
        """Every delta of the flush, partitions merged: one per (aggregation, key, window)."""
        for agg in self.aggregations:
            tables = [p.tables[agg.name] for p in self.parts.values() if p.tables.get(agg.name)]
            if not tables:
                continue
            if len(tables) == 1:
                merged = tables[0]
            else:
                merged = dict(tables[0])
                merge = agg.aggregator.merge
                for table in tables[1:]:
                    for k, v in table.items():
                        merged[k] = merge(merged[k], v) if k in merged else v
            yield from agg.deltas(merged.items())


class Context:
    """What the running pipeline offers a plugin instance."""

    def __init__(self, pipeline: Pipeline | None, name: str) -> None:
        #: the running pipeline (None for an instance made outside one, e.g. in a test)
        self.pipeline = pipeline
        self.name = name  # e.g. "sinks[0]" — use it in messages

    @property
    def stopping(self) -> bool:
        return self.pipeline is not None and self.pipeline.stopping

    @property
    def delivery(self) -> str:
        """The pipeline's ``delivery:`` (``exactly_once`` when there is no pipeline)."""
        return self.pipeline.delivery if self.pipeline is not None else "exactly_once"

    @property
    def file(self) -> str | None:
        """The pipeline file, for messages (None when there is no pipeline)."""
        return self.pipeline.file if self.pipeline is not None else None

    @property
    def worker(self) -> tuple[int, int]:
        """``(index, count)``: this process is worker ``index`` of ``count`` started by
        ``streamkit run --workers count``; ``(0, 1)`` in a process of its own. A
        :attr:`Source.splittable` source that divides its input itself reads its share from it."""
        return self.pipeline.worker if self.pipeline is not None else (0, 1)


class PluginType:
    """The base of every type a plugin registers under a name (sources, sinks, dead-letter
    destinations, and kinds that plugins define): an option schema, a description, and an
    instance made per pipeline with its validated options and a :class:`Context`."""

    #: option schema, checked before the pipeline starts
    options: ClassVar[Mapping[str, Option]] = {}
    #: one line shown by ``streamkit plugins``
    description: ClassVar[str] = ""

    def __init__(self, config: dict, context: Context) -> None:
        self.config = config
        self.context = context


class SourceHooks(Protocol):
    """Given to :meth:`Source.open`: how a source talks back to the engine."""

    def assigned(self, partitions: list[str]) -> dict[str, int]:
        """Partitions now owned; returns stored positions to resume from (may be empty)."""

    def revoking(self, partitions: list[str]) -> None:
        """Partitions about to be lost: the engine flushes and commits them first."""

    def lost(self, partitions: list[str]) -> None:
        """Partitions already gone (the member was dropped): the engine forgets their unflushed records."""


class Source(PluginType):
    """Yields batches. Positions are acknowledged through :meth:`commit` after sinks flushed."""

    #: can ``streamkit run --workers N`` run N processes of this source at once, each reading a
    #: share of its partitions? True for a source whose processes share the partitions among
    #: themselves (members of one Kafka consumer group) or that reads only its share of them
    #: (:attr:`Context.worker`). False (the default) makes ``--workers`` above 1 refuse to start.
    splittable: ClassVar[bool] = False

    def open(self, hooks: SourceHooks) -> None:
        """Connect and take partitions (call ``hooks.assigned`` for each assignment)."""

    def poll(self, timeout: float) -> list[Batch] | None:
        """Batches available within ``timeout`` seconds; ``[]`` if none yet, ``None`` when finished."""
        raise NotImplementedError

    def commit(self, positions: dict[str, int]) -> None:
        """Every record before these positions is durable in every sink."""

    def lag(self) -> dict[str, int] | None:
        """Records not yet read, per partition, where the source can tell."""
        return None

    def reset(self, *, dry_run: bool = False) -> dict[str, int]:
        """Forget the progress this source keeps outside the sinks (a Kafka consumer group's
        committed offsets), so that the pipeline's next run starts from the beginning; return
        what was removed (or, with ``dry_run``, would be) as ``{"what": count}``. Called by
        ``streamkit reset`` on an instance that was not opened; ``close`` follows. Raise a
        :class:`StreamkitError` to refuse (e.g. the pipeline is still running)."""
        return {}

    def close(self) -> None:
        """Release connections. Called once, also after errors."""


class Sink(PluginType):
    """Receives every flush. ``write`` returns only when the flush is durable."""

    #: true if the sink wants the decoded records in ``flush.records``
    wants_records: ClassVar[bool] = False
    #: true if the sink honours ``delivery: exactly_once``: it stores the positions with its data
    #: (``positions``) and merges a replayed flush only once. Without one such sink a pipeline
    #: warns at start-up that its output is at least once.
    exactly_once: ClassVar[bool] = False

    @classmethod
    def takes_records(cls, options: dict) -> bool:
        """Does a sink with these options want ``flush.records``? (default: ``wants_records``)"""
        return cls.wants_records

    def open(self) -> None:
        pass

    def positions(self, partitions: list[str]) -> dict[str, Resume]:
        """Where each of ``partitions`` resumes, as this sink stored it (for exactly-once
        resume): a :class:`Resume` per partition it knows; ``{}`` if it keeps none. Called
        when the source is assigned partitions; a sink that fences writers takes ownership
        of them here."""
        return {}

    def keep_definition(self, definition: dict) -> dict | None:
        """Store ``definition`` (what the pipeline's aggregations mean: a JSON-ready dict with a
        ``fingerprint``) with this pipeline's positions, and return the one stored before, or None
        if none is (or the sink keeps no positions). Called after ``open`` and before any
        ``positions``, with ``delivery: exactly_once``; the engine stops the pipeline with one line
        saying what changed if the stored definition differs. Raise a :class:`StreamkitError` if
        what is stored cannot be used by this pipeline at all."""
        return None

    def reset(self, *, dry_run: bool = False, force: bool = False) -> dict[str, int]:
        """Remove this pipeline's positions, intents and documents, so that its next run starts
        over; return what was removed (or, with ``dry_run``, would be) as ``{"what": count}``.
        Called by ``streamkit reset`` instead of ``open``; ``close`` follows. Raise a
        :class:`StreamkitError` to refuse, e.g. when documents also hold another pipeline's
        counts and ``force`` is false."""
        return {}

    def write(self, flush: Flush) -> None:
        raise NotImplementedError

    # -- windows that close (see streamkit.watermarks) ---------------------------------------
    #: true if the sink keeps every window's merged values and can mark closed ones final
    #: (``close_windows``) and give their final values (``final_windows``)
    stores_windows: ClassVar[bool] = False

    @classmethod
    def emits_final(cls, options: dict) -> bool:
        """Does a sink with these options take closed windows (``write_final``) instead of the
        deltas of every flush? (default: no)"""
        return False

    def clocks(self) -> dict[str, dict]:
        """The event-time clock stored with the position of every partition of this pipeline,
        whichever process wrote it (``{}`` if this sink keeps no positions). Called by the
        writer after each flush; a partition claimed but never written has ``None``."""
        return {}

    def close_windows(self, closing: Mapping[str, float]) -> None:
        """Aggregation name -> a time: every window of that aggregation ending at or before it is
        closed; mark it final (no record will change it any more). Called after each flush is
        durable, with times that never go back; must be idempotent (a replay calls it again)."""

    def drop_windows(self, before: Mapping[str, float]) -> None:
        """Aggregation name -> a time: drop the closed windows of that aggregation ending at or
        before it (they are past its ``retention``; every sink that emits closed windows has
        written them). Called after ``close_windows``."""

    def final_windows(self, aggregation: str, after: float, until: float) -> list[WindowResult]:
        """The closed windows of ``aggregation`` whose end is in ``(after, until]``, with their
        final values, oldest end first."""
        return []

    def emitted(self, sink: str) -> dict[str, float]:
        """Aggregation -> the window end up to which sink ``sink`` (``"sinks[2]"``) wrote closed
        windows, as stored by :meth:`keep_emitted`."""
        return {}

    def keep_emitted(self, sink: str, upto: Mapping[str, float]) -> None:
        """Store how far sink ``sink`` wrote closed windows (after it made them durable)."""

    def write_final(self, windows: list[WindowResult]) -> None:
        """Write closed windows with their final values (sinks whose ``emits_final`` is true);
        returns when they are durable. A window may come again after a crash: its ``id`` is
        the same, for a reader to drop the repeat."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class DeadLetterDestination(PluginType):
    """Receives records that could not be used, before their positions are acknowledged."""

    def open(self) -> None:
        pass

    def write(self, letters: list[DeadLetter]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


_MISSING = object()


class Aggregator:
    """A mergeable partial: ``create`` / ``add`` / ``merge`` in memory, and a store-neutral
    declaration of how its stored fields merge (``merges``) and how result fields derive from
    them (``derived``; see :mod:`streamkit.merging`). Every store translates that declaration.

    Partials must be commutative and associative under ``merge``, which is what
    lets several processes and several flushes feed the same document.
    """

    options: ClassVar[Mapping[str, Option]] = {}
    description: ClassVar[str] = ""
    #: does it read a value (``field:``)? must that value be a number? or a value that could be
    #: grouped by (``keyed``: a string of at most ``max_key_bytes``, an integer, a finite float or a
    #: boolean, handed to ``add_batch`` as a table key that keeps its JSON type, see ``tag_key``)?
    needs_field: ClassVar[bool] = True
    numeric: ClassVar[bool] = True
    keyed: ClassVar[bool] = False
    #: the document fields it owns (stored and derived), in the order readers show them
    fields: ClassVar[tuple[str, ...]] = ()
    #: stored field -> merge kind (see ``streamkit.merging``: ``add``, ``min``, ``max``, ``max_by_key``,
    #: ``add_aligned``, ``count_by_key``): how a flush's value of the field
    #: merges into the stored one
    merges: ClassVar[Mapping[str, str]] = {}
    #: result field -> formula over merged fields, recomputed after every merge (a property
    #: where the formula depends on the options)
    derived: Mapping[str, Expr] = {}
    #: stored field -> the bound (``Span``, ``Frequent``) that keeps its merged value within a size
    #: set by the options, applied after every merge
    bounds: Mapping[str, Any] = {}
    #: presentation hint: the result field that stands for the aggregation (what readers sort,
    #: chart and summarise by, and an alert rule's default field); empty: the first of ``fields``
    primary: ClassVar[str] = ""

    def __init__(self, config: dict | None = None) -> None:
        self.config = config or {}

    def create(self) -> Any:
        raise NotImplementedError

    def add(self, partial: Any, value: Any) -> Any:
        raise NotImplementedError

    def merge(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def add_batch(self, table: dict, keys: list, values: list | None) -> None:
        """Add a batch. Override with a faster loop; the default calls ``add`` per record."""
        create, add, get = self.create, self.add, table.get
        if values is None:
            values = [None] * len(keys)
        for k, v in zip(keys, values):
            p = get(k, _MISSING)
            table[k] = add(create() if p is _MISSING else p, v)

    def new_table(self) -> dict:
        return {}

    def result(self, partial: Any) -> dict:
        """The document fields for a partial, e.g. ``{"sum": 5, "count": 2, "avg": 2.5}``."""
        raise NotImplementedError

    def stored(self, partial: Any) -> dict:
        """The values of the ``merges`` fields for a partial: what a store merges in.
        The default takes them from :meth:`result`."""
        merges = self.merges
        return {f: v for f, v in self.result(partial).items() if f in merges}

