"""Several ``streamkit run`` processes in one consumer group share a topic's partitions and merge
into the same documents: one is killed -9 in the middle, one joins late, one leaves with SIGTERM,
one is frozen past its session and wakes up as a zombie. The documents must be exact."""
from __future__ import annotations

import os
import random
import signal
import time

import orjson
import pytest

from conftest import unique
from processes import (consumed, kafka_source, make_events, offsets_state, pipeline, seed_for, wait_for,
                       write_yaml)
from truth import diff, stored, truth

pytestmark = pytest.mark.integration

AGGREGATIONS = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "shortest", "type": "min", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "longest", "type": "max", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "per_type_10s", "type": "count", "group_by": ["interaction_type"], "window": 10},
    {"name": "users_per_item", "type": "distinct", "field": "user_id", "group_by": ["item_id"]},
    {"name": "duration_pct_per_type", "type": "percentiles", "field": "duration_ms", "group_by": ["interaction_type"]},
]
PARTITIONS = 4


def _setup(kafka, mongo_server, tmp_path, rng, n: int, client: str):
    topic = kafka.create_topic("scale", partitions=PARTITIONS)
    events = make_events(n, rng, users=150, items=25)
    parts = [rng.randrange(PARTITIONS) for _ in events]
    name, database = unique("scale"), unique("scale")
    cfg = pipeline(name, kafka_source(kafka.bootstrap, topic, unique("g"), client=client), mongo_server.uri, database,
                   AGGREGATIONS, {"max_records": 500, "interval": "0.3s"})
    config = write_yaml(tmp_path / "p.yaml", cfg)

    def produce(lo: int, hi: int) -> None:
        kafka.produce(topic, [orjson.dumps(e) for e in events[lo:hi]], partition=lambda i: parts[lo + i])
    return topic, events, name, database, config, produce


def _progress(db, name: str) -> int:
    return sum(s[0] or 0 for s in offsets_state(db, name).values())


def _epochs(db, name: str) -> int:
    return sum(s[2] or 0 for s in offsets_state(db, name).values())


def _check(db, events, seed: int, notes: list[str]) -> None:
    problem = diff(truth(events, AGGREGATIONS), stored(db["aggregations"], AGGREGATIONS))
    assert not problem, f"seed {seed}: documents differ from the truth\n{problem}\n" + "\n".join(notes)


def test_processes_join_leave_and_die_exact(kafka, mongo_server, runs, tmp_path, kafka_client):
    seed = seed_for("test_processes_join_leave_and_die_exact")
    rng = random.Random(seed)
    topic, events, name, database, config, produce = _setup(kafka, mongo_server, tmp_path, rng, 16_000, kafka_client)
    client = mongo_server.client()
    db = client[database]
    notes: list[str] = []
    t0 = time.monotonic()

    def note(text: str) -> None:
        notes.append(f"{time.monotonic() - t0:5.1f}s {text}; offsets {offsets_state(db, name)}")

    produce(0, 8000)
    a = runs.start(config, "a")
    b = runs.start(config, "b")
    wait_for("both processes to take partitions", lambda: len(offsets_state(db, name)) == PARTITIONS, 60)
    wait_for("progress", lambda: _progress(db, name) > 1000, 60)
    time.sleep(rng.uniform(0.0, 1.5))
    a.kill9()
    note("a killed -9")
    time.sleep(rng.uniform(0.0, 2.0))
    c = runs.start(config, "c")
    note("c started")
    produce(8000, 16000)
    note("second half produced")
    epochs = _epochs(db, name)
    wait_for("the partitions of a to move", lambda: _epochs(db, name) > epochs + 1, 60)
    wait_for("progress after the rebalance", lambda: _progress(db, name) > 10_000, 60)
    t = time.monotonic()
    b.terminate()
    assert b.wait(20) == 0, b.tail()
    note(f"b left with SIGTERM in {time.monotonic() - t:.1f}s")
    assert time.monotonic() - t < 10, "\n".join(notes)
    ends = kafka.end_offsets(topic)
    wait_for("the topic to be consumed", lambda: consumed(db, name, topic, ends) or not c.alive(), 120)
    t = time.monotonic()
    c.terminate()
    assert c.wait(20) == 0, c.tail()
    note(f"c stopped with SIGTERM in {time.monotonic() - t:.1f}s")
    print("\n".join(notes))
    _check(db, events, seed, notes)
    client.close()


