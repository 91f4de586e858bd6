"""Monitoring for real: a Prometheus (Debian's package) scrapes a running pipeline's dashboard and a
standalone dashboard, with the shipped scrape configuration pointed at them, and every PromQL
expression of the shipped Grafana dashboard is evaluated through Prometheus's HTTP API. Each must
return data, and its values must agree with what the test fed the pipeline (an independent truth)
and with the pipeline's own counters (its /metrics, polled by the test, and its summary line).
``promtool`` checks the shipped configuration and the live /metrics; ``docker-compose config``
resolves docker-compose.yml, and a broken copy of each file must fail the same check.
"""
from __future__ import annotations

import collections
import json
import random
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from processes import kafka_source, make_events, pipeline, wait_for, write_yaml
from servers import free_port
from test_monitoring_files import DASHBOARD_JSON, dashboard_queries

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"
SCRAPE = 1.0  # seconds between scrapes in the test
WINDOW = "15s"  # what $__rate_interval stands for in the test
NAME = "monitored"
THRESHOLD = 100  # the alert rule: an item with more interactions than this


# -- the shipped files ------------------------------------------------------------------------

def variable_queries() -> list[str]:
    return [v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            for v in json.loads(DASHBOARD_JSON.read_text())["templating"]["list"]]


def substitute(expr: str, pipeline_name: str) -> str:
    """The expression as Grafana sends it: its variables replaced by the test's values."""
    out = expr.replace("$__rate_interval", WINDOW).replace("${pipeline}", "$pipeline")
    out = out.replace("$pipeline", re.escape(pipeline_name))
    assert "$" not in out, f"a Grafana variable the test does not know in {expr!r}"
    return out


