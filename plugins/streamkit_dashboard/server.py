"""The Bottle app (page, JSON API, server-sent events, ``/metrics``) and the threaded server.

Read-only by construction: only GET routes exist. Every response carries a
Content-Security-Policy that allows no inline script, so even a value that
slipped into markup could not run; the page itself renders values as text.
"""
from __future__ import annotations

import hmac
import json
import logging
import os
import signal
import socket
import socketserver
import threading
import time
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, quote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import bottle
from pymongo.errors import PyMongoError

from streamkit import StreamkitError

from . import prometheus
from .store import MAX_LIMIT, MAX_TOP, DashboardStore, QueryError

log = logging.getLogger("streamkit.dashboard")
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
ASSETS = {"dashboard.js": "application/javascript; charset=utf-8",
          "dashboard.css": "text/css; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),  # the token may be in the page's URL
    ("Cache-Control", "no-store"),
]
MAX_STREAMS = 32           # concurrent server-sent-event connections; more get 503 and poll instead
STREAM_LIFETIME = 600.0    # seconds; the browser reconnects by itself


class DashboardError(StreamkitError):
    """The dashboard could not start (for example, its port is taken)."""

    exit_code = 1


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, default=str, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _json(data: Any, status: int = 200) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(_json_bytes(data), status=status,
                               headers={"Content-Type": "application/json; charset=utf-8"})


def _error(status: int, message: str) -> bottle.HTTPResponse:
    return _json({"error": message}, status)


