"""The dashboard on hostile parameters and open hosts, and dead letters that keep their bytes."""
from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import urllib.parse
import wsgiref.util

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from streamkit import DeadLetter, Pipeline
from streamkit_dashboard import is_loopback
from streamkit_dashboard.server import build_app
from streamkit_dashboard.store import DashboardStore
from streamkit_mongodb import connect

from test_dashboard import _free_port, config, get_json, make_records, shop, testsource, uri  # noqa: F401 - fixtures


def wsgi_get(app, path: str, query: dict) -> tuple[int, dict]:
    environ: dict = {}
    wsgiref.util.setup_testing_defaults(environ)
    environ["PATH_INFO"] = path
    environ["QUERY_STRING"] = urllib.parse.urlencode(query)
    environ["wsgi.input"] = io.BytesIO()
    got: dict = {}

    def start_response(status, headers, exc_info=None):
        got["status"] = int(status.split()[0])

    body = b"".join(app(environ, start_response))
    return got["status"], json.loads(body)


@pytest.fixture
def app(shop):
    return build_app(DashboardStore(connect(shop[0])["shopdb"], "aggs"))


# -- parameters ---------------------------------------------------------------------------
@pytest.mark.parametrize("window,message", [
    ("9999-12-31T23:59:59-01:00", "window must be a time from year 1 to 9999 in UTC, got '9999-12-31T23:59:59-01:00'"),
    ("0001-01-01T00:00:00+01:00", "window must be a time from year 1 to 9999 in UTC, got '0001-01-01T00:00:00+01:00'"),
    ("1e20", "window must be 'latest', an ISO-8601 window start or epoch seconds, got '1e20'"),
    ("nan", "window must be 'latest', an ISO-8601 window start or epoch seconds, got 'nan'"),
])
def test_out_of_range_window_is_400(app, window, message):
    assert wsgi_get(app, "/api/aggregations/interactions_per_type", {"window": window}) == (400, {"error": message})


def test_last_representable_window_is_an_empty_page(app):
    status, body = wsgi_get(app, "/api/aggregations/interactions_per_type", {"window": "9999-12-31T23:59:00Z"})
    assert status == 200
    assert body["rows"] == [] and body["window"] == {"start": "9999-12-31T23:59:00Z", "end": None}


param_text = st.one_of(st.text(max_size=30), st.integers().map(str), st.floats().map(str),
                       st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
                       st.sampled_from(["9" * 5000, "-1", "0", "1e400", "-inf", "latest", "all"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/api/summary", "/api/aggregations/interactions_per_type",
                             "/api/aggregations/interactions_per_user", "/api/alerts"]),
       params=st.dictionaries(st.sampled_from(["window", "limit", "top", "sort", "order"]), param_text, max_size=3))
@example(path="/api/aggregations/interactions_per_type", params={"window": "9999-12-31T23:59:59-01:00"})
@example(path="/api/summary", params={"top": "9" * 5000})
@example(path="/api/alerts", params={"limit": "-5"})
def test_no_parameter_gets_a_500(app, path, params):
    status, body = wsgi_get(app, path, params)
    assert status in (200, 400), body
    if status == 400:
        assert set(body) == {"error"} and "\n" not in body["error"]


# -- open hosts ---------------------------------------------------------------------------
@pytest.mark.parametrize("host,expected", [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                           ("localhost", True), ("0.0.0.0", False), ("::", False),
                                           ("192.168.1.5", False), ("dashboard.example.com", False)])
def test_loopback_hosts(host, expected):
    assert is_loopback(host) is expected


WARNING = ("streamkit: warning: the dashboard listens on 0.0.0.0 without a token: anyone who can reach this "
           "machine can read it (set {how})")


@pytest.mark.parametrize("token", [None, "s3cret"])
def test_pipeline_dashboard_beyond_loopback_warns_without_token(testsource, uri, capsys, token):
    cfg = config(make_records()[:50], uri, dashboard={"host": "0.0.0.0", "port": 0, "auth_token": token})
    Pipeline.from_dict(cfg).run()
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "warning" in line] == ([] if token else
                                                           [WARNING.format(how="dashboard.auth_token")])


def test_pipeline_dashboard_on_loopback_does_not_warn(testsource, uri, capsys):
    Pipeline.from_dict(config(make_records()[:50], uri, dashboard={"port": 0})).run()
    assert "warning" not in capsys.readouterr().err


def test_standalone_dashboard_beyond_loopback_warns_without_token():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamkit", "dashboard", "--mongo-uri", "mongomock://",
                             "--host", "0.0.0.0", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "DASHBOARD_TOKEN": ""})
    try:
        assert proc.stdout.readline().startswith(f"dashboard: http://0.0.0.0:{port}/")
        assert get_json(f"http://127.0.0.1:{port}/healthz") == (200, {"status": "ok"})  # serving: Ctrl-C stops it
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert err.strip().splitlines() == [WARNING.format(how="--auth-token or $DASHBOARD_TOKEN")]


# -- dead letters keep their bytes --------------------------------------------------------
def test_dead_letter_json_keeps_bytes_that_are_not_utf8():
    raw = b'{"user_id": "\xff\xfe caf\xe9"}'
    out = DeadLetter("t/0", 7, "not JSON", raw).to_json()
    assert base64.b64decode(out["record_base64"]) == raw
    assert out["record"] == raw.decode("utf-8", "replace")
    assert DeadLetter("t/0", 8, "not JSON", "caf\xe9 {".encode()).to_json() == {
        "partition": "t/0", "position": 8, "reason": "not JSON", "record": "caf\xe9 {"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=20))
@example(bad=[b"\xff", b'{"user_id": "\xc3\x28"}', b"\xed\xa0\x80", "caf\xe9".encode()])
def test_jsonl_dead_letters_keep_the_original_bytes(test_plugins, tmp_path_factory, bad):
    good = [b'{"user_id": "u1"}'] * 3
    records = [r for pair in zip(good * len(bad), bad) for r in pair]
    path = tmp_path_factory.mktemp("dl") / "letters.jsonl"
    p = Pipeline.from_dict({"source": {"type": "list", "partitions": {"p/0": records}},
                            "aggregations": [{"name": "c", "type": "count", "group_by": ["user_id"]}],
                            "sinks": [{"type": "capture"}],
                            "dead_letter": {"type": "jsonl", "path": str(path)}})
    result = p.run()
    letters = [json.loads(line) for line in path.read_bytes().splitlines()]
    assert result.dead_letters == len(letters)
    by_position = {dl["position"]: dl for dl in letters}
    for position, raw in enumerate(records):
        if position not in by_position:
            continue
        dl = by_position[position]
        kept = base64.b64decode(dl["record_base64"]) if "record_base64" in dl else dl["record"].encode()
        assert kept == raw
    # every record that is not valid UTF-8 JSON of an object with user_id is a dead letter
    for position, raw in enumerate(records):
        try:
            ok = isinstance(json.loads(raw.decode("utf-8")), dict) and json.loads(raw)["user_id"] is not None
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            assert position in by_position, raw
