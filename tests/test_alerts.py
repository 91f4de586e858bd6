"""Alerts end to end: rules over stored values, fired once per key and window, delivered to destinations."""
from __future__ import annotations

import collections
import datetime as dt
import http.server
import json
import logging
import os
import subprocess
import sys
import threading
import types
import uuid

import pytest

from streamkit import ConfigError, Option, Pipeline, hookimpl
from streamkit_alerts import AlertDestination
from streamkit.plugins import build_registry, get_plugin_manager
from streamkit_dashboard.store import DashboardStore
from streamkit_mongodb import connect

from test_dashboard import config, make_records

UTC = dt.timezone.utc


class Webhook:
    """A local HTTP server on 127.0.0.1 that records every POSTed JSON body."""

    def __init__(self, status: int = 204) -> None:
        self.received: list[dict] = []
        self.paths: list[str] = []
        self.headers: list[dict] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(json.loads(body))
                outer.paths.append(self.path)
                outer.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Webhook":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def uri():
    return f"mongomock://alerts-{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def testsource(monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(os.path.dirname(__file__), "browser"))


def _window(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts).replace(second=0)


def expected_alerts(records: list[dict], flush_size: int) -> dict:
    """Replay the flushes in plain Python: after each one, every touched key whose merged value is
    past a threshold fires once. Returns {(rule, key, window start): value at firing}."""
    count_item: collections.Counter = collections.Counter()
    count_type: collections.Counter = collections.Counter()
    dur: dict = collections.defaultdict(lambda: [0, 0])
    fired: dict = {}
    for start in range(0, len(records), flush_size):
        part = records[start:start + flush_size]
        for r in part:
            count_item[r["item_id"]] += 1
            count_type[(r["interaction_type"], _window(r["timestamp"]))] += 1
            dur[r["item_id"]][0] += r["duration_ms"]
            dur[r["item_id"]][1] += 1
        for item in {r["item_id"] for r in part}:
            k = ("hot item", (("item_id", item),), None)
            if count_item[item] > 30 and k not in fired:
                fired[k] = count_item[item]
            s, c = dur[item]
            k = ("quick item", (("item_id", item),), None)
            if s / c < 150 and k not in fired:
                fired[k] = s / c
        for typ, w in {(r["interaction_type"], _window(r["timestamp"])) for r in part}:
            k = ("busy type", (("interaction_type", typ),), w.isoformat().replace("+00:00", "Z"))
            if count_type[(typ, w)] > 25 and k not in fired:
                fired[k] = count_type[(typ, w)]
    return fired


RULES = [
    {"name": "hot item", "aggregation": "interactions_per_item", "above": 30},
    {"name": "busy type", "aggregation": "interactions_per_type", "field": "count", "above": 25},
    {"name": "quick item", "aggregation": "duration_per_item", "field": "avg", "below": 150},
]


def got(alerts: list[dict]) -> dict:
    return {(a["rule"], tuple(sorted(a["key"].items())), a["window"]["start"]): a["value"] for a in alerts}