def _int_param(params: dict, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{name} must be an integer from {low} to {high}, got {raw!r}") from None
    if not low <= value <= high:
        raise QueryError(f"{name} must be an integer from {low} to {high}, got {value}")
    return value


def _params(allowed: tuple[str, ...]) -> dict:
    """The query parameters, each given once and known; ``token`` is always allowed."""
    out = {}
    query = bottle.request.query.decode()  # WSGI gives latin-1; values are UTF-8
    for key in query.keys():
        values = query.getall(key)
        if key == "token":
            continue
        if key not in allowed:
            known = ", ".join(allowed) if allowed else "none"
            raise QueryError(f"unknown query parameter {key!r} (known: {known})")
        if len(values) > 1:
            raise QueryError(f"query parameter {key!r} given {len(values)} times")
        out[key] = values[0]
    return out


class _Cache:
    """One summary per refresh interval for all event streams, whatever their number."""

    def __init__(self, compute: Callable[[], dict], ttl: float) -> None:
        self.compute, self.ttl = compute, ttl
        self.value: bytes | None = None
        self.at = 0.0
        self.lock = threading.Lock()

    def get(self) -> bytes:
        with self.lock:
            if self.value is None or time.monotonic() - self.at >= self.ttl:
                try:
                    self.value = _json_bytes(self.compute())
                except PyMongoError as exc:
                    self.value = _json_bytes({"error": f"MongoDB unavailable: {exc}"})
                self.at = time.monotonic()
            return self.value


def build_app(store: DashboardStore, *, refresh: float = 2.0, token: str | None = None,
              title: str = "streamkit", stopping: threading.Event | None = None) -> Callable:
    """The WSGI application: a Bottle app wrapped in the token check and security headers."""
    app = bottle.Bottle(catchall=True)
    stopping = stopping or threading.Event()
    cache = _Cache(lambda: store.summary(10), max(refresh * 0.5, 0.1))
    streams = threading.BoundedSemaphore(MAX_STREAMS)
    with open(os.path.join(STATIC, "index.html"), encoding="utf-8") as f:
        page = f.read()

    def api(fn: Callable) -> Callable:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return _json(fn(*args, **kwargs))
            except QueryError as exc:
                return _error(exc.status, str(exc))
            except PyMongoError as exc:
                return _error(503, f"MongoDB unavailable: {exc}")
        return wrapper

    @app.get("/")
    def index() -> Any:
        q = bottle.request.query.get("token")
        asset_query = "?token=" + quote(q, safe="") if token and q else ""
        html = page.replace("__ASSET_QUERY__", bottle.html_escape(asset_query))
        html = html.replace("__REFRESH_MS__", str(int(refresh * 1000))).replace("__TITLE__", bottle.html_escape(title))
        return bottle.HTTPResponse(html.encode(), headers={"Content-Type": "text/html; charset=utf-8"})

    @app.get("/static/<name>")
    def static(name: str) -> Any:
        if name not in ASSETS:
            return _error(404, f"no static file {name!r}")
        with open(os.path.join(STATIC, name), "rb") as f:
            return bottle.HTTPResponse(f.read(), headers={"Content-Type": ASSETS[name]})

    @app.get("/api/summary")
    @api
    def summary() -> dict:
        p = _params(("top",))
        return store.summary(_int_param(p, "top", 10, 1, MAX_TOP))

    @app.get("/api/aggregations")
    @api
    def aggregations() -> dict:
        _params(())
        return store.aggregation_list()

    @app.get("/api/aggregations/<name>")
    @api
    def aggregation(name: str) -> dict:
        name = name.encode("latin-1").decode("utf-8", "replace")  # the path arrives as WSGI latin-1
        p = _params(("window", "limit", "sort", "order"))
        limit = _int_param(p, "limit", 20, 1, MAX_LIMIT)
        order = p.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise QueryError(f"order must be 'asc' or 'desc', got {order!r}")
        return store.table(name, window=p.get("window"), limit=limit, sort=p.get("sort") or None, order=order)

    @app.get("/api/alerts")
    @api
    def alerts() -> dict:
        p = _params(("limit",))
        return store.recent_alerts(_int_param(p, "limit", 20, 1, MAX_LIMIT))

    @app.get("/api/events")
    def events() -> Any:
        try:
            _params(())
        except QueryError as exc:
            return _error(400, str(exc))
        if not streams.acquire(blocking=False):
            return _error(503, "too many live connections; poll /api/summary instead")

        def stream() -> Iterator[bytes]:
            try:
                yield f"retry: {int(max(refresh, 1.0) * 1000)}\n\n".encode()
                until = time.monotonic() + STREAM_LIFETIME
                while not stopping.is_set() and time.monotonic() < until:
                    yield b"event: summary\ndata: " + cache.get() + b"\n\n"
                    stopping.wait(refresh)
            finally:
                streams.release()
        return bottle.HTTPResponse(stream(), headers={"Content-Type": "text/event-stream; charset=utf-8",
                                                      "X-Accel-Buffering": "no"})

    @app.get("/healthz")
    def healthz() -> Any:
        try:
            store.ping()
        except PyMongoError as exc:
            return _error(503, f"MongoDB unavailable: {exc}")
        return _json({"status": "ok"})

    @app.get("/metrics")
    def metrics() -> Any:
        try:
            body = prometheus.render(store.health(), store.aggregation_list()["aggregations"],
                                     store.recent_alerts(1)["total"])
        except PyMongoError as exc:
            return _error(503, f"MongoDB unavailable: {exc}")
        return bottle.HTTPResponse(body, headers={"Content-Type": prometheus.CONTENT_TYPE})

    def json_error(err: bottle.HTTPError) -> bytes:
        bottle.response.content_type = "application/json; charset=utf-8"
        if err.status_code == 500:
            log.error("dashboard: %s", err.traceback or err.body)
            return _json_bytes({"error": "internal error"})
        if err.status_code == 405:
            return _json_bytes({"error": "the dashboard is read-only: only GET requests"})
        return _json_bytes({"error": f"no such page: {bottle.request.path}"})

    app.default_error_handler = json_error  # type: ignore[assignment]
    return _guard(app, token)


def _authorized(environ: dict, token: str) -> bool:
    header = environ.get("HTTP_AUTHORIZATION", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else None
    if given is None:
        given = (parse_qs(environ.get("QUERY_STRING", "")).get("token") or [None])[0]
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _guard(app: Callable, token: str | None) -> Callable:
    """Security headers on every response, and the token on every request when one is set."""

    def wsgi(environ: dict, start_response: Callable) -> Any:
        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            return start_response(status, headers + SECURITY_HEADERS, exc_info)

        if token and not _authorized(environ, token):
            start("401 Unauthorized", [("Content-Type", "application/json; charset=utf-8"),
                                       ("WWW-Authenticate", 'Bearer realm="streamkit dashboard"')])
            return [_json_bytes({"error": "this dashboard needs its token: header 'Authorization: Bearer "
                                          "<token>' or ?token=<token>"})]
        return app(environ, start)
    return wsgi


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("dashboard %s: " + format, self.client_address[0], *args)


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    """One thread per connection, so a long-lived event stream blocks nobody."""

    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks DNS for our name (getfqdn); that can hang without a network
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), port
        self.setup_environ()


class DashboardServer:
    """The app on a threaded ``wsgiref`` server: :meth:`start` in a daemon thread, or :meth:`serve`."""

    def __init__(self, store: DashboardStore, *, host: str = "127.0.0.1", port: int = 8080,
                 token: str | None = None, refresh: float = 2.0, title: str = "streamkit") -> None:
        self.store = store
        self.host, self.port = host, port
        self.stopping = threading.Event()
        self.app = build_app(store, refresh=refresh, token=token or None, title=title, stopping=self.stopping)
        self.httpd: _ThreadingServer | None = None
        self.thread: threading.Thread | None = None

    def bind(self) -> None:
        cls = _ThreadingServer
        if ":" in self.host:
            cls = type("_ThreadingServer6", (_ThreadingServer,), {"address_family": socket.AF_INET6})
        try:
            self.httpd = cls((self.host, self.port), _Handler)
        except OSError as exc:
            raise DashboardError(f"dashboard: cannot listen on {self.host}:{self.port}: "
                                 f"{exc.strerror or exc}") from None
        self.httpd.set_app(self.app)
        self.port = self.httpd.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        self.bind()
        assert self.httpd is not None
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="streamkit-dashboard", daemon=True)
        self.thread.start()

    def serve(self) -> None:
        """Serve in this thread until Ctrl-C or SIGTERM (binds first unless :meth:`bind` was called).

        Both signals are taken over here: a process started in the background by a shell
        inherits SIGINT ignored, and a service manager stops with SIGTERM."""
        if self.httpd is None:
            self.bind()
        assert self.httpd is not None
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, signal.default_int_handler)
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stopping.set()
            self.httpd.server_close()
            self.httpd = None

    def stop(self) -> None:
        self.stopping.set()
        if self.httpd is not None:
            if self.thread is not None:
                self.httpd.shutdown()
                self.thread.join(timeout=5)
            self.httpd.server_close()
            self.httpd = None
