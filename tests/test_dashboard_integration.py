"""The dashboard against the real MongoDB-wire test server (SecantusDB at MONGO_URI).

The bound test watches every command the dashboard sends (pymongo command
monitoring; mongomock emits no events) and counts the documents the server
returns: per request at most its ``limit`` plus a constant, on a collection of
20,000 aggregate documents.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
import threading
import urllib.request
import uuid

import pytest
from pymongo import ASCENDING, DESCENDING, MongoClient, monitoring

from streamkit import Pipeline
from streamkit_dashboard.meta import AggMeta
from streamkit_dashboard.server import DashboardServer
from streamkit_dashboard.status import STATUS_COLLECTION, baseline, counter_id
from streamkit_dashboard.store import DashboardStore
from streamkit_mongodb import document_id

from test_dashboard import SOURCE_DIR, XSS_SCRIPT, check_counters, check_top_lists, config, make_records, truth

pytestmark = [pytest.mark.integration,
              # kafka-python loads its protocol schemas with a deprecated importlib call
              pytest.mark.filterwarnings("ignore:.*is deprecated. Use files:DeprecationWarning")]
UTC = dt.timezone.utc


@pytest.fixture
def database(mongo_uri):
    name = f"dash_{uuid.uuid4().hex[:10]}"
    client = MongoClient(mongo_uri, tz_aware=True, serverSelectionTimeoutMS=5000)
    yield client, name
    client.drop_database(name)
    client.close()


class Returned(monitoring.CommandListener):
    """Counts commands and the documents their replies carry."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.commands: list[str] = []
        self.documents = 0

    def started(self, event) -> None:
        pass

    def succeeded(self, event) -> None:
        reply = event.reply
        n = 0
        if "cursor" in reply:
            n = len(reply["cursor"].get("firstBatch", ())) + len(reply["cursor"].get("nextBatch", ()))
        elif "values" in reply:  # distinct
            n = len(reply["values"])
        elif event.command_name == "count":
            n = 1
        with self.lock:
            self.commands.append(event.command_name)
            self.documents += n

    def failed(self, event) -> None:
        with self.lock:
            self.commands.append(event.command_name + " (failed)")


USERS, ITEMS, TYPES, WINDOWS = 10_000, 5_000, 5, 1_000
START = dt.datetime(2026, 1, 1, tzinfo=UTC)


def _seed(client: MongoClient, dbname: str) -> dict:
    """20,000 documents as the mongodb sink writes them, their indexes, a status document and counters."""
    rng = random.Random(3)
    coll = client[dbname]["aggs"]
    coll.create_index([("aggregation", ASCENDING), ("window.start", DESCENDING)])
    coll.create_index([("aggregation", ASCENDING), ("count", DESCENDING)])
    docs, users, items = [], {}, {}
    for i, n in enumerate(rng.sample(range(1, 10 * USERS), USERS)):
        key = {"user_id": XSS_SCRIPT if i == 0 else f"u{i:05d}"}
        users[key["user_id"]] = n
        docs.append({"_id": document_id("per_user", key, None), "aggregation": "per_user", "key": key,
                     "window": {"start": None, "end": None}, "count": n})
    for i, n in enumerate(rng.sample(range(1, 10 * ITEMS), ITEMS)):
        key = {"item_id": f"i{i:04d}"}
        items[key["item_id"]] = n
        docs.append({"_id": document_id("per_item", key, None), "aggregation": "per_item", "key": key,
                     "window": {"start": None, "end": None}, "count": n})
    for w in range(WINDOWS):
        start = START + dt.timedelta(minutes=w)
        for t in range(TYPES):
            key = {"interaction_type": f"type{t}"}
            docs.append({"_id": document_id("per_type", key, start.timestamp()), "aggregation": "per_type",
                         "key": key, "window": {"start": start, "end": start + dt.timedelta(minutes=1)},
                         "count": (w * 7 + t * 13) % 50 + 1})
    assert len(docs) == 20_000
    for i in range(0, len(docs), 5000):
        coll.insert_many(docs[i:i + 5000], ordered=False)
    metas = [AggMeta("per_user", ["user_id"], ["count"], "count", type="count"),
             AggMeta("per_item", ["item_id"], ["count"], "count", type="count"),
             AggMeta("per_type", ["interaction_type"], ["count"], "count", "tumbling", 60.0, 60.0, type="count")]
    status = client[dbname][STATUS_COLLECTION]
    now = dt.datetime.now(UTC)
    status.insert_one({"_id": "process|seed|h|1", "kind": "process", "pipeline": "seed", "collection": "aggs",
                       "host": "h", "pid": 1, "state": "running", "updated_at": now, "last_flush": now,
                       "records_read": 5, "records_per_second": 1.0, "dead_letters": 0, "flushes": 1,
                       "flush_interval": 1.0, "lag": [{"partition": "t/0", "lag": 3}], "lag_total": 3,
                       "aggregations": [m.to_json() for m in metas]})
    for m in metas:
        status.insert_one({"_id": counter_id("aggs", m.name), "kind": "counter", "collection": "aggs",
                           "aggregation": m.name, **baseline(coll, m)})
    return {"users": users, "items": items}


