"""``streamkit run --workers 2`` on a 4-partition topic: the two workers share the partitions as
members of one consumer group; one is killed -9 in the middle of a flush, the supervisor starts it
again, SIGTERM stops both after their final flush with one summary line, and every document is
exactly the truth."""
from __future__ import annotations

import random
import signal
import time

import orjson
import psutil
import pytest

from conftest import unique
from processes import consumed, kafka_source, make_events, offsets_state, pipeline, seed_for, wait_for, write_yaml
from truth import diff, stored, truth

pytestmark = pytest.mark.integration

AGGREGATIONS = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "longest", "type": "max", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "per_type_10s", "type": "count", "group_by": ["interaction_type"], "window": 10},
]
PARTITIONS = 4


def _workers_of(pid: int) -> dict[str, int]:
    out = {}
    for c in psutil.Process(pid).children():
        try:
            cmd = c.cmdline()
        except psutil.Error:
            continue
        if "--worker" in cmd:
            out[cmd[cmd.index("--worker") + 1]] = c.pid
    return out


def test_two_workers_one_killed_in_a_flush_exact(kafka, mongo_server, runs, tmp_path):
    seed = seed_for("test_two_workers_one_killed_in_a_flush_exact")
    rng = random.Random(seed)
    topic = kafka.create_topic("workers", partitions=PARTITIONS)
    events = make_events(20_000, rng, users=150, items=25)
    parts = [rng.randrange(PARTITIONS) for _ in events]
    name, database = unique("workers"), unique("workers")
    cfg = pipeline(name, kafka_source(kafka.bootstrap, topic, unique("g")), mongo_server.uri, database,
                   AGGREGATIONS, {"max_records": 500, "interval": "0.3s"})
    config = write_yaml(tmp_path / "p.yaml", cfg)

    def produce(lo: int, hi: int) -> None:
        kafka.produce(topic, [orjson.dumps(e) for e in events[lo:hi]], partition=lambda i: parts[lo + i])
    client = mongo_server.client()
    db = client[database]
    produce(0, 10_000)
    sup = runs.start(config, "supervisor", extra=["--workers", "2"])
    workers = wait_for("two workers", lambda: len(_workers_of(sup.pid)) == 2 and _workers_of(sup.pid), 60)
    wait_for("both workers to take partitions", lambda: len(offsets_state(db, name)) == PARTITIONS
             and len({s[2] for s in offsets_state(db, name).values()}) >= 1, 90)
    wait_for("progress", lambda: sum(s[0] or 0 for s in offsets_state(db, name).values()) > 2000, 90)
    victim = rng.choice(sorted(workers))

    def open_intent() -> bool:
        return any(s[1] for s in offsets_state(db, name).values())
    wait_for("a flush in the middle", lambda: open_intent() or not sup.alive(), 60, interval=0.002)
    psutil.Process(workers[victim]).send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    assert sup.alive(), sup.tail()
    index = victim.split("/")[0]
    wait_for("the supervisor to start the worker again",
             lambda: f"streamkit: worker {index} was killed by signal 9; starting it again"
             in sup.log_file.read_text(errors="replace"), 30)
    wait_for("a new worker", lambda: _workers_of(sup.pid).get(victim) not in (None, workers[victim]), 30)
    produce(10_000, 20_000)
    ends = kafka.end_offsets(topic)
    wait_for("the topic to be consumed", lambda: consumed(db, name, topic, ends) or not sup.alive(), 180)
    assert sup.alive(), sup.tail()
    sup.terminate()
    assert sup.wait(60) == 0, sup.tail()
    log = sup.log_file.read_text(errors="replace")
    summary = [ln for ln in log.splitlines() if " records read, " in ln]
    assert len(summary) == 1 and summary[0].endswith(", 2 workers, 1 restart"), log
    print(f"seed {seed}: worker {victim} killed -9 {time.monotonic() - killed_at:.1f}s before the end; "
          f"{summary[0]}")
    problem = diff(truth(events, AGGREGATIONS), stored(db["aggregations"], AGGREGATIONS))
    assert not problem, f"seed {seed}: documents differ from the truth\n{problem}\n{offsets_state(db, name)}"
    client.close()
