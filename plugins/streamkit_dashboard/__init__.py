"""The live dashboard: a Bottle page and JSON API over what a pipeline wrote to MongoDB.

Inside a pipeline, a ``dashboard:`` section starts it in the same process::

    dashboard:
      port: 8080                          # on 127.0.0.1 unless host says otherwise
      auth_token: ${DASHBOARD_TOKEN:-}    # when set, every request must carry it

and every flush keeps a status document and the summary counters up to date
(also with ``serve: false``, for a standalone dashboard elsewhere)::

    streamkit dashboard --mongo-uri mongodb://127.0.0.1:27017

The core knows nothing of this: it is a section, three lifecycle hooks and a command.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
import weakref
from typing import Any

from streamkit import ConfigError, Duration, Option, echo, hookimpl

log = logging.getLogger("streamkit.dashboard")


def _refresh(value: float) -> float:
    if value < 0.2:
        raise ValueError(f"expected at least 0.2s, got {value!r}")
    return value


SECTION = {
    "host": Option(str, "127.0.0.1", "address to listen on; 127.0.0.1 = this machine only"),
    "port": Option(int, 8080, "port to listen on (0 = any free port)", min=0, max=65535),
    "auth_token": Option(str, None, "token every request must carry; write ${DASHBOARD_TOKEN:-} to take it "
                                    "from the environment"),
    "refresh": Option(Duration, 2.0, "how often the page updates", check=_refresh),
    "serve": Option(bool, True, "serve the page from this process (false: only keep the status "
                                "documents for a standalone dashboard)"),
    "sink": Option(int, None, "index in sinks of the mongodb sink to read (default: the first one)", min=0),
    "user_field": Option(str, "user_id", "record field of the per-user figures"),
    "item_field": Option(str, "item_id", "record field of the per-item figures"),
    "type_field": Option(str, "interaction_type", "record field of the per-type chart"),
}


class _Running:
    def __init__(self) -> None:
        self.status: Any = None
        self.server: Any = None
        self.client: Any = None
        self.owns_client = False  # mongomock:// clients are shared with the sink: never close them


_running: "weakref.WeakKeyDictionary[Any, _Running]" = weakref.WeakKeyDictionary()


def server_for(pipeline: Any) -> Any:
    """The dashboard server a running pipeline started (``.url``), or None."""
    r = _running.get(pipeline)
    return r.server if r else None


def mongo_sink(pipeline: Any, index: int | None, section: str) -> Any:
    """The pipeline's mongodb sink that ``section`` reads (the first one unless ``index`` says)."""
    from streamkit_mongodb import MongoSink

    if index is not None:
        if index >= len(pipeline.sinks) or not isinstance(pipeline.sinks[index], MongoSink):
            raise ConfigError(f"sinks[{index}] is not a mongodb sink", file=pipeline.file,
                              key=f"{section}.sink")
        return pipeline.sinks[index]
    for sink in pipeline.sinks:
        if isinstance(sink, MongoSink):
            return sink
    raise ConfigError("needs a mongodb sink to read from (add one under sinks)", file=pipeline.file,
                      key=section)


def _fields(cfg: dict) -> Any:
    from .meta import SeedFields
    return SeedFields(user=cfg["user_field"], item=cfg["item_field"], type=cfg["type_field"])


@hookimpl
def register_sections(register) -> None:
    register("dashboard", SECTION)