def test_every_request_reads_a_bounded_number_of_documents(database, mongo_uri):
    client, dbname = database
    seeded = _seed(client, dbname)
    listener = Returned()
    watched = MongoClient(mongo_uri, tz_aware=True, event_listeners=[listener])
    server = DashboardServer(DashboardStore(watched[dbname], "aggs"), port=0)
    server.start()

    def fetch(path: str) -> tuple[dict | str, int, list[str]]:
        listener.reset()
        with urllib.request.urlopen(server.url + path, timeout=120) as r:
            body = r.read().decode()
        data = json.loads(body) if r.headers["Content-Type"].startswith("application/json") else body
        return data, listener.documents, list(listener.commands)

    try:
        fetch("api/aggregations")  # the standalone dashboard learns the aggregations once (cached)
        summary, n, cmds = fetch("api/summary?top=10")
        # 3 counters + 10 top users + 10 top items + 10 fewest items + 1 newest window + 30 windows x 5 types
        # + 1 status document = 185 documents of 20,000
        assert n <= 3 * 10 + 150 + 40, (n, cmds)
        assert "getMore" not in cmds
        users, items = seeded["users"], seeded["items"]
        assert summary["total_interactions"] == sum(users.values())
        assert summary["distinct_users"] == USERS
        assert summary["users"]["top"] == [{"key": k, "count": v} for k, v in
                                           sorted(users.items(), key=lambda kv: -kv[1])[:10]]
        assert summary["fewest_interacted_item"] == {"key": min(items, key=items.get), "count": min(items.values())}
        assert len(summary["types_over_time"]["windows"]) == 30
        assert summary["health"]["lag"] == 3
        for limit in (1, 10, 100, 1000):
            page, n, cmds = fetch(f"api/aggregations/per_user?limit={limit}")
            assert len(page["rows"]) == limit and n <= limit + 5, (limit, n, cmds)
            page, n, cmds = fetch(f"api/aggregations/per_user?limit={limit}&order=asc")
            assert n <= limit + 5, (limit, n, cmds)
        page, n, cmds = fetch("api/aggregations/per_type?limit=3")
        assert len(page["rows"]) == 3 and n <= 3 + 5, (n, cmds)
        assert page["window"]["start"] == (START + dt.timedelta(minutes=WINDOWS - 1)).isoformat().replace("+00:00", "Z")
        _, n, cmds = fetch("api/aggregations/per_type?limit=2&window=2026-01-01T05:00:00Z")
        assert n <= 2 + 5, (n, cmds)
        _, n, cmds = fetch("api/aggregations")
        assert n <= 10, (n, cmds)
        _, n, cmds = fetch("api/alerts?limit=5")
        assert n <= 5 + 2, (n, cmds)
        text, n, cmds = fetch("metrics")
        assert n <= 30 and 'streamkit_aggregation_keys{aggregation="per_user"} 10000.0' in text, (n, cmds)
        _, n, cmds = fetch("healthz")
        assert n <= 1
    finally:
        server.stop()
        watched.close()