def test_alerts_end_to_end(uri, caplog):
    records = make_records()
    truth = expected_alerts(records, 50)
    assert len(truth) > 12  # every rule fires, several times
    assert {k[0] for k in truth} == {"hot item", "busy type", "quick item"}
    with Webhook() as hook, caplog.at_level(logging.WARNING, logger="streamkit.alerts"):
        cfg = config(records, uri, alerts={"rules": RULES, "destinations": [
            {"type": "log"}, {"type": "webhook", "url": hook.url, "headers": {"X-Team": "data"}, "timeout": "60s"}]})
        result = Pipeline.from_dict(cfg).run()
    assert result.records_read == 540
    # the webhook got each alert exactly once, with the merged value at the flush that crossed
    assert len(hook.received) == len(truth)
    assert got(hook.received) == truth
    assert set(hook.paths) == {"/hook"} and all(h["X-Team"] == "data" for h in hook.headers)
    a = next(x for x in hook.received if x["rule"] == "hot item" and x["key"] == {"item_id": "i-top"})
    assert a["message"] == f"interactions_per_item count = {a['value']} is above 30 for item_id=i-top (all-time)"
    assert (a["aggregation"], a["field"], a["op"], a["threshold"], a["pipeline"], a["collection"]) == \
        ("interactions_per_item", "count", "above", 30, "shop", "aggs")
    b = next(x for x in hook.received if x["rule"] == "busy type")
    start = dt.datetime.fromisoformat(b["window"]["start"].replace("Z", "+00:00"))
    assert b["window"]["end"] == (start + dt.timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    # the log destination wrote one line per alert
    lines = [r.getMessage() for r in caplog.records if r.name == "streamkit.alerts"]
    assert sorted(lines) == sorted(f"alert {x['rule']}: {x['message']}" for x in hook.received)
    # stored next to the aggregates, and shown by the dashboard
    stored = list(connect(uri)["shopdb"]["streamkit_alerts"].find())
    assert len(stored) == len(truth)
    store = DashboardStore(connect(uri)["shopdb"], "aggs")
    shown = store.recent_alerts(1000)
    assert shown["total"] == len(truth)
    assert got(shown["recent"]) == truth
    fired_at = [x["fired_at"] for x in shown["recent"]]
    assert fired_at == sorted(fired_at, reverse=True)
    assert store.summary(1)["alerts"]["total"] == len(truth)


def test_rule_sees_the_merged_value_and_fires_once_across_runs(uri):
    """Three runs (three processes' worth of partitions) feed one item: 25, then +10, then +10.
    Only the second crosses 30, and it sees 35 although its own delta is 10."""
    rec = {"user_id": "u", "item_id": "hot", "interaction_type": "view", "timestamp": 0, "duration_ms": 500}
    with Webhook() as hook:
        for part, n in (("records/0", 25), ("records/1", 10), ("records/2", 10)):
            cfg = config([rec] * n, uri, alerts={"rules": RULES[:1], "destinations": [{"type": "webhook",
                                                                                       "url": hook.url,
                                                                                       "timeout": "60s"}]})
            cfg["source"]["partition"] = part
            Pipeline.from_dict(cfg).run()
            assert len(hook.received) == (0 if part == "records/0" else 1)
    assert got(hook.received) == {("hot item", (("item_id", "hot"),), None): 35}


@pytest.mark.integration
def test_concurrent_processes_fire_an_alert_once(mongo_uri, tmp_path):
    """Three ``streamkit run`` processes at once, one partition each, feed one item on the real
    server (one mongomock store serves one writer): the rule fires once, whoever crosses it."""
    from pymongo import MongoClient
    rec = {"user_id": "u", "item_id": "hot", "interaction_type": "view", "timestamp": 0, "duration_ms": 500}
    parts, per_part, threshold = ("records/0", "records/1", "records/2"), 40, RULES[0]["above"]
    database = f"alerts_{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.join(os.path.dirname(__file__), "browser"),
                                                        os.environ.get("PYTHONPATH", "")])}
    client = MongoClient(mongo_uri, tz_aware=True, serverSelectionTimeoutMS=10000)
    try:
        with Webhook() as hook:
            procs = []
            for part in parts:
                cfg = config([rec] * per_part, mongo_uri, alerts={"rules": RULES[:1], "destinations": [
                    {"type": "webhook", "url": hook.url, "timeout": "60s"}]})
                cfg["sinks"][0]["database"] = database
                cfg["source"].update(partition=part, batch_size=3)
                cfg["flush"] = {"max_records": 3}
                path = tmp_path / f"{part.replace('/', '-')}.yaml"
                path.write_text(json.dumps(cfg))  # JSON is YAML
                procs.append(subprocess.Popen([sys.executable, "-m", "streamkit", "run", str(path), "-q"],
                                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
            for proc in procs:
                _, err = proc.communicate(timeout=120)
                assert proc.returncode == 0, err
        assert len(hook.received) == 1 and hook.received[0]["value"] > threshold
        db = client[database]
        assert db["streamkit_alerts"].count_documents({}) == 1
        assert db["aggs"].find_one({"aggregation": "interactions_per_item"})["count"] == per_part * len(parts)
    finally:
        client.drop_database(database)
        client.close()


def test_a_failing_webhook_does_not_stop_the_pipeline(uri, caplog):
    with Webhook(status=500) as hook, caplog.at_level(logging.ERROR, logger="streamkit.alerts"):
        cfg = config(make_records(), uri, alerts={"rules": RULES[:1], "destinations": [
            {"type": "webhook", "url": hook.url, "retries": 1, "timeout": "2s"}]})
        result = Pipeline.from_dict(cfg).run()
    assert result.records_read == 540
    alerts = [k for k in expected_alerts(make_records(), 50) if k[0] == RULES[0]["name"]]
    assert len(hook.received) == len(alerts) * 2  # each tried twice
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == len(alerts)
    assert errors[0].startswith(f"alerts: alerts.destinations[0]: POST to {hook.url} failed after 2 attempts: "
                                "HTTP Error 500")
    assert connect(uri)["shopdb"]["streamkit_alerts"].count_documents({}) == len(alerts)


@pytest.mark.parametrize("alerts,message", [
    ({"rules": [{"aggregation": "nope", "above": 1}]},
     "alerts.rules[0].aggregation: no aggregation named 'nope' (known: interactions_per_user, "
     "interactions_per_item, duration_per_item, interactions_per_type)"),
    ({"rules": [{"aggregation": "duration_per_item", "field": "max", "above": 1}]},
     "alerts.rules[0].field: aggregation 'duration_per_item' has no field 'max' (its fields: avg, sum, count)"),
    ({"rules": [{"aggregation": "interactions_per_item", "above": 1}], "destinations": [{"type": "pager"}]},
     "alerts.destinations[0].type: unknown alert destination type 'pager'; known: kafka, log, webhook"),
    ({"rules": [{"aggregation": "interactions_per_item", "above": 1}], "destinations": [{"type": "webhook"}]},
     "alerts.destinations[0].url: missing required option (a string: http:// or https:// URL to POST to)"),
    ({"rules": [{"aggregation": "interactions_per_item", "above": 1}],
      "destinations": [{"type": "webhook", "url": "ftp://x"}]},
     "alerts.destinations[0].url: expected an http:// or https:// URL, got 'ftp://x'"),
    ({"rules": [{"aggregation": "interactions_per_item", "above": 1}],
      "destinations": [{"type": "log", "colour": "red"}]},
     "alerts.destinations[0].colour: unknown option; known options: level"),
])
def test_rule_and_destination_errors_name_the_key(uri, alerts, message):
    p = Pipeline.from_dict(config(make_records()[:10], uri, alerts=alerts))
    with pytest.raises(ConfigError) as e:
        p.run()
    assert str(e.value) == "<dict>: " + message


@pytest.mark.parametrize("rules,message", [
    ([], "expected at least one rule"),
    ([{"aggregation": "a", "above": 1, "below": 2}], "rule 0: needs exactly one of above: <number> or below: <number>"),
    ([{"aggregation": "a"}], "rule 0: needs exactly one of above: <number> or below: <number>"),
    ([{"aggregation": "a", "above": "many"}], "rule 0: above must be a number, got 'many'"),
    ([{"aggregation": "a", "above": True}], "rule 0: above must be a number, got True"),
    ([{"above": 1}], "rule 0: needs aggregation: <name of an aggregation>"),
    ([{"aggregation": "a", "above": 1, "windw": "1m"}],
     "rule 0: unknown key 'windw' (known: above, aggregation, below, field, name)"),
    ([{"name": "x", "aggregation": "a", "above": 1}, {"name": "x", "aggregation": "b", "above": 1}],
     "rule 1: duplicate rule name 'x'"),
])
def test_rules_are_checked_with_the_file(uri, rules, message):
    with pytest.raises(ConfigError) as e:
        Pipeline.from_dict(config([], uri, alerts={"rules": rules}))
    assert str(e.value) == f"<dict>: alerts.rules: {message}"


def test_alerts_need_a_mongodb_sink(uri):
    cfg = config(make_records()[:10], uri, sinks=[{"type": "discard"}], dashboard=None,
                 alerts={"rules": RULES[:1]})
    with pytest.raises(ConfigError, match=r"alerts: alerts compare stored values, so they need a mongodb sink"):
        Pipeline.from_dict(cfg).run()


def test_alert_destinations_come_from_plugins(uri):
    received: list = []

    class Pager(AlertDestination):
        """Pages someone."""

        options = {"who": Option(str, "on-call", "who to page")}

        def open(self) -> None:
            received.append(("open", self.config["who"]))

        def send(self, alerts: list[dict]) -> None:
            received.extend(("send", a["rule"], a["key"]["item_id"], a["value"]) for a in alerts)

        def close(self) -> None:
            received.append(("close",))

    mod = types.ModuleType("pager_plugin")
    mod.register_alert_destinations = hookimpl(lambda register: register("pager", Pager))
    pm = get_plugin_manager()
    pm.register(mod, name="pager_plugin")
    try:
        reg = build_registry(pm)
        assert reg.known("alert_destination") == ["kafka", "log", "pager", "webhook"]
        assert reg.get("alert_destination", "pager").plugin == "pager_plugin"
        assert reg.get("alert_destination", "webhook").plugin == "alerts"
        cfg = config(make_records(), uri, alerts={"rules": RULES[:1], "destinations": [{"type": "pager",
                                                                                        "who": "ana"}]})
        Pipeline.from_dict(cfg).run()
    finally:
        pm.unregister(name="pager_plugin")
    truth = {k[1][0][1]: v for k, v in expected_alerts(make_records(), 50).items() if k[0] == "hot item"}
    assert received[0] == ("open", "ana") and received[-1] == ("close",)
    assert sorted(received[1:-1]) == sorted(("send", "hot item", k, v) for k, v in truth.items())


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:.*is deprecated. Use files:DeprecationWarning")
def test_kafka_destination(uri, kafka_bootstrap):
    bootstrap = kafka_bootstrap
    from kafka import KafkaConsumer

    topic = f"alerts-{uuid.uuid4().hex[:12]}"
    cfg = config(make_records(), uri, alerts={"rules": RULES, "destinations": [
        {"type": "kafka", "topic": topic, "bootstrap_servers": bootstrap}]})
    Pipeline.from_dict(cfg).run()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    try:
        messages = list(consumer)
    finally:
        consumer.close()
    truth = expected_alerts(make_records(), 50)
    assert len(messages) == len(truth)
    values = [json.loads(m.value) for m in messages]
    assert got(values) == truth
    assert [m.key.decode() for m in messages] == [v["id"] for v in values]


def test_destination_errors_in_a_file_name_its_line(uri, tmp_path):
    """Destination options are checked with the core's check_options: file, line and key."""
    import yaml

    cfg = config(make_records()[:10], uri, alerts={"rules": RULES[:1],
                                                   "destinations": [{"type": "log"}, {"type": "log", "colour": "red"}]})
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(cfg, sort_keys=False))
    lines = f.read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "colour:" in text)
    with pytest.raises(ConfigError) as e:
        Pipeline.from_yaml(f).run()
    assert str(e.value) == f"{f}:{line}: alerts.destinations[1].colour: unknown option; known options: level"