def _owned(run, topic: str) -> list[str]:
    """The partitions ``run`` was assigned last (from its log, written with -v)."""
    lines = [ln for ln in run.log_file.read_text(errors="replace").splitlines() if ": assigned " in ln]
    if not lines:
        return []
    return [p.strip() for p in lines[-1].split(": assigned ", 1)[1].split(",") if p.strip().startswith(topic)]


def test_frozen_member_wakes_up_as_a_zombie(kafka, mongo_server, runs, tmp_path, kafka_client):
    """SIGSTOP a member in the middle of a flush, past its session: the other member takes its
    partitions (new owner epochs) and replays the unfinished flush. SIGCONT: the zombie's writes
    in flight are fenced, and it cannot start a new flush on the partitions it lost."""
    seed = seed_for("test_frozen_member_wakes_up_as_a_zombie")
    rng = random.Random(seed)
    topic, events, name, database, config, produce = _setup(kafka, mongo_server, tmp_path, rng, 12_000, kafka_client)
    client = mongo_server.client()
    db = client[database]
    notes: list[str] = []
    t0 = time.monotonic()

    def note(text: str) -> None:
        notes.append(f"{time.monotonic() - t0:5.1f}s {text}; offsets {offsets_state(db, name)}")

    produce(0, 6000)
    a = runs.start(config, "a", verbose=True)
    wait_for("a to take the partitions", lambda: len(_owned(a, topic)) == PARTITIONS, 60)
    b = runs.start(config, "b", verbose=True)
    wait_for("a and b to share the partitions", lambda: 0 < len(_owned(a, topic)) < PARTITIONS
             and len(_owned(b, topic)) > 0, 60)
    mine = _owned(a, topic)
    produce(6000, 12_000)
    frozen = False
    deadline = time.monotonic() + 60
    while not frozen:  # freeze a in the middle of one of its flushes: an intent of its is open
        assert a.alive() and time.monotonic() < deadline, f"a was never frozen in a flush\n{a.tail()}"
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(a.pid, signal.SIGSTOP)
        state = offsets_state(db, name)
        frozen = any(state.get(p, (None, None))[1] for p in mine)
        if not frozen:
            os.kill(a.pid, signal.SIGCONT)
    note(f"a (owning {mine}) frozen in the middle of a flush")
    before = {p: offsets_state(db, name)[p] for p in mine}
    wait_for("b to take the partitions of a and pass a's unfinished flushes",
             lambda: all(offsets_state(db, name)[p][2] > before[p][2] and
                         (offsets_state(db, name)[p][0] or 0) > ((before[p][1] or {}).get("end") or 0)
                         for p in mine), 60)
    note("b took over")
    seen = len(a.log_file.read_text(errors="replace"))
    os.kill(a.pid, signal.SIGCONT)
    note("a woken up")

    def zombie_stopped() -> bool:
        """The zombie learnt it lost its partitions, or its sink refused its next flush."""
        return ("lost partitions" in a.log_file.read_text(errors="replace")[seen:] or
                (not a.alive() and "is owned by a newer process" in a.tail(3)))
    wait_for("the zombie to lose its partitions or have its flush refused", zombie_stopped, 60)
    note("a stopped writing the partitions it lost")
    ends = kafka.end_offsets(topic)
    wait_for("the topic to be consumed", lambda: consumed(db, name, topic, ends) or not b.alive(), 120)
    for r in (a, b):  # once both exited, every late write of the zombie has landed
        if r is a and "is owned by a newer process" in a.tail(3):
            continue  # the zombie is exiting by itself (exit 1): a SIGTERM now would end it with -15
        r.terminate()
    codes = [a.wait(20), b.wait(20)]
    note(f"stopped, exit codes {codes}")
    print("\n".join(notes))
    assert codes[1] == 0, b.tail()
    # the zombie either dropped its lost partitions and carried on, or stopped at its first write
    assert codes[0] == 0 or (codes[0] == 1 and "is owned by a newer process" in a.tail(3)), a.tail()
    _check(db, events, seed, notes)
    client.close()
