"""Clients, the errors of the store, and retrying while the server is away."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from streamkit import StreamkitError

log = logging.getLogger("streamkit.mongodb")
#: the server's code for a write that met an existing ``_id`` (or unique key)
DUPLICATE_KEY = 11000

_mock_clients: dict[str, Any] = {}
_mock_lock = threading.Lock()


def transient() -> tuple[type[Exception], ...]:
    """The errors that go away when the server is back (pymongo is imported on first use:
    ``except transient()`` evaluates only when something was raised)."""
    from pymongo.errors import AutoReconnect, ConnectionFailure, NetworkTimeout, ServerSelectionTimeoutError
    return (AutoReconnect, ConnectionFailure, NetworkTimeout, ServerSelectionTimeoutError)


class SinkError(StreamkitError):
    exit_code = 1


class StoreRefused(StreamkitError):
    """What is stored cannot be used (or reset) as asked: the user decides what to do."""


def is_mock(uri: str) -> bool:
    return uri.startswith("mongomock://")


def connect(uri: str, **kwargs: Any) -> Any:
    """A pymongo client for ``uri``; ``mongomock://`` gives one in-memory store per URI and process,
    shared by every caller (close it with :func:`release`)."""
    if is_mock(uri):
        with _mock_lock:
            if uri not in _mock_clients:
                try:
                    import mongomock_ng as mongomock
                except ImportError:  # pragma: no cover - the original package, if that is what is installed
                    import mongomock  # type: ignore[no-redef]
                _mock_clients[uri] = mongomock.MongoClient(tz_aware=True)
            return _mock_clients[uri]
    from pymongo import MongoClient
    return MongoClient(uri, tz_aware=True, **kwargs)


def release(client: Any, uri: str) -> None:
    """Close a client of :func:`connect`; the shared in-memory store of ``mongomock://`` stays."""
    if client is not None and not is_mock(uri):
        client.close()


def retry(what: str, fn: Callable[[], Any], *, name: str, limit: float | None, backoff_max: float,
          stopping: Callable[[], bool]) -> Any:
    """``fn()``, retried with backoff while the server is unreachable: for ever, or until ``limit``
    seconds passed, or (after 10 s) the pipeline is stopping. ``name`` begins the error's line."""
    delay, started, warned = 0.1, time.monotonic(), False
    while True:
        try:
            result = fn()
            if warned:
                log.warning("MongoDB is back; %s succeeded", what)
            return result
        except transient() as exc:
            waited = time.monotonic() - started
            if limit is not None and waited >= limit:
                raise SinkError(f"{name}: MongoDB unreachable for {waited:.0f}s during {what}: {exc}") from None
            if stopping() and waited > 10:
                raise SinkError(f"{name}: stopping while MongoDB is unreachable; "
                                f"positions not acknowledged, nothing lost") from None
            if not warned:
                log.warning("MongoDB unreachable during %s (%s); retrying", what, type(exc).__name__)
                warned = True
            time.sleep(delay)
            delay = min(delay * 2, backoff_max)


def try_briefly(what: str, fn: Callable[[], Any], logger: logging.Logger, tries: int = 3) -> bool:
    """For writes secondary to the pipeline's own (status, alerts): ``fn()``, tried ``tries`` times
    over about a second, then a warning on ``logger`` ("could not <what>") and False."""
    from pymongo.errors import PyMongoError
    for attempt in range(tries):
        try:
            fn()
            return True
        except PyMongoError as exc:
            if attempt == tries - 1:
                logger.warning("%s: could not %s: %s", logger.name.rpartition(".")[2], what, exc)
                return False
            time.sleep(0.2 * 2 ** attempt)
    return False
