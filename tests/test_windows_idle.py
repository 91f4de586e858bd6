"""Windows that close, over wall-clock time: a partition that goes idle while another continues,
every partition idle, two processes sharing a pipeline's partitions, emitting closed windows
once (``emit: final``), retention, and what validation refuses."""
from __future__ import annotations

import json
import time
import uuid

import pytest

import streamkit_mongodb
from streamkit import Batch, Option, Pipeline, Source, hookimpl
from streamkit.plugins import get_plugin_manager
from stores import Store, store  # noqa: F401
from test_config_limits import validate_in_process
from truth import closing_truth, diff, finals, stored

AGG = {"name": "per_key", "type": "count", "group_by": ["k"], "window": "60s", "lateness": "0s"}
TRUTH_AGG = {**AGG, "window": 60, "lateness": 0}


class PacedSource(Source):
    """Test source: ``script`` is [seconds after open, partition, [records]]; after its last step
    it waits for ever (an idle source, not an ended one)."""

    options = {"script": Option(list, help="[[delay, partition, records], ...]")}

    def open(self, hooks):
        self.start = time.monotonic()
        self.steps = [tuple(s) for s in self.config["script"]]
        parts = sorted({p for _, p, _ in self.steps})
        resume = hooks.assigned(parts) or {}
        self.pos = {p: resume.get(p, 0) for p in parts}
        self.done = {p: 0 for p in parts}  # records of the script given so far, per partition

    def poll(self, timeout):
        now = time.monotonic() - self.start
        out = []
        while self.steps and self.steps[0][0] <= now:
            _, p, recs = self.steps.pop(0)
            first = self.done[p]
            self.done[p] += len(recs)
            skip = max(0, self.pos[p] - first)  # already stored by an earlier run
            recs = recs[skip:]
            if recs:
                out.append(Batch(p, [json.dumps(r).encode() for r in recs], first + skip, self.done[p]))
                self.pos[p] = self.done[p]
        if not out:
            time.sleep(min(timeout, 0.02))
        return out


@pytest.fixture
def paced():
    class Plugin:
        @hookimpl
        def register_sources(self, register):
            register("paced", PacedSource)
    pm = get_plugin_manager()
    plugin = Plugin()
    pm.register(plugin, name="streamkit_test_paced")
    yield
    pm.unregister(name="streamkit_test_paced")


def _store() -> Store:
    uri = f"mongomock://idle-{uuid.uuid4().hex}"
    return Store("fast", uri, "db", streamkit_mongodb.connect(uri))


def _run(store, script, *, idle="0.3s", duration=2.0, sinks=(), agg=AGG, name="idle"):
    pipe = Pipeline.from_dict({
        "name": name, "source": {"type": "paced", "script": script}, "aggregations": [agg],
        "sinks": [store.sink(), *sinks], "flush": {"interval": "0.1s"}, "idle_timeout": idle})
    return pipe.run(duration=duration)


def _recs(times):
    return [{"k": "a", "timestamp": t} for t in times]


def test_an_idle_partition_stops_holding_windows_open_and_its_late_records_change_nothing(paced):
    """p1 sends records up to t=100 and falls silent; p0 goes on to t=999 over 2.5 s. Without
    idleness no window after t=100 could close while p1 is silent; with it p1 stops holding
    them back. A record p1 sends later for a window closed meanwhile is late: counted, and the
    final window keeps its values."""
    store = _store()
    p0 = [(0.025 * i, "p0", _recs(range(10 * i, 10 * i + 10))) for i in range(100)]  # 2.5 s, t up to 999
    script = sorted([(0.0, "p1", _recs(range(0, 101, 5)))] + p0 + [(2.2, "p1", _recs([150]))], key=lambda s: s[0])
    result = _run(store, script, idle="0.3s", duration=2.7)  # p0 never silent for 0.3 s
    coll = store.db["aggregations"]
    final = finals(coll)
    ends = sorted(k[2] + 60 for k in final)
    assert ends and ends[-1] > 160, f"no window after p1's last record closed: {ends}"
    assert ends[-1] <= 960, "a window closed beyond the event time p0 reached"
    assert result.late == {"per_key": 1}, result.late
    # the values: every record but the late one (p0's and p1's early ones) in its window
    parts = {"p0": [r for _, p, rs in script if p == "p0" for r in rs],
             "p1": [r for _, p, rs in script if p == "p1" for r in rs][:-1]}
    expected, _, _ = closing_truth(parts, [TRUTH_AGG])
    assert diff(expected, stored(coll, [TRUTH_AGG])) == ""
    # the raised frontier is stored with p1's position, for the next run and for other processes
    clock = store.db["streamkit_offsets"].find_one({"partition": "p1"})["clock"]
    assert clock["seen"]["timestamp"] == 150 and clock["frontier"]["timestamp"] > 160


