"""Each exactly-once guard, defended by a test that fails when the guard is removed.

- the owner epoch on the intent write: a process whose partition moved on cannot start a flush;
- the owner epoch on finishing intents: it cannot move the new owner's position either;
- ``Engine.revoking`` flushes and commits before partitions move to another process;
- positions are committed to the source only after every sink made the flush durable.

The MongoDB cases run once per store (tests/stores.py): mongomock with and without the sink's
fast path, and the real server.
"""
from __future__ import annotations

import random
import threading
import types

import pytest

import listsource
import streamkit_mongodb
from streamkit import Option, Pipeline, Sink, StreamkitError, hookimpl
from streamkit.plugins import get_plugin_manager
from stores import store  # noqa: F401
from truth import as_pipeline, diff, stored, truth

AGGREGATIONS = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "duration_per_type", "type": "sum", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "shortest", "type": "min", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "longest", "type": "max", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "per_type_1s", "type": "count", "group_by": ["interaction_type"], "window": 1},
    {"name": "duration_5s_every_2s", "type": "avg", "field": "duration_ms", "group_by": ["interaction_type"],
     "window": (5, 2)},
]


def _events(n: int, rng: random.Random) -> list[dict]:
    """Interaction events 10 ms apart with whole-number durations (sums exact in any order)."""
    return [{"user_id": f"u{rng.randrange(12)}", "item_id": f"i{rng.randrange(5)}",
             "interaction_type": rng.choice(["view", "click", "like"]), "timestamp": 1_767_225_600 + i / 100,
             "duration_ms": rng.randint(1, 5000)} for i in range(n)]


EVENTS = _events(300, random.Random(11))


class ListSource(listsource.ListSource):
    """The shared list source, handing over decoded records unless told otherwise."""

    options = {**listsource.ListSource.options, "decoded": Option(bool, True)}


class ScriptedSource(ListSource):
    """ListSource that calls ``ScriptedSource.script(source, poll_number)`` before each poll."""

    script = None

    def open(self, hooks):
        self.hooks = hooks
        self.polls = 0
        super().open(hooks)

    def poll(self, timeout):
        self.polls += 1
        if type(self).script is not None:
            type(self).script(self, self.polls)
        return super().poll(timeout)


class FailingSink(Sink):
    """Writes its first flush, then fails."""

    def open(self):
        self.writes = 0

    def write(self, flush):
        self.writes += 1
        if self.writes > 1:
            raise StreamkitError("the store is gone")


class SlowSink(Sink):
    """Takes its time over every write and remembers, per partition, how far its returned writes
    reached; the source checks every commit against that."""

    durable: dict = {}
    writing = threading.Event()

    def open(self):
        type(self).durable = {}

    def write(self, flush):
        SlowSink.writing.set()
        try:
            CommitCheckingSource.committing.wait(0.2)  # a commit while this write runs ends the wait
        finally:
            SlowSink.writing.clear()
        for p, part in flush.parts.items():
            type(self).durable[p] = part.next


class CommitCheckingSource(ListSource):
    committing = threading.Event()
    early: list = []

    def commit(self, positions):
        for p, pos in positions.items():
            if pos > SlowSink.durable.get(p, 0) or SlowSink.writing.is_set():
                type(self).early.append((p, pos, dict(SlowSink.durable)))
        CommitCheckingSource.committing.set()
        CommitCheckingSource.committing.clear()
        super().commit(positions)


@pytest.fixture
def guard_types(test_plugins):
    mod = types.ModuleType("streamkit_guard_types")

    @hookimpl
    def register_sources(register):
        register("scripted", ScriptedSource)
        register("commit_checking", CommitCheckingSource)
        register("probe", ProbeSource)

    @hookimpl
    def register_sinks(register):
        register("failing", FailingSink)
        register("slow", SlowSink)

    mod.register_sources = register_sources
    mod.register_sinks = register_sinks
    pm = get_plugin_manager()
    pm.register(mod, name="streamkit_guard_types")
    ScriptedSource.script = None
    CommitCheckingSource.early = []
    try:
        yield test_plugins
    finally:
        ScriptedSource.script = None
        pm.unregister(name="streamkit_guard_types")


def _pipeline(source: dict, sinks: list, name: str = "guards", max_records: int = 100) -> Pipeline:
    return Pipeline.from_dict({"name": name, "source": source, "aggregations": as_pipeline(AGGREGATIONS),
                               "sinks": sinks, "flush": {"max_records": max_records, "interval": "60s"}})


def _source(records: dict, kind: str = "scripted", batch: int = 100) -> dict:
    return {"type": kind, "partitions": records, "batch": batch, "decoded": True}


class ProbeSource(ListSource):
    """Reads nothing: keeps where the sinks tell a new owner to resume, and any replay it is given."""

    def open(self, hooks):
        self.resume = hooks.assigned(sorted(self.config["partitions"]))
        self.replays = dict(hooks.replays.ends)

    def poll(self, timeout):
        return None


