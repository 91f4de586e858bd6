"""kill -9 a generator -> MongoDB pipeline at random moments, restart it until it finishes, and
compare every stored document with a truth computed in plain Python from the same records."""
from __future__ import annotations

import random

import pytest

from processes import generator_records, kill_loop, offsets_state, pipeline, seed_for, write_yaml
from truth import diff, stored, truth

pytestmark = pytest.mark.integration

AGGREGATIONS = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "duration_per_type", "type": "sum", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "shortest", "type": "min", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "longest", "type": "max", "field": "duration_ms", "group_by": ["item_id", "interaction_type"]},
    {"name": "per_type_5s", "type": "count", "group_by": ["interaction_type"], "window": 5},
    {"name": "duration_5s_every_2s", "type": "avg", "field": "duration_ms", "group_by": ["interaction_type"],
     "window": (5, 2)},
    {"name": "duration_2s_every_1s", "type": "sum", "field": "duration_ms", "group_by": ["interaction_type"],
     "window": (2, 1)},
    {"name": "shortest_3s_every_2s", "type": "min", "field": "duration_ms", "window": (3, 2)},
    {"name": "longest_1s", "type": "max", "field": "duration_ms", "group_by": ["item_id"], "window": 1},
    # sketches: their stored state (registers, bucket counts) must equal the truth's exactly
    {"name": "users_per_item", "type": "distinct", "field": "user_id", "group_by": ["item_id"]},
    {"name": "duration_pct_per_type", "type": "percentiles", "field": "duration_ms", "group_by": ["interaction_type"]},
    {"name": "users_2s_every_1s", "type": "distinct", "field": "user_id", "window": (2, 1), "precision": 10},
    {"name": "duration_pct_3s", "type": "percentiles", "field": "duration_ms", "window": 3, "buckets": 64},
]


def _check(db, source: dict, n: int, name: str, events: list[str], seed: int) -> None:
    expected = truth(generator_records(source, n), AGGREGATIONS)
    problem = diff(expected, stored(db["aggregations"], AGGREGATIONS))
    state = offsets_state(db, name)
    assert not problem, (f"seed {seed}: stored documents differ from the truth\n{problem}\n"
                         f"offsets: {state}\n" + "\n".join(events))
    assert state["generator/0"][0] == n and state["generator/0"][1] is None, state


@pytest.mark.parametrize("mode", ["fast", "paced"])
def test_kill9_generator_exact(mongo_server, runs, tmp_path, mode):
    """Flushes by size at full speed ("fast"), or by time at a fixed rate ("paced": a replayed
    flush is cut by the flush interval at other points than the original)."""
    seed = seed_for(f"test_kill9_generator_exact[{mode}]")
    rng = random.Random(seed)
    n = 20_000 if mode == "fast" else 9_000
    source = {"seed": rng.randrange(10**6), "users": 300, "items": 40, "rate": 0 if mode == "fast" else 3000,
              "max_records": n, "batch_size": 500 if mode == "fast" else 250}
    flush = {"max_records": 1000, "interval": "1s"} if mode == "fast" else {"max_records": 50_000,
                                                                             "interval": "0.25s"}
    name = f"crash_{mode}_{seed}"
    database = f"crash_{mode}_{seed}"
    config = write_yaml(tmp_path / "pipeline.yaml", pipeline(name, {"type": "generator", **source},
                                                             mongo_server.uri, database, AGGREGATIONS, flush))
    client = mongo_server.client()
    db = client[database]
    state = lambda: offsets_state(db, name).get("generator/0") or (0, None, 0)  # noqa: E731
    epochs = [0]

    def ready() -> bool:  # a new epoch: this start took the partition
        if (state()[2] or 0) > epochs[0]:
            epochs[0] = state()[2]
            return True
        return False

    events = kill_loop(lambda: runs.start(config, "streamkit"), rng, kills=6, low=0.0, high=1.0, timeout=120,
                       open_intents=lambda: state()[1], progress=(lambda: state()[0] or 0, n),
                       ready=ready, after_kill=lambda: f"offsets {offsets_state(db, name)}")
    for e in events:
        print(e)
    _check(db, source, n, name, events, seed)
    client.close()
