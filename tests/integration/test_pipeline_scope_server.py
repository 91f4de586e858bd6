"""Two pipelines of different names writing into one collection on the real servers, each killed
-9 at random moments while the other writes: every stored document must be the sum of both
inputs. And ``streamkit reset`` of a Kafka pipeline: refused while it runs, then a true start
over (the group's committed offsets go too, or the next run would resume at the end)."""
from __future__ import annotations

import random
import subprocess
import sys
import threading

import orjson
import pytest

from conftest import unique
from processes import (consumed, generator_records, kafka_source, kill_loop, make_events, offsets_state,
                       pipeline, seed_for, wait_for, write_yaml)
from truth import diff, stored, truth

pytestmark = pytest.mark.integration

AGGREGATIONS = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "longest", "type": "max", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "per_type_5s", "type": "count", "group_by": ["interaction_type"], "window": 5},
]
#: merged by two pipelines into one document, a sketch holds the sketch of both inputs together
SKETCHES = [
    {"name": "users_per_item", "type": "distinct", "field": "user_id", "group_by": ["item_id"]},
    {"name": "duration_pct_5s", "type": "percentiles", "field": "duration_ms", "group_by": ["interaction_type"],
     "window": 5},
]


def summed(*truths: dict) -> dict:
    """The documents two pipelines merging into the same collection must leave."""
    out: dict = {}
    for t in truths:
        for k, v in t.items():
            if k not in out:
                out[k] = dict(v)
                continue
            o = out[k]
            for f in v:
                if f in ("count", "sum"):
                    o[f] += v[f]
                elif f == "min":
                    o[f] = min(o[f], v[f])
                elif f == "max":
                    o[f] = max(o[f], v[f])
            if "avg" in o:
                o["avg"] = o["sum"] / o["count"]
    return out


def streamkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streamkit", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def _in_thread(fn) -> tuple[threading.Thread, list]:
    box: list = []

    def work() -> None:
        try:
            box.append(("ok", fn()))
        except BaseException as exc:  # handed to the test's thread
            box.append(("error", exc))
    t = threading.Thread(target=work, daemon=True)
    t.start()
    return t, box


def _result(t: threading.Thread, box: list):
    t.join(300)
    assert box, "the other pipeline's kill loop did not finish"
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def test_two_generator_pipelines_killed_while_sharing_a_collection(mongo_server, runs, tmp_path):
    seed = seed_for("test_two_generator_pipelines_killed_while_sharing_a_collection")
    rng = random.Random(seed)
    database = unique("scope")
    sources = {"a": {"seed": rng.randrange(10**6), "users": 200, "items": 30, "rate": 4000, "max_records": 9000,
                     "batch_size": 250},
               "b": {"seed": rng.randrange(10**6), "users": 200, "items": 30, "rate": 3000, "max_records": 6000,
                     "batch_size": 200}}
    names = {k: unique(f"pipe_{k}") for k in sources}
    files = {k: write_yaml(tmp_path / f"{k}.yaml",
                           pipeline(names[k], {"type": "generator", **sources[k]}, mongo_server.uri, database,
                                    AGGREGATIONS + SKETCHES, {"max_records": 50_000, "interval": "0.3s"}))
             for k in sources}
    client = mongo_server.client()
    db = client[database]
    rngs = {k: random.Random(rng.randrange(10**9)) for k in sources}

    def loop(k: str) -> list[str]:
        # each kill waits until the stored position passes a random point of its third of the input,
        # so no start runs to the end before its kill
        return kill_loop(lambda: runs.start(files[k], f"streamkit_{k}"), rngs[k], kills=3, low=0.0, high=0.3,
                         open_intents=lambda: {p: s[1] for p, s in offsets_state(db, names[k]).items() if s[1]},
                         progress=(lambda: (offsets_state(db, names[k]).get("generator/0") or (0,))[0] or 0,
                                   sources[k]["max_records"]),
                         timeout=120, after_kill=lambda: f"{k}: offsets {offsets_state(db, names[k])}")
    t, box = _in_thread(lambda: loop("a"))
    events = loop("b") + _result(t, box)
    print("\n".join(events))
    records = {k: generator_records(sources[k], sources[k]["max_records"]) for k in sources}
    expected = summed(*(truth(records[k], AGGREGATIONS) for k in sources))
    expected.update(truth([r for k in sources for r in records[k]], SKETCHES))
    problem = diff(expected, stored(db["aggregations"], AGGREGATIONS + SKETCHES))
    assert not problem, f"seed {seed}: stored documents differ from the truth\n{problem}\n" + "\n".join(events)
    for k in sources:
        state = offsets_state(db, names[k])
        assert state["generator/0"][:2] == (sources[k]["max_records"], None), state
    client.close()