def _resume(store, partitions: list[str]) -> tuple[dict, dict]:  # noqa: F811
    """Where a new owner of ``partitions`` resumes, and the ends of the flushes it must replay."""
    p = _pipeline(_source({q: [] for q in partitions}, kind="probe"), [store.sink()])
    p.run()
    return p.source.resume, p.source.replays


def _exact(store, records: list) -> None:  # noqa: F811
    problem = diff(truth(records, AGGREGATIONS), stored(store.db["aggregations"], AGGREGATIONS))
    assert not problem, problem


# -- the owner epoch ------------------------------------------------------------------------

def test_a_stale_owner_cannot_start_a_flush(guard_types, store):  # noqa: F811
    """Process A reads and writes its first flush; then B takes the partition over and runs it to
    the end; A's next flush must fail naming the newer owner, and change no position."""
    records = {"t/0": EVENTS}
    newer: dict = {}

    def take_over(source, polls):
        if polls == 2:
            source.hooks.wait_all()  # A's first flush is written and committed
            ScriptedSource.script = None
            newer["result"] = _pipeline(_source(records), [store.sink()]).run()

    ScriptedSource.script = take_over
    a = _pipeline(_source(records), [store.sink()])
    with pytest.raises(StreamkitError, match="owned by a newer process"):
        a.run()
    assert newer["result"].records_read == 200  # B resumed after A's first flush
    assert a.source.committed == {"t/0": 100}
    _exact(store, EVENTS)
    assert _resume(store, ["t/0"]) == ({"t/0": 300}, {})


def test_a_stale_owner_cannot_finish_a_flush(guard_types, store, monkeypatch):  # noqa: F811
    """B takes the partition over while A is in the middle of writing its second flush (its
    intent is stored); B replays that flush and runs to the end. When A's write goes on, its
    documents are fenced off and finishing its intent must not move B's position back."""
    records = {"t/0": EVENTS}
    real = streamkit_mongodb.MongoSink._bulk
    state: dict = {"a": None, "bulks": 0}

    def bulk(self, ops):
        if self.context.pipeline is state["a"]:
            state["bulks"] += 1
            if state["bulks"] == 2:  # A's second flush: intents written, no document yet
                state["b"] = _pipeline(_source(records), [store.sink()]).run()
        return real(self, ops)

    monkeypatch.setattr(streamkit_mongodb.MongoSink, "_bulk", bulk)
    a = state["a"] = _pipeline(_source(records), [store.sink()])
    with pytest.raises(StreamkitError, match="owned by a newer process"):
        a.run()  # A's third flush is refused at its intent
    assert state["b"].records_read == 200  # B replayed A's interrupted flush [100, 200) and read on
    _exact(store, EVENTS)
    assert _resume(store, ["t/0"]) == ({"t/0": 300}, {})


# -- revoking -------------------------------------------------------------------------------

def test_revoking_flushes_and_commits_before_partitions_go(guard_types):
    """A reads from two partitions; one is revoked with records read but not flushed. The new
    owner resumes from what A committed: together they must count every record exactly once."""
    records = {"t/0": EVENTS[:150], "t/1": EVENTS[150:]}
    handed: dict = {}

    def revoke(source, polls):
        if polls == 3:  # 100 records of each partition read, none flushed (max_records 1000)
            source.hooks.revoking(["t/0"])
            handed.update(source.committed)
            del source.parts["t/0"]

    ScriptedSource.script = revoke
    a = _pipeline(_source(records, batch=50), [{"type": "capture"}], max_records=1000)
    a.run()
    ScriptedSource.script = None
    rest = {"t/0": EVENTS[:150][handed.get("t/0", 0):]}
    b = _pipeline(_source(rest, batch=50), [{"type": "capture"}], max_records=1000)
    b.run()
    assert handed.get("t/0") == 100, f"committed at the revocation: {handed}"
    sinks = guard_types
    merged: dict = {}
    for sink in sinks:
        for k, partial in sink.state.items():
            agg = next(x.aggregator for x in a.aggregations if x.name == k[0])
            merged[k] = partial if k not in merged else agg.merge(merged[k], partial)
    by_name = {x.name: x.aggregator for x in a.aggregations}
    got = {k: by_name[k[0]].result(v) for k, v in merged.items()}
    problem = diff(truth(EVENTS, AGGREGATIONS), got)
    assert not problem, problem


# -- positions only after durable writes ----------------------------------------------------

def test_a_failing_sink_leaves_the_committed_positions(guard_types):
    """The second flush fails in a sink: only the first flush's positions are committed."""
    p = _pipeline(_source({"t/0": EVENTS}), [{"type": "capture"}, {"type": "failing"}])
    with pytest.raises(StreamkitError, match="the store is gone"):
        p.run()
    assert p.source.committed == {"t/0": 100}


def test_positions_are_committed_only_after_a_slow_write_returned(guard_types):
    p = _pipeline(_source({"t/0": EVENTS, "t/1": EVENTS[:120]}, kind="commit_checking", batch=60),
                  [{"type": "slow"}])
    result = p.run()
    assert result.flushes >= 3 and p.source.committed == {"t/0": 300, "t/1": 120}
    assert CommitCheckingSource.early == [], "positions committed before the write returned"
