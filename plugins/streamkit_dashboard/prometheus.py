"""``/metrics`` in the Prometheus text exposition format, written by ``prometheus_client``.

The dashboard reports other processes (the pipelines whose status documents it reads), not
itself, so each scrape builds its families from those documents and renders them through a
registry of its own: nothing goes into the client's process-global registry.

Every family is listed in :data:`FAMILIES`; ``deploy/grafana/dashboards/streamkit.json`` has one
panel per family, and the monitoring test evaluates each panel's query against a real Prometheus.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

#: every name and label here is of the classic character set, so the text is that of format 0.0.4,
#: which every Prometheus reads
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PROCESS = ["pipeline", "process"]
#: name (as exposed) -> (kind, labels, help)
FAMILIES = {
    "streamkit_up": ("gauge", PROCESS, "1 if the pipeline process reported within its expected interval, else 0."),
    "streamkit_records_read_total": ("counter", PROCESS, "Records the pipeline process has read."),
    "streamkit_records_per_second": ("gauge", PROCESS, "Records read per second over the last seconds."),
    "streamkit_dead_letters_total": ("counter", PROCESS, "Records sent to the dead-letter destination."),
    "streamkit_flushes_total": ("counter", PROCESS, "Flushes made durable in every sink."),
    "streamkit_last_flush_age_seconds": ("gauge", PROCESS, "Seconds since the last flush."),
    "streamkit_consumer_lag": ("gauge", [*PROCESS, "partition"], "Records not yet read, per source partition."),
    "streamkit_aggregation_keys": ("gauge", ["aggregation"], "Documents (group keys and windows) per aggregation."),
    "streamkit_aggregation_value": ("gauge", ["aggregation", "field"],
                                    "Sum of an additive field over an aggregation's documents."),
    "streamkit_alerts_fired": ("gauge", [], "Alerts fired and stored for this collection."),
}


def _family(name: str) -> Metric:
    kind, labels, text = FAMILIES[name]
    if kind == "counter":
        return CounterMetricFamily(name, text, labels=labels)  # it exposes the name with _total
    return GaugeMetricFamily(name, text, labels=labels)


class _Snapshot(Collector):
    """The families of one scrape, for a registry of their own."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = [f for f in families if f.samples]

    def collect(self) -> Iterable[Metric]:
        return self.families


def _number(v: Any) -> float:
    return math.nan if v is None else float(v)


def families(health: dict, aggregations: list[dict], alerts_fired: int) -> list[Metric]:
    """The metric families of one collection: per-process health, per-aggregation size, alerts."""
    fam = {name: _family(name) for name in FAMILIES}
    for p in health["processes"]:
        labels = [str(p["pipeline"]), f"{p['host']}:{p['pid']}"]
        fam["streamkit_up"].add_metric(labels, 1 if p["state"] == "running" else 0)
        fam["streamkit_records_read_total"].add_metric(labels, _number(p["records_read"]))
        fam["streamkit_records_per_second"].add_metric(labels, _number(p["records_per_second"]))
        fam["streamkit_dead_letters_total"].add_metric(labels, _number(p["dead_letters"]))
        fam["streamkit_flushes_total"].add_metric(labels, _number(p["flushes"]))
        if p["last_flush_age"] is not None:
            fam["streamkit_last_flush_age_seconds"].add_metric(labels, p["last_flush_age"])
        for part in p.get("lag") or []:
            fam["streamkit_consumer_lag"].add_metric([*labels, str(part["partition"])], part["lag"])
    for a in aggregations:
        if a.get("keys") is not None:
            fam["streamkit_aggregation_keys"].add_metric([a["name"]], a["keys"])
        for f, v in (a.get("totals") or {}).items():
            fam["streamkit_aggregation_value"].add_metric([a["name"], f], _number(v))
    fam["streamkit_alerts_fired"].add_metric([], alerts_fired)
    return list(fam.values())


def render(health: dict, aggregations: list[dict], alerts_fired: int) -> bytes:
    """The exposition text (UTF-8) for one collection."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(families(health, aggregations, alerts_fired)))
    return generate_latest(registry)