def test_without_idleness_a_silent_partition_holds_every_later_window_open(paced):
    """The guard's other side: the same stream with an idle timeout longer than the run."""
    store = _store()
    script = [(0.0, "p1", _recs(range(0, 101, 5)))] + [(0.02 * i, "p0", _recs(range(10 * i, 10 * i + 10)))
                                                      for i in range(60)]
    _run(store, sorted(script, key=lambda s: s[0]), idle="1h", duration=2.0)
    ends = sorted(k[2] + 60 for k in finals(store.db["aggregations"]))
    assert ends == [60.0], ends  # only the window p1 passed: [0, 60)


def test_when_every_partition_is_idle_the_last_windows_close_with_the_wall_clock(paced):
    """One partition sends t = 0..2.5 and stops. A second after, its last window [2, 3) is
    closed: time moved on from t=2.5 with the wall clock once it was idle (0.2 s)."""
    store = _store()
    agg = {**AGG, "window": "1s"}
    _run(store, [(0.0, "p0", _recs([0, 0.5, 1, 1.5, 2, 2.5]))], idle="0.2s", duration=1.6, agg=agg)
    final = finals(store.db["aggregations"])
    assert {k[2] for k in final} == {0.0, 1.0, 2.0}


def test_two_processes_sharing_a_pipeline_close_only_what_both_passed(test_plugins):
    """Process B stored p1 up to t=100 and stopped; process A then reads p0 to t=599 (and to its
    end): A's windows after t=100 stay open, held by p1's stored clock, until B reads on."""
    store = _store()
    p0 = _recs(range(0, 600, 7))
    p1 = _recs(range(0, 300, 5))

    def run(parts, **kw):
        raw = {p: [json.dumps(r).encode() for r in recs] for p, recs in parts.items()}
        return Pipeline.from_dict({"name": "shared", "source": {"type": "list", "partitions": raw, **kw},
                                   "aggregations": [AGG], "sinks": [store.sink()]})

    run({"p1": p1}, end=False).run(max_events=21)   # B: p1 up to t=100
    run({"p0": p0}).run()                             # A: all of p0, and its end
    coll = store.db["aggregations"]
    assert sorted(k[2] + 60 for k in finals(coll)) == [60.0]  # [0, 60): the only one both passed
    run({"p1": p1}).run()                             # B reads on, to its end
    expected, closed, _ = closing_truth({"p0": p0, "p1": p1}, [TRUTH_AGG])
    assert diff(expected, stored(coll, [TRUTH_AGG])) == "" and finals(coll) == closed


def test_emit_final_writes_each_closed_window_once_with_its_final_values(test_plugins, tmp_path):
    store = _store()
    parts = {"p0": _recs([0, 10, 65, 30, 130, 59, 200, 61, 250]), "p1": _recs([5, 70, 140, 190])}
    out = tmp_path / "closed.jsonl"
    raw = {p: [json.dumps(r).encode() for r in recs] for p, recs in parts.items()}
    Pipeline.from_dict({"name": "emit", "source": {"type": "list", "partitions": raw, "batch": 2},
                        "aggregations": [AGG], "flush": {"max_records": 3},
                        "sinks": [store.sink(), {"type": "jsonl", "path": str(out), "emit": "final"}]}).run()
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    expected, closed, _ = closing_truth(parts, [TRUTH_AGG])
    got = {("per_key", (("k", d["key"]["k"]),), _epoch(d["window"]["start"])): {"count": d["count"]} for d in lines}
    assert len(lines) == len(got) == len(closed)  # each once
    assert got == expected
    assert all(d["final"] is True and d["id"] for d in lines)
    ids = {d["_id"] for d in store.db["aggregations"].find({})}
    assert {d["id"] for d in lines} == ids  # the stable key: the document's _id


