"""The dashboard's JSON API, page and server, with values checked against plain Python over the same records."""
from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from streamkit import ConfigError, Pipeline
from streamkit_dashboard import server_for
from streamkit_dashboard.meta import SeedFields
from streamkit_dashboard.server import DashboardError, DashboardServer
from streamkit_dashboard.store import DashboardStore
from streamkit_mongodb import connect
from truth import as_pipeline, truth as reference_truth

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.join(HERE, "browser")
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
XSS_SCRIPT = "<script>alert(1)</script>"
XSS_IMG = '"><img src=x onerror=alert(1)>'
TYPES = ["view", "view", "view", "click", "click", "like"]


# -- the records and their truth --------------------------------------------------------
def make_records() -> list[dict]:
    """540 records; user and item counts all differ, so every top-N list has one right answer."""
    users = [f"u{k:02d}" for k in range(1, 31) for _ in range(k)] + [XSS_SCRIPT] * 40 + [XSS_IMG] * 35
    items = [f"i{k:02d}" for k in range(1, 32) for _ in range(k)] + ["i-top"] * 44
    assert len(users) == len(items) == 540
    rng = random.Random(7)
    rng.shuffle(users)
    rng.shuffle(items)
    return [{"user_id": u, "item_id": it, "interaction_type": TYPES[i % 6],
             "timestamp": (START + dt.timedelta(seconds=i)).isoformat(), "duration_ms": (i * 37) % 1000}
            for i, (u, it) in enumerate(zip(users, items))]


def iso(d: dt.datetime) -> str:
    return d.isoformat().replace("+00:00", "Z")


AGGREGATIONS = [  # the pipeline's aggregations (config below), windows in seconds, for the truth
    {"name": "interactions_per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "interactions_per_item", "type": "count", "group_by": ["item_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "interactions_per_type", "type": "count", "group_by": ["interaction_type"], "window": 60},
]


def truth(records: list[dict]) -> dict:
    """The reference truth (tests/truth.py) in the shapes the dashboard shows."""
    t = reference_truth(records, AGGREGATIONS)
    users, items = collections.Counter(), collections.Counter()
    per_window: dict = collections.defaultdict(collections.Counter)
    dur: dict = {}
    for (name, key, start), fields in t.items():
        k = dict(key)
        if name == "interactions_per_user":
            users[k["user_id"]] = fields["count"]
        elif name == "interactions_per_item":
            items[k["item_id"]] = fields["count"]
        elif name == "duration_per_item":
            dur[k["item_id"]] = [fields["sum"], fields["count"]]
        else:
            per_window[dt.datetime.fromtimestamp(start, dt.timezone.utc)][k["interaction_type"]] = fields["count"]
    return {"users": users, "items": items, "per_window": per_window, "duration": dur}


def config(records: list[dict], uri: str, **extra) -> dict:
    cfg = {
        "name": "shop",
        "plugins": ["streamkit_testsource"],
        "source": {"type": "records", "records": records, "batch_size": 50},
        "aggregations": as_pipeline(AGGREGATIONS),
        "sinks": [{"type": "mongodb", "uri": uri, "database": "shopdb", "collection": "aggs"}],
        "flush": {"max_records": 50, "interval": "10s"},
        "dashboard": {"serve": False},
    }
    cfg.update(extra)
    return cfg


@pytest.fixture
def testsource(monkeypatch):
    monkeypatch.syspath_prepend(SOURCE_DIR)


@pytest.fixture
def uri():
    return f"mongomock://dash-{uuid.uuid4().hex}"


