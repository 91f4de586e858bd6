"""The public read handle of a ``mongodb`` sink, for observers (the dashboard, alerts, any plugin).

An observer finds the handle of a pipeline's sink with :func:`aggregates_of` (in ``startup``),
reads the aggregates through it, and in ``flushed`` asks which documents the flush created::

    from streamkit_mongodb import aggregates_of, document_id

    store = aggregates_of(pipeline, None, "myplugin")   # the first mongodb sink
    store.documents.find({"aggregation": "per_item"})   # a pymongo Collection
    store.created(flush)                                # _ids of the documents this flush created
"""
from __future__ import annotations

from typing import Any

from streamkit import ConfigError

from .client import connect, release

#: flushes whose created documents a handle remembers
CREATED_KEPT = 16


class Aggregates:
    """Where one ``mongodb`` sink keeps its aggregates, and what each of its flushes created.

    ``uri``, ``database`` and ``collection`` name the place; ``db`` (a pymongo ``Database``) and
    ``documents`` (the ``Collection`` of aggregate documents, one per aggregation, key and window;
    see "The MongoDB document" in the README) go through the sink's client, open from the sink's
    ``open`` (or ``reset``) until its ``close``. :meth:`connect` gives a client of one's own, for
    reads after the sink closed.
    """

    def __init__(self, sink: Any) -> None:
        self._owner = sink
        self._created: dict[int, set] = {}

    @property
    def uri(self) -> str:
        return self._owner.config["uri"]

    @property
    def database(self) -> str:
        return self._owner.config["database"]

    @property
    def collection(self) -> str:
        return self._owner.config["collection"]

    @property
    def db(self) -> Any:
        return self._owner.db

    @property
    def documents(self) -> Any:
        return self._owner.coll

    def connect(self, timeout: float = 5.0) -> Any:
        """A client of the caller's own to the same server (for ``mongomock://``: the shared
        in-memory store); close it with :meth:`release`."""
        ms = int(timeout * 1000)
        return connect(self.uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms)

    def release(self, client: Any) -> None:
        release(client, self.uri)

    def created(self, flush: Any) -> frozenset:
        """The ``_id`` s of the documents the sink created writing ``flush`` (an upsert creates a
        document once, whichever process wins): empty for a flush it did not write, or one of more
        than the last 16. Safe from any thread once the sink's ``write`` returned."""
        return frozenset(self._created.get(flush.seq, ()))

    def _written(self, seq: int, created: set) -> None:
        """Called by the sink as it starts writing flush ``seq``; it fills ``created`` as it goes."""
        self._created[seq] = created
        while len(self._created) > CREATED_KEPT:
            del self._created[next(iter(self._created))]


def aggregates_of(pipeline: Any, index: int | None, section: str,
                  missing: str = "needs a mongodb sink to read from") -> Aggregates:
    """The read handle of the pipeline's mongodb sink that configuration section ``section`` reads:
    ``sinks[index]``, or the first mongodb sink. A :class:`ConfigError` on ``<section>.sink`` if
    ``sinks[index]`` is not one, or on ``<section>`` (``missing``, and how to fix it) if there is none."""
    sinks = pipeline.sinks
    if index is not None:
        handle = getattr(sinks[index], "aggregates", None) if index < len(sinks) else None
        if not isinstance(handle, Aggregates):
            raise ConfigError(f"sinks[{index}] is not a mongodb sink", file=pipeline.file,
                              key=f"{section}.sink")
        return handle
    for sink in sinks:
        handle = getattr(sink, "aggregates", None)
        if isinstance(handle, Aggregates):
            return handle
    raise ConfigError(f"{missing} (add one under sinks)", file=pipeline.file, key=section)
