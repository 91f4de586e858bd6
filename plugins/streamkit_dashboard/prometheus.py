"""``/metrics`` in the Prometheus text exposition format (version 0.0.4).

A dozen gauges and counters read from the status documents: small enough to
write by hand, which keeps the plugin free of a client library and its
process-global registry (a dashboard reports other processes, not itself).
"""
from __future__ import annotations

from typing import Any, Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _value(v: Any) -> str:
    if v is None:
        return "NaN"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


class _Family:
    def __init__(self, name: str, kind: str, help: str) -> None:
        self.name, self.kind, self.help = name, kind, help
        self.samples: list[tuple[dict, Any]] = []

    def add(self, labels: dict, value: Any) -> None:
        self.samples.append((labels, value))

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in self.samples:
            yield f"{self.name}{_labels(labels)} {_value(value)}"


def render(health: dict, aggregations: list[dict], alerts_fired: int) -> str:
    """The exposition text for one collection: per-process health, per-aggregation size, alerts."""
    fam = {name: _Family(name, kind, help) for name, kind, help in [
        ("streamkit_up", "gauge", "1 if the pipeline process reported within its expected interval, else 0."),
        ("streamkit_records_read_total", "counter", "Records the pipeline process has read."),
        ("streamkit_records_per_second", "gauge", "Records read per second over the last seconds."),
        ("streamkit_dead_letters_total", "counter", "Records sent to the dead-letter destination."),
        ("streamkit_flushes_total", "counter", "Flushes made durable in every sink."),
        ("streamkit_last_flush_age_seconds", "gauge", "Seconds since the last flush."),
        ("streamkit_consumer_lag", "gauge", "Records not yet read, per source partition."),
        ("streamkit_aggregation_keys", "gauge", "Documents (group keys and windows) per aggregation."),
        ("streamkit_aggregation_total", "gauge", "Sum of an additive field over an aggregation's documents."),
        ("streamkit_alerts_fired", "gauge", "Alerts fired and stored for this collection."),
    ]}
    for p in health["processes"]:
        labels = {"pipeline": p["pipeline"], "process": f"{p['host']}:{p['pid']}"}
        fam["streamkit_up"].add(labels, 1 if p["state"] == "running" else 0)
        fam["streamkit_records_read_total"].add(labels, p["records_read"])
        fam["streamkit_records_per_second"].add(labels, p["records_per_second"])
        fam["streamkit_dead_letters_total"].add(labels, p["dead_letters"])
        fam["streamkit_flushes_total"].add(labels, p["flushes"])
        if p["last_flush_age"] is not None:
            fam["streamkit_last_flush_age_seconds"].add(labels, p["last_flush_age"])
        for part in p.get("lag") or []:
            fam["streamkit_consumer_lag"].add({**labels, "partition": part["partition"]}, part["lag"])
    for a in aggregations:
        if a.get("keys") is not None:
            fam["streamkit_aggregation_keys"].add({"aggregation": a["name"]}, a["keys"])
        for f, v in (a.get("totals") or {}).items():
            fam["streamkit_aggregation_total"].add({"aggregation": a["name"], "field": f}, v)
    fam["streamkit_alerts_fired"].add({}, alerts_fired)
    lines = [line for f in fam.values() if f.samples for line in f.render()]
    return "\n".join(lines) + "\n"