@contextlib.contextmanager
def standalone(uri: str, token: str | None = None, database: str = "shopdb", collection: str = "aggs"):
    store = DashboardStore(connect(uri)[database], collection)
    server = DashboardServer(store, host="127.0.0.1", port=0, token=token, refresh=0.5)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def http(url: str, method: str = "GET", headers: dict | None = None, data: bytes | None = None):
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:  # generous: CI machines are shared
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of an exposition text, labels in any order (None: no such sample)."""
    from prometheus_client.parser import text_string_to_metric_families
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return s.value
    return None


def get_json(url: str, **kw) -> tuple[int, dict]:
    status, _, body = http(url, **kw)
    return status, json.loads(body)


@pytest.fixture
def shop(testsource, uri):
    """A finished pipeline run over the 540 records, and its truth."""
    records = make_records()
    result = Pipeline.from_dict(config(records, uri)).run()
    assert result.records_read == 540
    return uri, records, truth(records)


# -- summary ------------------------------------------------------------------------------
def test_summary_has_the_seed_figures_exactly(shop):
    uri, records, t = shop
    with standalone(uri) as srv:
        status, s = get_json(srv.url + "api/summary?top=3")
    assert status == 200
    users, items = t["users"], t["items"]
    assert s["total_interactions"] == len(records) == 540
    assert s["distinct_users"] == len(users) == 32
    assert s["average_per_user"] == 540 / 32 == 16.875
    assert s["users"]["top"] == [{"key": k, "count": n} for k, n in users.most_common(3)]
    assert s["users"]["top"][0] == {"key": XSS_SCRIPT, "count": 40}  # values come back as plain data
    assert s["items"]["top"] == [{"key": k, "count": n} for k, n in items.most_common(3)]
    fewest = sorted(items.items(), key=lambda kv: kv[1])[:3]
    assert s["items"]["fewest"] == [{"key": k, "count": n} for k, n in fewest]
    assert s["most_interacted_item"] == {"key": "i-top", "count": 44}
    assert s["fewest_interacted_item"] == {"key": "i01", "count": 1}
    assert s["items"]["distinct"] == 32 and s["items"]["total"] == 540 and s["items"]["exact"] is True
    assert s["missing"] == []
    assert s["aggregations"] == ["interactions_per_user", "interactions_per_item", "duration_per_item",
                                 "interactions_per_type"]


def test_summary_types_over_time_matches_the_windows(shop):
    uri, _, t = shop
    with standalone(uri) as srv:
        _, s = get_json(srv.url + "api/summary")
    series = s["types_over_time"]
    windows = sorted(t["per_window"])
    assert series["aggregation"] == "interactions_per_type" and series["window"] == "1m windows"
    assert series["windows"] == [iso(w) for w in windows]
    totals = collections.Counter()
    for c in t["per_window"].values():
        totals.update(c)
    expected = [{"key": k, "values": [t["per_window"][w][k] for w in windows]}
                for k, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))]
    assert series["series"] == expected
    assert series["truncated"] is False


def test_types_over_time_says_which_windows_are_final(shop):
    """Windows that close: the chart draws closed (final) windows solid, open ones dashed. The
    series says which: those up to the newest whose documents are all final."""
    uri, _, t = shop
    windows = sorted(t["per_window"])
    with standalone(uri) as srv:
        _, s = get_json(srv.url + "api/summary")
        assert "final" not in s["types_over_time"]  # windows that do not close: no such claim
        coll = connect(uri)["shopdb"]["aggs"]
        second = windows[1]
        coll.update_many({"aggregation": "interactions_per_type", "window.start": {"$lte": second}},
                         {"$set": {"final": True}})
        _, s = get_json(srv.url + "api/summary")
        assert s["types_over_time"]["final"] == [i <= 1 for i in range(len(windows))]


def test_summary_health_reports_the_process(shop):
    uri, records, _ = shop
    with standalone(uri) as srv:
        _, s = get_json(srv.url + "api/summary")
    (proc,) = s["health"]["processes"]
    assert proc["pipeline"] == "shop" and proc["pid"] == os.getpid() and proc["source"] == "records"
    assert proc["state"] == "stopped"
    assert proc["records_read"] == 540 and proc["dead_letters"] == 0
    size = config([], uri)["flush"]["max_records"]  # = the batch size: one flush per batch
    assert proc["flushes"] == -(-len(records) // size)
    assert proc["lag_total"] == 0 and proc["lag"] == [{"partition": "records/0", "lag": 0}]
    assert s["health"]["running"] == 0 and s["health"]["records_per_second"] == 0


def test_summary_says_which_aggregation_to_add(testsource, uri):
    records = make_records()[:100]
    cfg = config(records, uri, aggregations=[{"name": "total_duration", "type": "sum", "field": "duration_ms"}])
    Pipeline.from_dict(cfg).run()
    with standalone(uri) as srv:
        _, s = get_json(srv.url + "api/summary")
    assert s["total_interactions"] is None and s["users"] is None and s["items"] is None
    assert s["types_over_time"] is None
    assert [m["add"] for m in s["missing"]] == [
        "{name: interactions_per_user, type: count, group_by: [user_id]}",
        "{name: interactions_per_item, type: count, group_by: [item_id]}",
        "{name: interactions_per_type, type: count, group_by: [interaction_type], window: 1m}"]


def test_configured_field_names_find_the_seed_aggregations(testsource, uri):
    records = [{"customer": f"c{i % 3}", "sku": "s1", "interaction_type": "view", "timestamp": 0}
               for i in range(10)]
    cfg = config(records, uri, aggregations=[
        {"name": "per_customer", "type": "count", "group_by": ["customer"]}],
        dashboard={"serve": False, "user_field": "customer"})
    Pipeline.from_dict(cfg).run()
    store = DashboardStore(connect(uri)["shopdb"], "aggs", fields=SeedFields(user="customer"))
    s = store.summary(2)
    assert s["total_interactions"] == 10 and s["distinct_users"] == 3
    assert s["users"]["top"] == [{"key": "c0", "count": 4}, {"key": "c1", "count": 3}]


# -- aggregation tables ------------------------------------------------------------------
def test_aggregation_list(shop):
    uri, _, t = shop
    with standalone(uri) as srv:
        _, body = get_json(srv.url + "api/aggregations")
    aggs = {a["name"]: a for a in body["aggregations"]}
    assert list(aggs) == ["interactions_per_user", "interactions_per_item", "duration_per_item",
                          "interactions_per_type"]
    assert aggs["interactions_per_user"]["keys"] == 32 and aggs["interactions_per_user"]["totals"] == {"count": 540}
    assert aggs["duration_per_item"]["fields"] == ["avg", "sum", "count"]
    assert aggs["duration_per_item"]["totals"] == {"count": 540, "sum": sum(r["duration_ms"] for r in make_records())}
    assert aggs["interactions_per_type"]["window"] == {"kind": "tumbling", "size": 60.0, "hop": 60.0,
                                                       "label": "1m windows"}
    assert aggs["interactions_per_type"]["keys"] == sum(len(c) for c in t["per_window"].values())


def test_table_sorted_by_any_field_both_ways(shop):
    uri, _, t = shop
    dur = t["duration"]
    with standalone(uri) as srv:
        _, top = get_json(srv.url + "api/aggregations/duration_per_item?limit=4&sort=count")
        _, low = get_json(srv.url + "api/aggregations/duration_per_item?limit=2&sort=count&order=asc")
        _, users = get_json(srv.url + "api/aggregations/interactions_per_user?limit=5")
    by_count = sorted(dur.items(), key=lambda kv: -kv[1][1])
    assert [r["key"] for r in top["rows"]] == [{"item_id": k} for k, _ in by_count[:4]]
    for row in top["rows"]:
        s, c = dur[row["key"]["item_id"]]
        assert row["values"] == {"avg": s / c, "sum": s, "count": c}
    assert [(r["key"]["item_id"], r["values"]["count"]) for r in low["rows"]] == [("i01", 1), ("i02", 2)]
    assert top["sort"] == "count" and low["order"] == "asc" and top["keys"] == 32
    assert top["window"] == {"start": None, "end": None} and top["previous_window"] is None
    assert [(r["key"]["user_id"], r["values"]["count"]) for r in users["rows"]] == t["users"].most_common(5)
    assert users["sort"] == "count"  # the aggregator's main field by default


def test_windowed_table_pages_through_windows(shop):
    uri, _, t = shop
    windows = sorted(t["per_window"])
    with standalone(uri) as srv:
        _, latest = get_json(srv.url + "api/aggregations/interactions_per_type")
        _, first = get_json(srv.url + "api/aggregations/interactions_per_type?window=" + iso(windows[0]))
        _, epoch = get_json(srv.url + f"api/aggregations/interactions_per_type?window={windows[1].timestamp():.0f}")
        _, none = get_json(srv.url + "api/aggregations/interactions_per_type?window=2030-01-01T00:00:00Z")
    assert latest["window"] == {"start": iso(windows[-1]), "end": iso(windows[-1] + dt.timedelta(minutes=1))}
    assert latest["previous_window"] == iso(windows[-2]) and latest["next_window"] is None
    assert [(r["key"]["interaction_type"], r["values"]["count"]) for r in latest["rows"]] == \
        t["per_window"][windows[-1]].most_common()
    assert first["previous_window"] is None and first["next_window"] == iso(windows[1])
    assert [(r["key"]["interaction_type"], r["values"]["count"]) for r in first["rows"]] == \
        t["per_window"][windows[0]].most_common()
    assert epoch["window"]["start"] == iso(windows[1]) and len(epoch["rows"]) == 3
    assert none["rows"] == [] and none["previous_window"] == iso(windows[-1])


@pytest.mark.parametrize("path,status,message", [
    ("api/summary?top=0", 400, "top must be an integer from 1 to 100, got 0"),
    ("api/summary?top=ten", 400, "top must be an integer from 1 to 100, got 'ten'"),
    ("api/summary?top=1&top=2", 400, "query parameter 'top' given 2 times"),
    ("api/summary?limit=3", 400, "unknown query parameter 'limit' (known: top)"),
    ("api/aggregations?x=1", 400, "unknown query parameter 'x' (known: none)"),
    ("api/aggregations/interactions_per_user?limit=0", 400, "limit must be an integer from 1 to 1000, got 0"),
    ("api/aggregations/interactions_per_user?limit=1001", 400, "limit must be an integer from 1 to 1000, got 1001"),
    ("api/aggregations/interactions_per_user?limit=1e3", 400, "limit must be an integer from 1 to 1000, got '1e3'"),
    ("api/aggregations/interactions_per_user?order=up", 400, "order must be 'asc' or 'desc', got 'up'"),
    ("api/aggregations/interactions_per_user?sort=avg", 400,
     "sort must be one of count for aggregation 'interactions_per_user', got 'avg'"),
    ("api/aggregations/interactions_per_user?window=latestish", 400,
     "aggregation 'interactions_per_user' is all-time; window must be 'all' or left out"),
    ("api/aggregations/interactions_per_type?window=yesterday", 400,
     "window must be 'latest', an ISO-8601 window start or epoch seconds, got 'yesterday'"),
    ("api/aggregations/interactions_per_type?window=all", 400,
     "aggregation 'interactions_per_type' has 1m windows; window must be 'latest' or a window start"),
    ("api/aggregations/%3Cscript%3E", 404, "no aggregation named '<script>'"),
    ("api/alerts?limit=-1", 400, "limit must be an integer from 1 to 1000, got -1"),
    ("api/events?x=1", 400, "unknown query parameter 'x' (known: none)"),
    ("api/nothing", 404, "no such page: /api/nothing"),
    ("static/../server.py", 404, "no such page: /static/../server.py"),
    ("static/..%2Fserver.py", 404, "no such page: /static/../server.py"),
    ("static/index.html", 404, "no static file 'index.html'"),
])
def test_bad_requests_get_a_message(shop, path, status, message):
    with standalone(shop[0]) as srv:
        code, headers, body = http(srv.url + path)
    assert code == status
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {"error": message}


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_read_only(shop, method):
    with standalone(shop[0]) as srv:
        for path in ["", "api/summary", "api/aggregations/interactions_per_user", "healthz"]:
            code, _, body = http(srv.url + path, method=method, data=b"{}")
            assert code == 405 and json.loads(body) == {"error": "the dashboard is read-only: only GET requests"}


# -- health, metrics, events ----------------------------------------------------------------
def test_healthz(shop):
    with standalone(shop[0]) as srv:
        assert get_json(srv.url + "healthz") == (200, {"status": "ok"})


def test_metrics_in_prometheus_text_format(shop):
    uri, _, t = shop
    with standalone(uri) as srv:
        code, headers, body = http(srv.url + "metrics")
    assert code == 200 and headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? (-?[0-9.e+]+|NaN)$')
    samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) streamkit_[a-z_]+ .+$", line), line
            continue
        assert sample.match(line), line
        name, value = line.rsplit(" ", 1)
        samples[name] = value
    proc = f'pipeline="shop",process="{socket.gethostname()}:{os.getpid()}"'
    assert float(samples["streamkit_up{" + proc + "}"]) == 0  # the run has finished
    assert float(samples["streamkit_records_read_total{" + proc + "}"]) == 540
    assert float(samples["streamkit_flushes_total{" + proc + "}"]) == 11
    assert float(samples["streamkit_dead_letters_total{" + proc + "}"]) == 0
    assert float(samples['streamkit_aggregation_keys{aggregation="interactions_per_user"}']) == 32
    assert float(samples['streamkit_aggregation_value{aggregation="interactions_per_item",field="count"}']) == 540
    assert float(samples["streamkit_alerts_fired"]) == 0
    assert "# TYPE streamkit_records_read_total counter" in text


def test_metrics_escape_label_values():
    from streamkit_dashboard.prometheus import render
    health = {"processes": [{"pipeline": 'a"b\\c\nd', "host": "h", "pid": 1, "state": "running",
                             "records_read": 1, "records_per_second": 0.5, "dead_letters": 0, "flushes": 1,
                             "last_flush_age": None, "lag": [{"partition": "t/0", "lag": 7}]}]}
    text = render(health, [], 0).decode()
    assert 'pipeline="a\\"b\\\\c\\nd"' in text
    labels = {"pipeline": 'a"b\\c\nd', "process": "h:1"}
    assert sample(text, "streamkit_up", **labels) == 1
    assert sample(text, "streamkit_consumer_lag", **labels, partition="t/0") == 7
    assert sample(text, "streamkit_records_per_second", **labels) == 0.5


def test_server_sent_events_carry_the_summary(shop):
    with standalone(shop[0]) as srv:
        with urllib.request.urlopen(srv.url + "api/events", timeout=10) as r:
            assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
            lines = []
            while len([ln for ln in lines if ln.startswith(b"data: ")]) < 2:
                lines.append(r.readline().rstrip(b"\n"))
    assert lines[0] == b"retry: 1000"
    events = [json.loads(ln[6:]) for ln in lines if ln.startswith(b"data: ")]
    assert [e["total_interactions"] for e in events] == [540, 540]
    assert lines.count(b"event: summary") == 2


# -- auth and page safety -------------------------------------------------------------------
def test_token_is_required_on_every_request(shop):
    token = "s3cret-" + uuid.uuid4().hex
    with standalone(shop[0], token=token) as srv:
        for path in ["", "static/dashboard.js", "api/summary", "api/aggregations", "api/events", "healthz",
                     "metrics", "api/nothing"]:
            code, headers, body = http(srv.url + path)
            assert code == 401, path
            assert headers["WWW-Authenticate"] == 'Bearer realm="streamkit dashboard"'
            assert "needs its token" in json.loads(body)["error"]
            assert http(srv.url + path, headers={"Authorization": "Bearer wrong"})[0] == 401
            assert http(srv.url + path + "?token=wrong")[0] == 401
        assert get_json(srv.url + "healthz", headers={"Authorization": "Bearer " + token}) == (200, {"status": "ok"})
        assert get_json(srv.url + "api/summary?top=1&token=" + token)[1]["total_interactions"] == 540
        code, _, page = http(srv.url + "?token=" + token)
        assert code == 200
        assert f'src="static/dashboard.js?token={token}"' in page.decode()
        assert http(srv.url + "static/dashboard.js?token=" + token)[0] == 200


def test_page_and_script_never_treat_data_as_markup(shop):
    with standalone(shop[0]) as srv:
        code, headers, page = http(srv.url)
        _, js_headers, js = http(srv.url + "static/dashboard.js")
    assert code == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    assert js_headers["Content-Type"] == "application/javascript; charset=utf-8"
    # no inline script: the only <script> element loads the packaged file
    assert re.findall(r"<script[^>]*>", page.decode()) == ['<script src="static/dashboard.js" defer>']
    source = js.decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source
    # nothing is fetched from another origin
    assert not re.search(r"https?://", page.decode()) and not re.search(r"https?://(?!www\.w3\.org)", source)


# -- running inside a pipeline ----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gate:
    """Lets the test source read no further than ``allowed`` records, so that a test can watch a
    running pipeline step by step instead of sampling it at moments that depend on the machine."""

    def __init__(self, monkeypatch) -> None:
        import streamkit_testsource
        self.allowed = 0
        poll = streamkit_testsource.RecordsSource.poll
        gate = self

        def gated(source, timeout):
            if gate.allowed <= source.pos < len(source.config["records"]):
                time.sleep(min(timeout, 0.02))
                return []
            return poll(source, timeout)
        monkeypatch.setattr(streamkit_testsource.RecordsSource, "poll", gated)


def wait_for(what: str, check, timeout: float = 30):
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        time.sleep(0.02)


STEPS = [100, 200, 300, 540]  # records the gate lets through, one step after another (batches of 20)


def test_dashboard_runs_inside_the_pipeline_and_stops_with_it(testsource, uri, monkeypatch):
    gate = Gate(monkeypatch)
    records = make_records()
    cfg = config(records, uri, dashboard={"port": 0, "refresh": 0.2})
    cfg["source"].update(batch_size=20)
    cfg["flush"] = {"interval": "0.1s", "max_records": 1000}
    p = Pipeline.from_dict(cfg)
    t = threading.Thread(target=p.run)
    t.start()
    try:
        url = wait_for("dashboard", lambda: server_for(p), 10).url
        assert url.startswith("http://127.0.0.1:")
        for n in STEPS[:-1]:  # live: the page shows each step while the pipeline runs
            gate.allowed = n
            s = wait_for(f"total of {n}", lambda: (lambda s: s["total_interactions"] == n and s)(
                get_json(url + "api/summary?top=1")[1]))
            assert s["health"]["processes"][0]["state"] == "running"
        gate.allowed = STEPS[-1]
    finally:
        gate.allowed = len(records)
        t.join(timeout=20)
    assert server_for(p) is None
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "healthz", timeout=2)
    # the numbers stay exact when many flushes fed them while the page was read
    s = DashboardStore(connect(uri)["shopdb"], "aggs").summary(1)
    assert s["total_interactions"] == len(records) and s["distinct_users"] == len(truth(records)["users"])


def test_port_in_use_stops_the_pipeline_with_one_line(testsource, uri):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = Pipeline.from_dict(config(make_records()[:10], uri, dashboard={"port": port}))
        with pytest.raises(DashboardError) as e:
            p.run()
    assert str(e.value) == f"dashboard: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert e.value.exit_code == 1


def test_section_defaults_and_validation(testsource, uri):
    p = Pipeline.from_dict(config([], uri, dashboard=None))
    assert p.sections["dashboard"] is None
    p = Pipeline.from_dict(config([], uri, dashboard={}))
    assert p.sections["dashboard"] == {"host": "127.0.0.1", "port": 8080, "auth_token": None, "refresh": 2.0,
                                       "serve": True, "sink": None, "user_field": "user_id",
                                       "item_field": "item_id", "type_field": "interaction_type"}
    with pytest.raises(ConfigError, match=r"dashboard.port: expected at most 65535, got 70000"):
        Pipeline.from_dict(config([], uri, dashboard={"port": 70000}))
    with pytest.raises(ConfigError, match=r"dashboard.refresh: expected at least 0.2s"):
        Pipeline.from_dict(config([], uri, dashboard={"refresh": "10ms"}))
    with pytest.raises(ConfigError, match=r"dashboard.prot: unknown option \(did you mean 'port'\?\)"):
        Pipeline.from_dict(config([], uri, dashboard={"prot": 1}))


def test_dashboard_needs_a_mongodb_sink(testsource, uri):
    cfg = config(make_records()[:10], uri, sinks=[{"type": "discard"}])
    with pytest.raises(ConfigError,
                       match=r"^<dict>: dashboard: needs a mongodb sink to read from \(add one under sinks\)$"):
        Pipeline.from_dict(cfg).run()
    cfg = config(make_records()[:10], uri, dashboard={"sink": 1},
                 sinks=[{"type": "mongodb", "uri": uri}, {"type": "discard"}])
    with pytest.raises(ConfigError, match=r"^<dict>: dashboard.sink: sinks\[1\] is not a mongodb sink$"):
        Pipeline.from_dict(cfg).run()


def test_root_pipeline_enables_the_dashboard_on_localhost(root):
    p = Pipeline.from_yaml(os.path.join(root, "pipeline.yaml"))
    d = p.sections["dashboard"]
    assert d["host"] == "127.0.0.1" and d["port"] == 8080


# -- counters ----------------------------------------------------------------------------------
def test_counters_stay_exact_across_runs_and_late_starts(testsource, uri):
    """A first run without a dashboard section, then two partitions with one: the counters start
    from what is stored and then follow every flush, whoever created a document. The runs take
    turns: one mongomock store serves one writer (its updates are not atomic across threads);
    tests/test_dashboard_integration.py runs the partitions as concurrent processes."""
    records = make_records()
    a, b, c = records[:200], records[200:380], records[380:]
    cfg = config(a, uri, dashboard=None)
    cfg["source"]["partition"] = "records/0"
    Pipeline.from_dict(cfg).run()
    for part, recs in (("records/1", b), ("records/2", c)):
        cfg = config(recs, uri)
        cfg["source"].update(partition=part, batch_size=7)
        cfg["flush"] = {"max_records": 7}
        Pipeline.from_dict(cfg).run()
    check_counters(connect(uri)["shopdb"], records)


def check_counters(db, records: list[dict]) -> None:
    """The status counters equal the stored documents and the records' truth."""
    coll = db["aggs"]
    counters = {d["aggregation"]: d for d in db["streamkit_status"].find({"kind": "counter"})}
    t = truth(records)
    distinct = {"interactions_per_user": len(t["users"]), "interactions_per_item": len(t["items"]),
                "duration_per_item": len(t["items"]), "interactions_per_type": sum(map(len, t["per_window"].values()))}
    assert sorted(counters) == sorted(distinct)
    for name, keys in distinct.items():
        docs = list(coll.find({"aggregation": name}))
        assert counters[name]["keys"] == len(docs) == keys, name
        assert counters[name]["count"] == sum(d["count"] for d in docs) == len(records), name
    assert counters["duration_per_item"]["sum"] == sum(r["duration_ms"] for r in records)


