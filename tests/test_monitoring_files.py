"""The shipped monitoring files agree with what /metrics serves: one Grafana panel per metric
family, every panel on the provisioned data source. tests/integration/test_monitoring.py runs
each panel's query against a real Prometheus."""
import collections
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_JSON = ROOT / "deploy" / "grafana" / "dashboards" / "streamkit.json"
DATASOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"


def dashboard_queries() -> list[tuple[str, str]]:
    board = json.loads(DASHBOARD_JSON.read_text())
    return [(panel["title"], t["expr"]) for panel in board["panels"] for t in panel.get("targets", [])]


def test_every_panel_queries_the_provisioned_data_source():
    uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    board = json.loads(DASHBOARD_JSON.read_text())
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert panel["targets"] and all(t["datasource"]["uid"] == uid for t in panel["targets"]), panel["title"]
    for var in board["templating"]["list"]:
        assert var["datasource"]["uid"] == uid


def test_one_panel_per_metric_family():
    from streamkit_dashboard.prometheus import FAMILIES
    queried = collections.Counter()
    for _, expr in dashboard_queries():
        names = set(re.findall(r"streamkit_[a-z_]+", expr)) - {"streamkit_up"} or {"streamkit_up"}
        queried.update(names)
    assert set(queried) == set(FAMILIES)
    assert max(queried.values()) == 1