def test_compose_file_resolves(docker_compose_path, tmp_path):
    done = subprocess.run([docker_compose_path, "-f", str(ROOT / "docker-compose.yml"), "--profile", "monitoring",
                           "config"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    services = resolved["services"]
    assert set(services) == {"kafka", "mongo", "prometheus", "grafana"}
    mounts = {}
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source, target = (volume["source"], volume["target"]) if isinstance(volume, dict) \
                else volume.split(":")[:2]
            assert Path(source).exists(), f"{name} mounts {source}, which is not in the repository"
            mounts[target] = Path(source).resolve()
    assert mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS_YML
    assert mounts["/var/lib/grafana/dashboards"] == DASHBOARD_JSON.parent
    assert mounts["/etc/grafana/provisioning"] == ROOT / "deploy" / "grafana" / "provisioning"
    # the same check fails on a typo
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((ROOT / "docker-compose.yml").read_text().replace("network_mode: host", "network_mod: host", 1))
    done = subprocess.run([docker_compose_path, "-f", str(broken), "config"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode != 0 and "network_mod" in done.stderr


def test_shipped_prometheus_config_is_valid(promtool_path, tmp_path):
    done = subprocess.run([promtool_path, "check", "config", str(PROMETHEUS_YML)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    port = yaml.safe_load((ROOT / "pipeline.yaml").read_text())["dashboard"]["port"]
    assert targets == {"streamkit-pipeline": [f"localhost:{port}"], "streamkit-dashboard": ["localhost:8081"]}
    broken = tmp_path / "prometheus.yml"
    broken.write_text(PROMETHEUS_YML.read_text().replace("scrape_interval: 15s", "scrape_interval: 15 seconds"))
    done = subprocess.run([promtool_path, "check", "config", str(broken)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0


# -- a running pipeline, scraped ---------------------------------------------------------------

def http_get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class Prometheus:
    """A Prometheus of the test's own, and its HTTP API."""

    def __init__(self, binary: str, config: Path, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(folder / "prometheus.log", "wb")
        self.proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        try:
            return http_get(self.url + "/-/ready", timeout=2).startswith(b"Prometheus")
        except OSError:
            return False

    def api(self, path: str, **params: Any) -> Any:
        body = json.loads(http_get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}"))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str, at: float) -> dict[frozenset, float]:
        data = self.api("query", query=expr, time=f"{at:.3f}")
        assert data["resultType"] == "vector", (expr, data)
        return {frozenset(r["metric"].items()): float(r["value"][1]) for r in data["result"]}

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


class Poller(threading.Thread):
    """Reads the pipeline's own /metrics twice a second: (time, records read, flushes, its own rate)."""

    def __init__(self, url: str, labels: Callable[[], dict]) -> None:
        super().__init__(daemon=True)
        self.url, self.labels = url, labels
        self.points: list[tuple[float, float, float, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            try:
                got = samples(http_get(self.url).decode())
            except OSError:
                continue
            at = time.time()
            mine = frozenset(self.labels().items())
            values = [got.get((name, mine)) for name in ("streamkit_records_read_total", "streamkit_flushes_total",
                                                          "streamkit_records_per_second")]
            if None not in values:
                self.points.append((at, *values))

    def at(self, t: float, column: int) -> float:
        """The value of a column at time ``t``, interpolated between the readings around it."""
        before = [p for p in self.points if p[0] <= t][-1]
        after = next((p for p in self.points if p[0] > t), before)
        if after[0] == before[0]:
            return before[column]
        share = (t - before[0]) / (after[0] - before[0])
        return before[column] + share * (after[column] - before[column])

    def slope(self, t: float, seconds: float, column: int) -> float:
        return (self.at(t, column) - self.at(t - seconds, column)) / seconds


def feed(kafka, topic: str, seconds: float, per_second: int, rng: random.Random) -> tuple[list[dict], int]:
    """Produce for ``seconds`` at ``per_second``: good events, and one in 40 a record that must become
    a dead letter (not JSON, or lacking a group-by field). Returns (good events, dead letters)."""
    good: list[dict] = []
    bad = 0
    started = time.monotonic()
    sent = 0
    while time.monotonic() - started < seconds:
        due = int((time.monotonic() - started) * per_second) - sent
        if due > 0:
            values = []
            for event in make_events(due, rng):
                sent += 1
                if sent % 40 == 0:
                    bad += 1
                    values.append(b"{not json" if sent % 80 == 0
                                  else json.dumps({k: v for k, v in event.items() if k != "user_id"}).encode())
                else:
                    good.append(event)
                    values.append(json.dumps(event).encode())
            kafka.produce(topic, values, partition=lambda i: i % 2)
        time.sleep(0.05)
    return good, bad


def test_every_dashboard_query_agrees_with_the_pipeline(kafka, mongo_uri, mongo_db, runs, tmp_path,
                                                         prometheus_path, promtool_path):
    rng = random.Random(13)
    topic = kafka.create_topic("monitored", partitions=2)
    pipeline_port, standalone_port = free_port(), free_port()
    aggregations = [{"name": "per_user", "type": "count", "group_by": ["user_id"]},
                    {"name": "per_item", "type": "count", "group_by": ["item_id"]},
                    {"name": "duration_per_item", "type": "sum", "field": "duration_ms", "group_by": ["item_id"]}]
    config = pipeline(NAME, kafka_source(kafka.bootstrap, topic, f"g_{topic}"), mongo_uri, mongo_db.name,
                      aggregations, flush={"interval": "1s", "max_records": 100000})
    config["dead_letter"] = {"type": "log"}
    config["dashboard"] = {"port": pipeline_port}
    config["alerts"] = {"rules": [{"aggregation": "per_item", "field": "count", "above": THRESHOLD}],
                        "destinations": [{"type": "log"}]}
    run = runs.start(write_yaml(tmp_path / "monitored.yaml", config), extra=["--json"])
    standalone_log = open(tmp_path / "standalone.log", "wb")
    standalone = subprocess.Popen([sys.executable, "-m", "streamkit", "dashboard", "--mongo-uri", mongo_uri,
                                   "--database", mongo_db.name, "--port", str(standalone_port)],
                                  stdout=standalone_log, stderr=subprocess.STDOUT)
    prometheus = poller = None
    try:
        pipeline_metrics = f"http://127.0.0.1:{pipeline_port}/metrics"
        standalone_metrics = f"http://127.0.0.1:{standalone_port}/metrics"

        def up(url: str) -> bool:
            try:
                return b"streamkit_up{" in http_get(url, timeout=2)
            except OSError:
                assert run.alive(), run.tail()
                return False
        wait_for("the pipeline's /metrics", lambda: up(pipeline_metrics), 90, interval=0.3)
        wait_for("the standalone dashboard's /metrics", lambda: up(standalone_metrics), 30, interval=0.3)
        process = wait_for("the pipeline's status document", lambda: mongo_db["streamkit_status"].find_one(
            {"kind": "process", "pipeline": NAME}), 30)
        labels = {"pipeline": NAME, "process": f"{process['host']}:{process['pid']}"}
        assert process["pid"] == run.pid

        # the shipped scrape configuration, pointed at this test's dashboards
        scrape = yaml.safe_load(PROMETHEUS_YML.read_text())
        scrape["global"].update(scrape_interval=f"{SCRAPE:g}s", scrape_timeout=f"{SCRAPE:g}s")
        ports = {"streamkit-pipeline": pipeline_port, "streamkit-dashboard": standalone_port}
        for job in scrape["scrape_configs"]:
            job["static_configs"] = [{"targets": [f"127.0.0.1:{ports.pop(job['job_name'])}"]}]
        assert not ports, f"jobs missing from {PROMETHEUS_YML}: {ports}"
        scrape_file = tmp_path / "prometheus.yml"
        scrape_file.write_text(yaml.safe_dump(scrape))
        checked = subprocess.run([promtool_path, "check", "config", str(scrape_file)], capture_output=True,
                                 text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        prometheus = Prometheus(prometheus_path, scrape_file, tmp_path)
        wait_for("Prometheus ready", prometheus.ready, 60, interval=0.3)

        def scraped() -> bool:
            targets = prometheus.api("targets")["activeTargets"]
            return len(targets) == 2 and all(t["health"] == "up" for t in targets)
        wait_for("both targets scraped", scraped, 60, interval=0.5)

        poller = Poller(pipeline_metrics, lambda: labels)
        poller.start()
        fed_from = time.time()
        good, dead = feed(kafka, topic, seconds=25, per_second=120, rng=rng)
        fed_until = time.time()
        mid = fed_from + 20  # the rate window ending here lies within the feeding
        total = len(good) + dead

        # the independent truth
        per_user = collections.Counter(e["user_id"] for e in good)
        per_item = collections.Counter(e["item_id"] for e in good)
        alerts = sum(1 for n in per_item.values() if n > THRESHOLD)
        assert 0 < alerts < len(per_item), "the threshold should split the items"

        def settled() -> bool:
            got = samples(http_get(pipeline_metrics).decode())
            lag = {dict(k[1])["partition"]: v for k, v in got.items() if k[0] == "streamkit_consumer_lag"}
            return (got.get(("streamkit_records_read_total", frozenset(labels.items()))) == total
                    and lag == {f"{topic}/0": 0, f"{topic}/1": 0}
                    and got.get(("streamkit_alerts_fired", frozenset())) == alerts)
        wait_for("the pipeline to read everything", settled, 90, interval=0.5)
        time.sleep(3 * SCRAPE + 0.5)  # a scrape after the last change, in Prometheus
        end = time.time()
        status = mongo_db["streamkit_status"].find_one({"_id": process["_id"]})
        live = samples(http_get(pipeline_metrics).decode())

        # promtool on the live output of both dashboards
        for url in (pipeline_metrics, standalone_metrics):
            checked = subprocess.run([promtool_path, "check", "metrics"], input=http_get(url), capture_output=True,
                                     timeout=60)
            assert checked.returncode == 0, (url, checked.stdout + checked.stderr)

        assert mongo_db["streamkit_alerts"].count_documents({}) == alerts
        fed_rate = total / (fed_until - fed_from)
        own = {k[0]: v for k, v in live.items() if dict(k[1]) == labels}
        assert own["streamkit_records_read_total"] == total and own["streamkit_dead_letters_total"] == dead

        def close(value: float, expected: float, what: str, rel: float) -> None:
            assert expected > 0 and abs(value - expected) <= rel * expected, \
                f"{what}: {value:.2f} from Prometheus, {expected:.2f} from the pipeline's own counters"

        p = {"pipeline": NAME}
        checks: dict[str, Callable[[dict[frozenset, float]], None]] = {}

        def exact(title: str, expected: dict[frozenset, float]) -> None:
            def check(result: dict[frozenset, float]) -> None:
                assert result == expected, title
            checks[title] = check

        exact("Processes up", {frozenset(p.items()): 1})
        exact("Alerts fired", {frozenset(): alerts})
        exact("Consumer lag per partition", {frozenset({**p, "partition": f"{topic}/{n}"}.items()): 0
                                             for n in (0, 1)})
        exact("Dead letters", {frozenset(p.items()): dead})
        exact("Keys per aggregation", {frozenset({"aggregation": "per_user"}.items()): len(per_user),
                                       frozenset({"aggregation": "per_item"}.items()): len(per_item),
                                       frozenset({"aggregation": "duration_per_item"}.items()): len(per_item)})
        exact("Aggregation totals", {
            frozenset({"aggregation": "per_user", "field": "count"}.items()): len(good),
            frozenset({"aggregation": "per_item", "field": "count"}.items()): len(good),
            frozenset({"aggregation": "duration_per_item", "field": "sum"}.items()):
                sum(e["duration_ms"] for e in good)})

        def flush_age(result: dict[frozenset, float]) -> None:
            (key, value), = result.items()
            assert key == frozenset(labels.items())
            expected = end - status["last_flush"].timestamp()  # the pipeline's own last flush
            assert expected - SCRAPE - 1.0 <= value <= expected + 0.2, (value, expected)
        checks["Time since the last flush"] = flush_age

        window = float(WINDOW.rstrip("s"))
        rates = {"Records read per second": (1, 0.2), "Flushes per second": (2, 0.35),
                 "Records per second, as each pipeline measures it": (3, 0.3)}

        def rate(title: str, column: int, rel: float) -> Callable:
            def check(result: dict[frozenset, float]) -> None:
                (key, value), = result.items()
                assert key == frozenset(p.items())
                expected = poller.at(mid, column) if column == 3 else poller.slope(mid, window, column)
                close(value, expected, title, rel)
                if column == 1:
                    close(value, fed_rate, f"{title} against the rate fed", 0.5)
            return check
        for title, (column, rel) in rates.items():
            checks[title] = rate(title, column, rel)

        queries = dashboard_queries()
        assert sorted(t for t, _ in queries) == sorted(checks), "a panel without a check, or a check without one"
        for title, expr in queries:
            promql = substitute(expr, NAME)
            now = prometheus.query(promql, end)
            assert now, f"{title}: {promql} returned no data"
            checks[title](prometheus.query(promql, mid) if title in rates else now)
        for query in variable_queries():
            metric, label = re.fullmatch(r"label_values\((\w+), *(\w+)\)", query).groups()
            assert NAME in prometheus.api(f"label/{label}/values", **{"match[]": metric})
    finally:
        if poller is not None:
            poller.stopping.set()
        if prometheus is not None:
            prometheus.close()
        standalone.terminate()
        standalone.wait(20)
        standalone_log.close()
        run.terminate()
    run.wait(60)
    summary = json.loads([line for line in run.log_file.read_text().splitlines() if line.startswith("{")][-1])
    assert summary["records_read"] == total and summary["dead_letters"] == dead
