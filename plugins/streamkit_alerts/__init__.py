"""Alerting on aggregations: rules checked after every flush, alerts to pluggable destinations.

::

    alerts:
      rules:
        - {aggregation: interactions_per_item, field: count, above: 500}
      destinations:
        - {type: log}
        - {type: webhook, url: "https://hooks.example.com/streamkit"}

A rule fires once per group key and window of its aggregation, when the stored
(merged) value crosses the threshold. Fired alerts are kept in the
``streamkit_alerts`` collection (``ALERTS_COLLECTION``) next to the aggregates (the dashboard lists
them) and handed to every destination from a background thread, so a slow
webhook never holds up the pipeline. Destination types come from plugins
through ``register_alert_destinations``; ``log``, ``webhook`` and ``kafka`` are built in.
"""
from __future__ import annotations

import logging
import queue
import threading
import weakref
from typing import Any

from streamkit import ConfigError, Context, Duration, ListOf, Option, hookimpl

from .destinations import KafkaAlerts, LogAlerts, WebhookAlerts
from .rules import ALERTS_COLLECTION, AlertEngine, Rule, check_rules

log = logging.getLogger("streamkit.alerts")


def _check_destinations(value: list) -> list:
    for i, d in enumerate(value):
        if not isinstance(d.get("type"), str) or not d["type"]:
            raise ValueError(f"destination {i}: needs type: <an alert destination type, e.g. log or webhook>")
    return value


SECTION = {
    "rules": Option(ListOf(dict), help="rules: {aggregation, field (default: its main field), above | below, name}",
                    check=check_rules),
    "destinations": Option(ListOf(dict), [{"type": "log"}], "where alerts go: {type: log | webhook | kafka, ...}",
                           check=_check_destinations),
    "sink": Option(int, None, "index in sinks of the mongodb sink to watch (default: the first one)", min=0),
    "drain_timeout": Option(Duration, 10.0, "at shutdown, wait this long for alerts still being sent"),
}


@hookimpl
def register_sections(register) -> None:
    register("alerts", SECTION)


@hookimpl
def register_alert_destinations(register) -> None:
    register("log", LogAlerts)
    register("webhook", WebhookAlerts)
    register("kafka", KafkaAlerts)


_STOP = object()


class _Sender(threading.Thread):
    """Delivers alerts off the writer thread, in the order they fired."""

    def __init__(self, destinations: list) -> None:
        super().__init__(name="streamkit-alerts", daemon=True)
        self.destinations = destinations
        self.todo: queue.Queue = queue.Queue()

    def run(self) -> None:
        while True:
            batch = self.todo.get()
            if batch is _STOP:
                return
            for dest in self.destinations:
                try:
                    dest.send(batch)
                except Exception as exc:  # one broken destination must not silence the others
                    log.error("alerts: %s failed: %s: %s", dest.context.name, type(exc).__name__, exc)


class _Running:
    def __init__(self, engine: AlertEngine, sender: _Sender, destinations: list, drain: float) -> None:
        self.engine, self.sender, self.destinations, self.drain = engine, sender, destinations, drain


_running: "weakref.WeakKeyDictionary[Any, _Running]" = weakref.WeakKeyDictionary()


def _rules(pipeline: Any, raw: list) -> list[Rule]:
    aggs = {a.name: a for a in pipeline.aggregations}
    out = []
    for i, r in enumerate(raw):
        agg = aggs.get(r["aggregation"])
        if agg is None:
            raise ConfigError(f"no aggregation named {r['aggregation']!r} (known: {', '.join(aggs) or 'none'})",
                              file=pipeline.spec.file, key=f"alerts.rules[{i}].aggregation")
        fields = list(agg.aggregator.fields)
        fld = r.get("field") or agg.aggregator.primary or (fields[0] if fields else "")
        if fld not in fields:
            raise ConfigError(f"aggregation {agg.name!r} has no field {fld!r} (its fields: {', '.join(fields)})",
                              file=pipeline.spec.file, key=f"alerts.rules[{i}].field")
        op = "above" if "above" in r else "below"
        threshold = r[op]
        name = r.get("name") or f"{agg.name}.{fld} {op} {threshold:g}"
        out.append(Rule(name=name, aggregation=agg.name, field=fld, op=op, threshold=threshold))
    return out


def _destinations(pipeline: Any, raw: list) -> list:
    registry = pipeline.spec.registry
    out = []
    for i, d in enumerate(raw):
        path = f"alerts.destinations[{i}]"
        reg = registry.get("alert_destination", d["type"]) if registry is not None else None
        if reg is None:
            known = registry.known("alert_destination") if registry is not None else []
            raise ConfigError(f"unknown alert destination type {d['type']!r}; known: {', '.join(known)}",
                              file=pipeline.spec.file, key=f"{path}.type")
        options = {}
        given = {k: v for k, v in d.items() if k != "type"}
        for k in given:
            if k not in reg.cls.options:
                raise ConfigError(f"unknown option (known: {', '.join(reg.cls.options) or 'none'})",
                                  file=pipeline.spec.file, key=f"{path}.{k}")
        for k, opt in reg.cls.options.items():
            if k not in given:
                if opt.required:
                    raise ConfigError(f"missing required option ({opt.help})", file=pipeline.spec.file,
                                      key=f"{path}.{k}")
                given[k] = opt.default
            try:
                options[k] = opt.convert(given[k])
            except ValueError as exc:
                raise ConfigError(str(exc), file=pipeline.spec.file, key=f"{path}.{k}") from None
        out.append(reg.cls(options, Context(pipeline, path)))
    return out


@hookimpl
def startup(pipeline) -> None:
    cfg = pipeline.sections.get("alerts")
    if cfg is None:
        return
    from streamkit_mongodb import aggregates_of, document_id

    aggregates = aggregates_of(pipeline, cfg["sink"], "alerts",
                               missing="alerts compare stored values, so they need a mongodb sink")
    rules = _rules(pipeline, cfg["rules"])
    destinations = _destinations(pipeline, cfg["destinations"])
    opened = []
    try:
        for d in destinations:
            d.open()
            opened.append(d)
    except Exception:
        for d in opened:
            d.close()
        raise
    sender = _Sender(destinations)
    engine = AlertEngine(rules, aggregates.documents, aggregates.db[ALERTS_COLLECTION], pipeline.name,
                         aggregates.collection, document_id, sender.todo.put)
    engine.start()
    sender.start()
    _running[pipeline] = _Running(engine, sender, destinations, cfg["drain_timeout"])


@hookimpl
def flushed(pipeline, flush) -> None:
    running = _running.get(pipeline)
    if running is None:
        return
    from streamkit_mongodb import try_briefly

    # the aggregates are safe; at worst only this flush's check is lost
    try_briefly(f"check flush {flush.seq}", lambda: running.engine.flushed(flush), log)


@hookimpl
def shutdown(pipeline, result) -> None:
    running = _running.pop(pipeline, None)
    if running is None:
        return
    running.sender.todo.put(_STOP)
    running.sender.join(timeout=running.drain)
    if running.sender.is_alive():
        log.warning("alerts: stopped waiting for alert destinations after %.0fs", running.drain)
    for d in running.destinations:
        try:
            d.close()
        except Exception as exc:
            log.warning("alerts: closing %s failed: %s", d.context.name, exc)
