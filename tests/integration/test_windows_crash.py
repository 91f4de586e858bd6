"""Windows that close, under deterministic crashes against the real MongoDB-wire server.

The crash points of ``streamkit_crashpoints`` end ``streamkit run`` with ``os._exit`` in the
write path (intents stored, mid bulk write, before the intents are finished) and in the closing
step (windows marked final but not yet emitted; emitted but how far not yet stored). The input
has late records (every 7th event of a partition is 2.5 s behind). After each crash the pipeline
starts again: the stored values, the final windows and what ``emit: final`` wrote (de-duplicated
by the window's id) equal one pass over the input with the same lateness rule
(tests/truth.py ``closing_truth``), and a window marked final before a crash never changed.
"""
from __future__ import annotations

import orjson
import pytest

from conftest import unique
from processes import dealt, pipeline, write_yaml
from streamkit_crashpoints import CRASH_EXIT
from truth import closing_truth, diff, finals, stored

pytestmark = pytest.mark.integration

AGGREGATIONS = [
    {"name": "per_type_1s", "type": "count", "group_by": ["interaction_type"], "window": 1, "lateness": 0.5},
    {"name": "duration_3s_every_1s", "type": "sum", "field": "duration_ms", "group_by": ["interaction_type"],
     "window": (3, 1), "lateness": 1},
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
]
DEALT = {"type": "dealt", "seed": 11, "n": 3000, "partitions": 3, "batch": 100, "lag_every": 7}
SCENARIOS = {
    "after_intents": ["after_intents@2"],
    "mid_bulk": ["mid_bulk@3"],
    "before_finish": ["before_finish@2"],
    "after_close": ["after_close@2", "after_close@1"],
    "before_keep_emitted": ["before_keep_emitted@2"],
}


def _config(tmp_path, mongo_uri: str, database: str, name: str) -> dict:
    cfg = pipeline(name, DEALT, mongo_uri, database, AGGREGATIONS, {"max_records": 600, "interval": "60s"})
    cfg["plugins"] = ["streamkit_crashpoints"]
    cfg["sinks"][0]["type"] = "crashing_mongodb"
    cfg["sinks"].append({"type": "jsonl", "path": str(tmp_path / "closed.jsonl"), "emit": "final"})
    return cfg


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_windows_close_exactly_across_crashes(mongo_uri, mongo_db, runs, tmp_path, scenario):
    name = unique("closing")
    config = write_yaml(tmp_path / "p.yaml", _config(tmp_path, mongo_uri, mongo_db.name, name))
    coll = mongo_db["aggregations"]
    final_before: dict = {}
    for point in SCENARIOS[scenario]:
        run = runs.start(config, "streamkit", env={"STREAMKIT_CRASH_AT": point})
        code = run.wait(120)
        assert code == CRASH_EXIT, f"the crash point {point} was not reached (exit {code})\n{run.tail()}"
        final_before.update({d["_id"]: d for d in coll.find({"final": True}, {"updated_at": 0})})
    run = runs.start(config, "streamkit", env={"STREAMKIT_CRASH_AT": ""})
    assert run.wait(120) == 0, run.tail()

    parts = dealt(DEALT["n"], DEALT["seed"], DEALT["partitions"], DEALT["lag_every"])
    expected, closed, late = closing_truth(parts, AGGREGATIONS)
    assert late["per_type_1s"] > 0, "the input has no late record: the lateness rule was not exercised"
    problem = diff(expected, stored(coll, AGGREGATIONS))
    assert not problem, problem
    assert finals(coll) == closed
    assert final_before, "no window was final before the crash: the crash came too early to test it"
    for _id, doc in final_before.items():
        assert coll.find_one({"_id": _id}, {"updated_at": 0}) == doc, f"final window {_id} changed"

    # emit: final — at least once, each window with its final values; de-duplicated by id, the truth
    lines = [orjson.loads(x) for x in (tmp_path / "closed.jsonl").read_bytes().splitlines()]
    by_id: dict = {}
    for d in lines:
        assert by_id.setdefault(d["id"], d) == d, "a window emitted twice with different values"
    docs = {d["_id"]: d for d in coll.find({"final": True, "window.start": {"$ne": None}})}
    assert set(by_id) == set(docs)
    fields = {"per_type_1s": ("count",), "duration_3s_every_1s": ("sum",)}
    for _id, d in by_id.items():
        assert {f: d[f] for f in fields[d["aggregation"]]} == {f: docs[_id][f] for f in fields[d["aggregation"]]}
    repeated = len(lines) - len(by_id)
    print(f"{scenario}: {repeated} windows emitted twice")
    if scenario == "before_keep_emitted":  # written, then the crash before storing how far: again
        assert repeated > 0, "the crash came before any window was emitted"