def test_a_pipeline_keeps_exact_counters_and_fires_alerts_on_the_real_server(database, mongo_uri, monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(__file__), "browser"))
    client, dbname = database
    records = make_records()
    t = truth(records)
    cfg = config(records, mongo_uri, alerts={"rules": [{"name": "hot", "aggregation": "interactions_per_item",
                                                        "above": 30}]})
    cfg["sinks"][0]["database"] = dbname
    cfg["source"]["batch_size"] = 100
    cfg["flush"] = {"max_records": 100}
    half = dict(cfg, source=dict(cfg["source"], records=records[:270], partition="records/0"))
    rest = dict(cfg, source=dict(cfg["source"], records=records[270:], partition="records/1"))
    runs = [threading.Thread(target=Pipeline.from_dict(c).run) for c in (half, rest)]
    for r in runs:
        r.start()
    for r in runs:
        r.join()
    s = DashboardStore(client[dbname], "aggs").summary(3)
    assert s["total_interactions"] == 540 and s["distinct_users"] == 32 and s["users"]["exact"] is True
    assert s["users"]["top"] == [{"key": k, "count": n} for k, n in t["users"].most_common(3)]
    assert s["items"]["distinct"] == len(t["items"])
    assert [p["records_read"] for p in s["health"]["processes"]] == [270, 270]
    alerts = s["alerts"]["recent"]
    assert sorted(a["key"]["item_id"] for a in alerts) == sorted(k for k, n in t["items"].items() if n > 30)


def test_counters_stay_exact_across_processes_and_late_starts(database, mongo_uri, tmp_path):
    """A first run without a dashboard section, then two partitions with one as two processes at
    once, creating and updating the same documents: the counters start from what is stored and then
    follow every flush, whoever created a document (one mongomock store serves one writer, so this
    needs a real server)."""
    client, dbname = database
    records = make_records()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SOURCE_DIR, os.environ.get("PYTHONPATH", "")])}

    def start(part: str, recs: list[dict], **extra) -> subprocess.Popen:
        cfg = config(recs, mongo_uri, **extra)
        cfg["sinks"][0]["database"] = dbname
        cfg["source"].update(partition=part, batch_size=7)
        cfg["flush"] = {"max_records": 7}
        path = tmp_path / f"{part.replace('/', '-')}.yaml"
        path.write_text(json.dumps(cfg))  # JSON is YAML
        return subprocess.Popen([sys.executable, "-m", "streamkit", "run", str(path), "-q"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def finish(*procs: subprocess.Popen) -> None:
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err

    finish(start("records/0", records[:200], dashboard=None))
    # the rest alternately: both processes meet at the same documents, new windows among them
    finish(start("records/1", records[200::2]), start("records/2", records[201::2]))
    check_counters(client[dbname], records)


@pytest.mark.parametrize("ascending", [False, True])
def test_top_lists_stay_exact_on_the_real_server(database, ascending):
    client, dbname = database
    check_top_lists(client[dbname], ascending)


def test_consumer_lag_of_a_kafka_source(kafka_bootstrap, monkeypatch, kafka_client):
    bootstrap = kafka_bootstrap
    import time

    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    from streamkit_dashboard import status
    from streamkit_mongodb import connect

    monkeypatch.setattr(status, "LAG_EVERY", 0.1)
    topic = f"dash_lag_{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 2, 1)], timeout_ms=20000)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for i in range(2000):
            producer.send(topic, json.dumps({"user_id": f"u{i % 7}"}).encode(), partition=i % 2)
        producer.flush()
        uri = f"mongomock://lag-{uuid.uuid4().hex}"
        cfg = {"name": "lagging", "source": {"type": "kafka", "client": kafka_client, "topic": topic,
                                             "bootstrap_servers": bootstrap,
                                             "group_id": topic, "max_poll_records": 100},
               "aggregations": [{"name": "per_user", "type": "count", "group_by": ["user_id"]}],
               "sinks": [{"type": "mongodb", "uri": uri}], "flush": {"interval": "0.2s"},
               "dashboard": {"serve": False}}
        p = Pipeline.from_dict(cfg)
        t = threading.Thread(target=p.run, kwargs={"duration": 60})
        t.start()
        store = DashboardStore(connect(uri)["interaction_db"], "aggregations")
        try:
            deadline = time.monotonic() + 50
            while time.monotonic() < deadline:
                health = store.health()
                procs = health["processes"]
                if procs and procs[0]["records_read"] == 2000 and procs[0]["lag"] and health["lag"] == 0:
                    break
                time.sleep(0.1)
            (proc,) = health["processes"]
            assert proc["lag"] == [{"partition": f"{topic}/0", "lag": 0}, {"partition": f"{topic}/1", "lag": 0}]
            assert health["lag"] == 0 and proc["records_read"] == 2000
        finally:
            p.stop()
            t.join(timeout=30)
        assert store.summary(1)["total_interactions"] == 2000
    finally:
        producer.close()
        admin.delete_topics([topic])
        admin.close()
