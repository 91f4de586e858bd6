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

from streamkit import Duration, Option, echo, hookimpl

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
    def __init__(self, aggregates: Any) -> None:
        self.aggregates = aggregates  # the mongodb sink's read handle
        self.status: Any = None
        self.server: Any = None
        self.client: Any = None


_running: "weakref.WeakKeyDictionary[Any, _Running]" = weakref.WeakKeyDictionary()


def server_for(pipeline: Any) -> Any:
    """The dashboard server a running pipeline started (``.url``), or None."""
    r = _running.get(pipeline)
    return r.server if r else None


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
    from streamkit_mongodb import aggregates_of, document_id

    from .meta import AggMeta
    from .server import DashboardServer
    from .status import StatusWriter
    from .store import DashboardStore

    aggregates = aggregates_of(pipeline, cfg["sink"], "dashboard")
    running = _Running(aggregates)
    # A client of its own: the final status is written at shutdown, after the sink closed its client.
    running.client = aggregates.connect()
    db = running.client[aggregates.database]
    if cfg["serve"] and pipeline.worker[0] == 0:  # of --workers, one serves (the status is per process)
        store = DashboardStore(db, aggregates.collection,
                               fields=_fields(cfg), metas=[AggMeta.from_spec(a) for a in pipeline.aggregations])
        running.server = DashboardServer(store, host=cfg["host"], port=cfg["port"], token=cfg["auth_token"],
                                         refresh=cfg["refresh"], title=pipeline.name)
        running.server.start()
        echo(f"dashboard: {running.server.url}" + (" (requests need the token)" if cfg["auth_token"] else ""))
        warn_if_open(cfg["host"], cfg["auth_token"])
    running.status = StatusWriter(pipeline, aggregates, document_id, db=db)
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
    from streamkit_mongodb import aggregates_of

    from .status import reset_counters

    aggregates = aggregates_of(pipeline, cfg["sink"], "dashboard")
    return {"dashboard counters": {"counters recomputed": reset_counters(aggregates, pipeline, dry_run)}}


def _stop(running: _Running) -> None:
    if running.server is not None:
        running.server.stop()
    running.aggregates.release(running.client)


#: the section's options the standalone command takes too, as --host, --port, ...
COMMAND_OPTIONS = ("host", "port", "auth_token", "refresh", "user_field", "item_field", "type_field")


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
    for name in COMMAND_OPTIONS:
        opt = SECTION[name]
        if name == "auth_token":
            default = os.environ.get("DASHBOARD_TOKEN") or None
            text = "token every request must carry (default: $DASHBOARD_TOKEN)"
        else:
            default, text = opt.default, f"{opt.help} (default {opt.default})"
        p.add_argument("--" + name.replace("_", "-"), type=_argument(name), default=default,
                       metavar=name.split("_")[-1].upper(), help=text)
    p.set_defaults(func=_cmd_dashboard)


def _argument(name: str) -> Any:
    """The command-line form of a section option: the same conversion and checks."""
    opt = SECTION[name]

    def convert(text: str) -> Any:
        try:
            if opt.kind is int:
                if not text.isdigit():
                    raise ValueError(text)
                return opt.convert(int(text))
            return opt.convert(text)
        except ValueError as exc:
            if opt.kind is int:
                raise argparse.ArgumentTypeError(f"expected a {name} from {opt.min} to {opt.max}, "
                                                 f"got {text!r}") from None
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from .cli import run_standalone
    return run_standalone(args)
