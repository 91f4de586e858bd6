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
through this plugin's ``register_alert_destinations`` hook (see :mod:`streamkit_alerts.hookspecs`);
``log``, ``webhook`` and ``kafka`` are built in.
"""
from __future__ import annotations

import logging
import queue
import threading
import weakref
from typing import Any

from streamkit import Context, Duration, ListOf, Option, Pipeline, check_options, hookimpl

from . import hookspecs
from .destinations import KafkaAlerts, LogAlerts, WebhookAlerts
from .hookspecs import AlertDestination
from .rules import ALERTS_COLLECTION, AlertEngine, Rule, check_rules

__all__ = ["AlertDestination"]

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
def register_kinds(register) -> None:
    register("alert_destination", hookspecs.register_alert_destinations, AlertDestination)


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
            raise pipeline.config_error(("alerts", "rules", i, "aggregation"),
                                        f"no aggregation named {r['aggregation']!r} (known: {', '.join(aggs) or 'none'})")
        fields = list(agg.aggregator.fields)
        fld = r.get("field") or agg.aggregator.primary or (fields[0] if fields else "")
        if fld not in fields:
            raise pipeline.config_error(("alerts", "rules", i, "field"),
                                        f"aggregation {agg.name!r} has no field {fld!r} (its fields: {', '.join(fields)})")
        op = "above" if "above" in r else "below"
        threshold = r[op]
        name = r.get("name") or f"{agg.name}.{fld} {op} {threshold:g}"
        out.append(Rule(name=name, aggregation=agg.name, field=fld, op=op, threshold=threshold))
    return out


def _destinations(pipeline: Pipeline, raw: list) -> list:
    types = pipeline.types("alert_destination")
    out = []
    for i, d in enumerate(raw):
        path = ("alerts", "destinations", i)
        cls = types.get(d["type"])
        if cls is None:
            raise pipeline.config_error(path + ("type",), f"unknown alert destination type {d['type']!r}; "
                                                          f"known: {', '.join(types)}")
        given = {k: v for k, v in d.items() if k != "type"}
        options = check_options(cls.options, given, pipeline.config_error, path)
        out.append(cls(options, Context(pipeline, f"alerts.destinations[{i}]")))
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