def test_rules_on_sketch_values_see_the_merged_estimate(uri):
    """A p95 rule sees the quantile of everything merged, not of one flush; a distinct rule the
    distinct users of every flush together."""
    recs = ([{"user_id": f"u{i % 5}", "item_id": "slow", "interaction_type": "view", "timestamp": 0,
              "duration_ms": 100} for i in range(40)]
            + [{"user_id": f"u{i}", "item_id": "slow", "interaction_type": "view", "timestamp": 0,
                "duration_ms": 10_000} for i in range(10)])
    rules = [{"name": "slow p95", "aggregation": "duration_pct", "field": "p95", "above": 5000},
             {"name": "many users", "aggregation": "users_per_item", "above": 8}]
    cfg = config(recs, uri, alerts={"rules": rules, "destinations": [{"type": "log"}]})
    cfg["aggregations"] = [
        {"name": "duration_pct", "type": "percentiles", "field": "duration_ms", "group_by": ["interaction_type"]},
        {"name": "users_per_item", "type": "distinct", "field": "user_id", "group_by": ["item_id"]}]
    Pipeline.from_dict(cfg).run()
    fired = {(a["rule"], a["value"]) for a in connect(uri)["shopdb"]["streamkit_alerts"].find()}
    names = {r for r, _ in fired}
    assert names == {"slow p95", "many users"}, fired
    assert dict(fired)["many users"] in (9, 10)  # u0..u9: the flush that passed 8
    assert dict(fired)["slow p95"] == pytest.approx(10_000, rel=0.01)
