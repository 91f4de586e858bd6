"""kill -9 a file -> MongoDB pipeline in the middle of its files (plain and gzip, with bad lines),
start it again until it finishes, and compare every stored document with the truth; then the
same files with ``--workers 2``, one worker killed -9 in the middle of a flush and started again
by the supervisor."""
from __future__ import annotations

import gzip
import random

import orjson
import psutil
import pytest

from processes import kill_loop, make_events, offsets_state, pipeline, seed_for, wait_for, write_yaml
from truth import aggregate, diff, stored

pytestmark = pytest.mark.integration

AGGREGATIONS = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "shortest", "type": "min", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "longest", "type": "max", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "per_type_5s", "type": "count", "group_by": ["interaction_type"], "window": 5},
]
BAD = [b"not json", b'{"user_id": ["a list"], "duration_ms": 1}', b'{"item_id": "i1"}']


def _files(tmp_path, rng: random.Random, n: int, count: int):
    """``count`` files of the events (every third gzip), bad lines among them: (events in file
    order, the records of every line, the content size of each file)."""
    events = make_events(n, rng, users=120, items=20)
    records: list = []
    sizes = {}
    cuts = sorted(rng.sample(range(1, n), count - 1))
    for i, (lo, hi) in enumerate(zip([0, *cuts], [*cuts, n])):
        lines = [orjson.dumps(e) for e in events[lo:hi]]
        for _ in range(rng.randrange(4)):
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(BAD))
        data = b"\n".join(lines) + b"\n"
        path = tmp_path / "in" / (f"part-{i}.jsonl.gz" if i % 3 == 2 else f"part-{i}.jsonl")
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
        sizes[str(path)] = len(data)
        records += [orjson.loads(line) if line != b"not json" else None for line in lines]
    return events, records, sizes


def _config(tmp_path, mongo_server, name: str, database: str):
    source = {"type": "file", "path": str(tmp_path / "in" / "part-*"), "read_size": 16384}
    cfg = pipeline(name, source, mongo_server.uri, database, AGGREGATIONS, {"max_records": 1000, "interval": "1s"})
    return write_yaml(tmp_path / "files.yaml", cfg)


def _check(db, name: str, records: list, sizes: dict, seed: int, notes) -> None:
    expected, bad = aggregate([r for r in records if r is not None], AGGREGATIONS)
    problem = diff(expected, stored(db["aggregations"], AGGREGATIONS))
    state = offsets_state(db, name)
    assert not problem, f"seed {seed}: documents differ from the truth\n{problem}\n{state}\n" + "\n".join(notes)
    # every file read to its end, nothing unfinished
    ends = {p.split("#")[0]: (pos, intent) for p, (pos, intent, _) in state.items()}
    assert ends == {path: (size, None) for path, size in sizes.items()}, state
    assert bad + records.count(None) > 0  # bad lines were there to become dead letters


def test_kill9_in_the_middle_of_files_exact(mongo_server, runs, tmp_path):
    seed = seed_for("test_kill9_in_the_middle_of_files_exact")
    rng = random.Random(seed)
    _, records, sizes = _files(tmp_path, rng, 24_000, 5)
    name = database = f"files_{seed}"
    config = _config(tmp_path, mongo_server, name, database)
    client = mongo_server.client()
    db = client[database]
    total = sum(sizes.values())
    done = lambda: sum(s[0] or 0 for s in offsets_state(db, name).values())  # noqa: E731 - bytes stored
    intents = lambda: tuple(sorted((p, str(s[1])) for p, s in offsets_state(db, name).items() if s[1]))  # noqa: E731
    epochs = [0]

    def ready() -> bool:  # a new epoch: this start took a file
        now = sum(s[2] or 0 for s in offsets_state(db, name).values())
        if now > epochs[0]:
            epochs[0] = now
            return True
        return False

    events = kill_loop(lambda: runs.start(config, "streamkit"), rng, kills=5, low=0.0, high=0.8, timeout=180,
                       open_intents=intents, progress=(done, total), ready=ready,
                       after_kill=lambda: f"offsets {offsets_state(db, name)}")
    for e in events:
        print(e)
    _check(db, name, records, sizes, seed, events)
    client.close()


def _workers_of(pid: int) -> dict[str, int]:
    """worker "i/n" -> pid, of the supervisor ``pid``."""
    out = {}
    for c in psutil.Process(pid).children():
        try:
            cmd = c.cmdline()
        except psutil.Error:
            continue
        if "--worker" in cmd:
            out[cmd[cmd.index("--worker") + 1]] = c.pid
    return out


def test_workers_over_files_one_killed_in_a_flush_exact(mongo_server, runs, tmp_path):
    seed = seed_for("test_workers_over_files_one_killed_in_a_flush_exact")
    rng = random.Random(seed)
    _, records, sizes = _files(tmp_path, rng, 30_000, 8)
    name = database = f"wfiles_{seed}"
    config = _config(tmp_path, mongo_server, name, database)
    client = mongo_server.client()
    db = client[database]
    sup = runs.start(config, "supervisor", extra=["--workers", "2"])
    workers = wait_for("two workers", lambda: len(_workers_of(sup.pid)) == 2 and _workers_of(sup.pid), 60)
    mine = {}

    def open_intent():  # a worker's flush in the middle: an intent open on a file it reads
        for p, (_, intent, _) in offsets_state(db, name).items():
            if intent:
                return p
        return None
    partition = wait_for("a flush of a worker in the middle", lambda: open_intent() or not sup.alive(), 120,
                         interval=0.002)
    assert sup.alive() and isinstance(partition, str), sup.tail()
    # the worker that reads the file with the open intent (each file is read by one worker)
    from streamkit_files.file import share
    victim = f"{share(partition.split('#')[0], 2)}/2"
    psutil.Process(workers[victim]).kill()
    mine["killed"] = workers[victim]
    assert not psutil.pid_exists(workers[victim]) or psutil.Process(workers[victim]).status() == "zombie"
    code = sup.wait(240)
    log = sup.log_file.read_text(errors="replace")
    assert code == 0, sup.tail()
    assert f"streamkit: worker {victim.split('/')[0]} was killed by signal 9; starting it again" in log
    summary = [ln for ln in log.splitlines() if " records read, " in ln]
    assert len(summary) == 1 and summary[0].endswith("2 workers, 1 restart"), log
    _check(db, name, records, sizes, seed, [f"killed worker {victim} (pid {mine['killed']})"])
    client.close()