@hookimpl
def startup(pipeline) -> None:
    cfg = pipeline.sections.get("dashboard")
    if cfg is None:
        return
    from streamkit_mongodb import connect, document_id

    from .meta import AggMeta
    from .server import DashboardServer
    from .status import StatusWriter
    from .store import DashboardStore

    sink = mongo_sink(pipeline, cfg["sink"], "dashboard")
    running = _Running()
    # A client of its own: the final status is written at shutdown, after the sink closed its client.
    uri = sink.config["uri"]
    running.owns_client = not uri.startswith("mongomock://")
    running.client = connect(uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000) \
        if running.owns_client else connect(uri)
    db = running.client[sink.config["database"]]
    if cfg["serve"]:
        store = DashboardStore(db, sink.config["collection"],
                               fields=_fields(cfg), metas=[AggMeta.from_spec(a) for a in pipeline.aggregations])
        running.server = DashboardServer(store, host=cfg["host"], port=cfg["port"], token=cfg["auth_token"],
                                         refresh=cfg["refresh"], title=pipeline.name)
        running.server.start()
        echo(f"dashboard: {running.server.url}" + (" (requests need the token)" if cfg["auth_token"] else ""))
        warn_if_open(cfg["host"], cfg["auth_token"])
    running.status = StatusWriter(pipeline, sink, document_id, db=db)
    try:
        running.status.start()
    except Exception:
        _stop(running)
        raise
    _running[pipeline] = running


@hookimpl
def flushed(pipeline, flush) -> None:
    running = _running.get(pipeline)
    if running is not None:
        running.status.flushed(flush)


@hookimpl
def shutdown(pipeline, result) -> None:
    running = _running.pop(pipeline, None)
    if running is not None:
        running.status.stop(result)
        _stop(running)


def warn_if_open(host: str, token: str | None, how: str = "dashboard.auth_token") -> None:
    """One line on stderr when the dashboard listens beyond this machine without a token."""
    if token or is_loopback(host):
        return
    echo(f"streamkit: warning: the dashboard listens on {host} without a token: anyone who can reach this "
         f"machine can read it (set {how})", file=sys.stderr)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


@hookimpl
def reset(pipeline, dry_run) -> dict | None:
    """The counters of the reset aggregations, computed again from what is still stored."""
    cfg = pipeline.sections.get("dashboard")
    if cfg is None:
        return None
    from .status import reset_counters

    sink = mongo_sink(pipeline, cfg["sink"], "dashboard")
    return {"dashboard counters": {"counters recomputed": reset_counters(sink, pipeline, dry_run)}}


def _stop(running: _Running) -> None:
    if running.server is not None:
        running.server.stop()
    if running.client is not None and running.owns_client:
        running.client.close()


@hookimpl
def register_commands(subparsers) -> None:
    p = subparsers.add_parser("dashboard", help="serve the live dashboard of a MongoDB a pipeline writes to",
                              description="Serve the dashboard page and JSON API over the aggregate "
                                          "documents in one MongoDB collection.")
    p.add_argument("--mongo-uri", default=os.environ.get("MONGO_URI", "mongodb://127.0.0.1:27017"),
                   metavar="URI", help="MongoDB to read (default: $MONGO_URI or mongodb://127.0.0.1:27017)")
    p.add_argument("--database", default="interaction_db", metavar="D", help="database (default interaction_db)")
    p.add_argument("--collection", default="aggregations", metavar="C",
                   help="collection of aggregate documents (default aggregations)")
    p.add_argument("--host", default="127.0.0.1", metavar="H", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, metavar="P", help="port to listen on (default 8080)")
    p.add_argument("--auth-token", default=os.environ.get("DASHBOARD_TOKEN") or None, metavar="TOKEN",
                   help="token every request must carry (default: $DASHBOARD_TOKEN)")
    p.add_argument("--refresh", type=_seconds, default=2.0, metavar="SECONDS", help="page update interval")
    p.add_argument("--user-field", default="user_id", help="record field of the per-user figures")
    p.add_argument("--item-field", default="item_id", help="record field of the per-item figures")
    p.add_argument("--type-field", default="interaction_type", help="record field of the per-type chart")
    p.set_defaults(func=_cmd_dashboard)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0.2:
        raise argparse.ArgumentTypeError(f"expected at least 0.2 seconds, got {text!r}")
    return value


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from .cli import run_standalone
    return run_standalone(args)