def test_standalone_without_status_documents_infers_the_aggregations(testsource, uri):
    records = make_records()
    Pipeline.from_dict(config(records, uri, dashboard=None)).run()
    with standalone(uri) as srv:
        _, s = get_json(srv.url + "api/summary?top=2")
        _, aggs = get_json(srv.url + "api/aggregations")
    assert s["total_interactions"] == 540 and s["distinct_users"] == 32
    assert s["users"]["exact"] is False  # computed in the database: no pipeline keeps counters here
    assert s["health"]["processes"] == []
    by_name = {a["name"]: a for a in aggs["aggregations"]}
    assert by_name["duration_per_item"]["fields"] == ["count", "sum", "avg"]
    assert by_name["duration_per_item"]["primary"] == "avg"
    assert by_name["interactions_per_type"]["window"]["kind"] == "tumbling"
    assert by_name["interactions_per_type"]["window"]["size"] == 60.0
    assert s["types_over_time"]["series"][0]["key"] == "view"


# -- the command ---------------------------------------------------------------------------------
def test_cli_dashboard_serves_until_interrupted():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamkit", "dashboard", "--mongo-uri", "mongomock://",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"dashboard: http://127.0.0.1:{port}/ — interaction_db.aggregations at mongomock://")
        assert get_json(f"http://127.0.0.1:{port}/healthz") == (200, {"status": "ok"})
        _, s = get_json(f"http://127.0.0.1:{port}/api/summary")
        assert s["total_interactions"] is None and len(s["missing"]) == 3
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_dashboard_stops_on_signals_also_started_in_the_background(sig):
    """A shell starts background jobs with SIGINT ignored, a service manager stops with SIGTERM:
    either way the dashboard stops at once with exit code 0."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamkit", "dashboard", "--mongo-uri", "mongomock://",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert proc.stdout.readline().startswith(f"dashboard: http://127.0.0.1:{port}/")
        assert get_json(f"http://127.0.0.1:{port}/healthz") == (200, {"status": "ok"})
    finally:
        proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err


def test_cli_dashboard_errors_are_one_line():
    r = subprocess.run([sys.executable, "-m", "streamkit", "dashboard", "--port", "70000"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--port: expected a port from 0 to 65535, got '70000'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "streamkit", "dashboard", "--mongo-uri", "mongodb://127.0.0.1:9/"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "streamkit: error: dashboard: cannot reach MongoDB at mongodb://127.0.0.1:9/: ServerSelectionTimeoutError"]


def test_consumer_lag_is_reported_while_running(testsource, uri, monkeypatch):
    from streamkit_dashboard import status
    monkeypatch.setattr(status, "LAG_EVERY", 0.05)
    gate = Gate(monkeypatch)
    records = make_records()
    cfg = config(records, uri, dashboard={"port": 0, "refresh": 0.2})
    cfg["source"].update(batch_size=20)
    cfg["flush"] = {"interval": "0.1s", "max_records": 1000}
    p = Pipeline.from_dict(cfg)
    t = threading.Thread(target=p.run)
    t.start()
    proc = {"pipeline": "shop", "process": f"{socket.gethostname()}:{os.getpid()}", "partition": "records/0"}
    try:
        url = wait_for("dashboard", lambda: server_for(p), 10).url
        for n in STEPS[:-1]:  # the lag of each step: the records the source has not read yet
            gate.allowed = n
            lag = len(records) - n
            wait_for(f"lag of {lag}", lambda: get_json(url + "api/summary?top=1")[1]["health"]["lag"] == lag)
            assert sample(http(url + "metrics")[2].decode(), "streamkit_consumer_lag", **proc) == lag
    finally:
        gate.allowed = len(records)
        t.join(timeout=20)
    assert not t.is_alive()


def check_top_lists(db, ascending: bool) -> None:
    """Pages split at the previous page's bound equal a plain sort, while values grow, shrink,
    appear, and go null — and are never longer than the limit."""
    from streamkit_dashboard.meta import AggMeta
    coll = db["aggs"]
    meta = AggMeta("m", ["k"], ["v"], "v")
    store = DashboardStore(db, "aggs", metas=[meta])
    rng = random.Random(5)
    values = {f"k{i}": rng.randint(0, 50) for i in range(60)}

    def order(v):  # MongoDB's: null and missing below every number
        return (v is not None, v if v is not None else 0)

    for step in range(12):
        coll.delete_many({})
        coll.insert_many([{"aggregation": "m", "key": {"k": k}, **({} if v is None and step % 2 else {"v": v})}
                          for k, v in values.items()])
        for limit in (1, 5, 17):
            got_values = [d.get("v") for d in store._sorted(meta, "v", limit, ascending)]
            want = sorted(values.values(), key=order, reverse=not ascending)[:limit]
            assert got_values == want, (step, limit)
        for k in rng.sample(sorted(values), 10):  # values move both ways; some go null (or missing)
            values[k] = None if rng.random() < 0.2 else rng.randint(0, 60)
        values[f"new{step}"] = rng.randint(0, 60)
    assert len(store._bounds) == 3  # the bounded path ran


@pytest.mark.parametrize("ascending", [False, True])
def test_top_lists_stay_exact_as_values_move(uri, ascending):
    check_top_lists(connect(uri)["shopdb"], ascending)


SKETCHES = [
    {"name": "users_per_item", "type": "distinct", "field": "user_id", "group_by": ["item_id"]},
    {"name": "duration_percentiles_per_type", "type": "percentiles", "field": "duration_ms",
     "group_by": ["interaction_type"]},
]


@pytest.mark.parametrize("status_documents", [True, False])
def test_summary_shows_distinct_users_per_item_and_duration_percentiles_per_type(testsource, uri, status_documents):
    from truth import exact
    records = make_records()
    cfg = config(records, uri, aggregations=as_pipeline(AGGREGATIONS + SKETCHES))
    if not status_documents:
        cfg["dashboard"] = None  # a standalone dashboard infers the sketches from their documents
    Pipeline.from_dict(cfg).run()
    with standalone(uri) as srv:
        _, s = get_json(srv.url + "api/summary?top=5")
        _, table = get_json(srv.url + "api/aggregations/duration_percentiles_per_type")
    users: dict = collections.defaultdict(list)
    durations: dict = collections.defaultdict(list)
    for r in records:
        users[r["item_id"]].append(r["user_id"])
        durations[r["interaction_type"]].append(r["duration_ms"])
    d = s["distinct_per_item"]
    assert d["aggregation"] == "users_per_item" and len(d["top"]) == 5
    for row in d["top"]:
        assert abs(row["count"] - len(set(users[row["key"]]))) <= 1, row
    assert d["top"][0]["key"] == "i-top"  # 44 records, more distinct users than any other item
    q = s["quantiles_per_type"]
    assert q["aggregation"] == "duration_percentiles_per_type" and q["quantiles"] == ["p50", "p95", "p99"]
    assert {r["key"] for r in q["rows"]} == set(durations) and q["primary"] == "p95"
    for row in q["rows"]:
        want = exact(durations[row["key"]], SKETCHES[1])
        assert row["count"] == len(durations[row["key"]])
        for name, x in want.items():
            assert abs(row["values"][name] - x) <= 0.01 * x, (row, name, x)
    assert [r["values"]["p95"] for r in q["rows"]] == sorted((r["values"]["p95"] for r in q["rows"]), reverse=True)
    assert table["meta"]["primary"] == "p95" and "p99" in table["meta"]["fields"]