def _epoch(iso: str) -> float:
    import datetime as dt
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_retention_drops_closed_windows_a_retention_behind_the_latest_event(test_plugins, store):  # noqa: F811
    agg = {**AGG, "retention": "120s"}
    parts = {"p0": _recs(range(0, 600, 10))}
    raw = {p: [json.dumps(r).encode() for r in recs] for p, recs in parts.items()}
    Pipeline.from_dict({"name": "keep", "source": {"type": "list", "partitions": raw, "end": False},
                        "aggregations": [agg], "sinks": [store.sink()]}).run(max_events=60)
    coll = store.db["aggregations"]
    starts = sorted(d["window"]["start"].timestamp() for d in coll.find({}))
    # latest event 590: closed windows ending at or before 470 are dropped; [420, 480) on are kept
    assert starts == [420.0, 480.0, 540.0]
    assert all(d.get("expire_at") for d in coll.find({"final": True}))
    assert not any("expire_at" in d for d in coll.find({"final": {"$ne": True}}))
    ttl = [i for i in coll.index_information().values() if i.get("expireAfterSeconds") == 0]
    if store.kind == "server":
        assert ttl and ttl[0]["key"] == [("expire_at", 1)]
    else:  # mongomock would scan for expired documents on every access: the sink deletes them itself
        assert not ttl


def test_expired_windows_go_also_where_the_server_has_no_ttl_monitor(test_plugins, store):  # noqa: F811
    """mongomock has no TTL monitor (SecantusDB sweeps once a minute): the sink deletes what
    expired itself, on every flush, with the same result."""
    import datetime as dt
    agg = {**AGG, "retention": "120s"}
    raw = {"p0": [json.dumps(r).encode() for r in _recs(range(0, 200, 10))]}
    pipe = {"name": "ttl", "source": {"type": "list", "partitions": raw}, "aggregations": [agg],
            "sinks": [store.sink()]}
    Pipeline.from_dict(pipe).run()
    coll = store.db["aggregations"]
    assert coll.count_documents({}) == 3  # all closed at the end of input; [0, 60) is 120 s behind t=190
    coll.update_many({}, {"$set": {"expire_at": dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)}})
    Pipeline.from_dict(pipe).run()  # nothing new to read: one flush of the end of input
    assert coll.count_documents({}) == 0


BASE = """\
source: {type: generator, rate: 0}
aggregations:
  - name: per_type
    type: count
    group_by: [interaction_type]
    window: 1m
AGG_EXTRA
sinks:
  - {type: mongodb, uri: "mongomock://"}
SINK_EXTRA
"""


@pytest.mark.parametrize("agg, sink, top, key, words", [
    ("    lateness: -5s", "", "", "aggregations[0].lateness", "expected a duration"),
    ("    lateness: 10s\n    retention: 30s", "", "", "aggregations[0].retention", "shorter than the window"),
    ("    retention: 1h", "", "", "aggregations[0].retention", "never close"),
    ("    late: later", "", "", "aggregations[0].late", "drop_counted, dead_letter"),
    ("", "  - {type: jsonl, path: out.jsonl, emit: final}", "", "sinks[1].emit", "no aggregation here has windows"),
    ("", "  - {type: console, emit: sometimes}", "", "sinks[1].emit", "updates, final"),
    ("", "", "lateness: .nan\n", "lateness", "duration"),
    ("", "", "idle_timeout: -1s\n", "idle_timeout", "expected a duration"),
])
def test_validate_refuses_nonsense_with_one_line(agg, sink, top, key, words):
    text = top + BASE.replace("AGG_EXTRA", agg).replace("SINK_EXTRA", sink)
    code, err = validate_in_process(text)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f": {key}:" in err and words in err, err


def test_validate_refuses_closing_options_on_an_all_time_aggregation_and_emit_final_without_a_store():
    text = BASE.replace("    window: 1m\n", "").replace("AGG_EXTRA", "    lateness: 5s").replace("SINK_EXTRA", "")
    code, err = validate_in_process(text)
    assert code == 2 and "aggregations[0].lateness" in err and "all-time aggregation" in err, err
    text = BASE.replace("AGG_EXTRA", "    lateness: 5s").replace(
        '  - {type: mongodb, uri: "mongomock://"}', "  - {type: console, emit: final}").replace("SINK_EXTRA", "")
    code, err = validate_in_process(text)
    assert code == 2 and "sinks[0].emit" in err and "keeps windows" in err, err