def test_two_kafka_pipelines_on_one_topic_then_reset(kafka, mongo_server, runs, tmp_path):
    seed = seed_for("test_two_kafka_pipelines_on_one_topic_then_reset")
    rng = random.Random(seed)
    topic = kafka.create_topic("scope", partitions=2)
    events = make_events(4000, rng)
    parts = [rng.randrange(2) for _ in events]
    kafka.produce(topic, [orjson.dumps(e) for e in events], partition=lambda i: parts[i])
    ends = kafka.end_offsets(topic)
    database = unique("scope")
    names = {k: unique(f"kpipe_{k}") for k in "ab"}
    groups = {k: unique(f"g{k}") for k in "ab"}
    instances = {"a": None, "b": "scope-0"}  # a restart of b takes the killed member's place at once
    files = {k: write_yaml(tmp_path / f"{k}.yaml",
                           pipeline(names[k], kafka_source(kafka.bootstrap, topic, groups[k], instance=instances[k]),
                                    mongo_server.uri, database, AGGREGATIONS,
                                    {"max_records": 500, "interval": "0.3s"}))
             for k in "ab"}
    client = mongo_server.client()
    db = client[database]

    a = runs.start(files["a"], "streamkit_a")  # runs all along, while b is killed
    epochs = [0]

    def ready() -> bool:
        top = max((s[2] or 0 for s in offsets_state(db, names["b"]).values()), default=0)
        if top > epochs[0]:
            epochs[0] = top
            return True
        return False
    notes = kill_loop(lambda: runs.start(files["b"], "streamkit_b"), rng, kills=3, low=0.3, high=2.0,
                      open_intents=lambda: {p: s[1] for p, s in offsets_state(db, names["b"]).items() if s[1]},
                      after_kill=lambda: f"b: offsets {offsets_state(db, names['b'])}", until_killed=True,
                      ready=ready)
    b = runs.start(files["b"], "streamkit_b")
    for k, run in (("a", a), ("b", b)):
        wait_for(f"{k} to consume the topic", lambda k=k, run=run: consumed(db, names[k], topic, ends)
                 or not run.alive(), 120)
    expected = truth(events, AGGREGATIONS)
    problem = diff(summed(expected, expected), stored(db["aggregations"], AGGREGATIONS))
    assert not problem, f"seed {seed}: stored documents differ from the truth\n{problem}\n" + "\n".join(notes)

    # while a runs, its reset is refused (its group has a member) and removes nothing
    busy = streamkit("reset", str(files["a"]), "--yes")
    assert busy.returncode == 2 and "member(s)" in busy.stderr and busy.stderr.count("\n") == 1, busy.stderr
    assert db["streamkit_offsets"].count_documents({"pipeline": names["a"]}) == 2
    for run in (a, b):
        run.terminate()
        assert run.wait(30) == 0, run.tail()

    # every document holds both pipelines' counts: a's reset is refused, then forced
    shared = streamkit("reset", str(files["a"]), "--yes")
    assert shared.returncode == 2 and repr(names["b"]) in shared.stderr, shared.stderr
    forced = streamkit("reset", str(files["a"]), "--yes", "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"committed offsets of group {groups['a']}: 2" in forced.stdout, forced.stdout
    assert all(v is None for v in kafka.committed(groups["a"], topic).values())
    assert db["aggregations"].count_documents({}) == 0
    # b's members are static (group_instance_id): they stay in the group until their session times out
    wait_for("b's reset", lambda: streamkit("reset", str(files["b"]), "--yes").returncode == 0, 60, interval=1)

    # a starts over from the beginning of the topic, not from its old committed offsets
    again = runs.start(files["a"], "streamkit_a2")
    wait_for("a to consume the topic again", lambda: consumed(db, names["a"], topic, ends) or not again.alive(), 120)
    again.terminate()
    assert again.wait(30) == 0, again.tail()
    problem = diff(expected, stored(db["aggregations"], AGGREGATIONS))
    assert not problem, f"seed {seed}: after reset, stored documents differ from the truth\n{problem}"
    client.close()
