"""The ``mongodb`` sink: one document per (aggregation, group key, window), merged with bulk upserts.

With ``delivery: exactly_once`` (the default) every document keeps, per pipeline and
source partition, the end position of the last flush merged into it (its *fence*,
``_fence.<pipeline>|<partition>``); a partition's part of a flush is merged only where
that fence is behind, so a replay after a crash or a rebalance changes nothing twice,
and pipelines of other names sharing the collection each count exactly.
Before a flush is applied its exact position range is stored as an *intent* in
the offsets collection; a restart replays an unfinished intent with the same
boundaries. An owner *epoch* per partition stops a zombie from starting a flush
after its partitions moved on. Each offsets record also keeps the pipeline's
*definition* (what its aggregations mean), compared on every start.
``mongomock://`` selects an in-memory store.

Modules, by role: ``client`` (clients, errors, retries), ``ids`` (document ids and fence
names), ``positions`` (positions, intents, epochs), ``updates`` (the aggregator contract as
update expressions), ``sink`` (the write path and reset), ``reading`` (the read handle for
observers), ``mongomock_fast`` (the in-memory speed-up tests and benchmarks opt into).

Public API, for observers and tools: :func:`aggregates_of` and :class:`Aggregates` (see
``reading``), :func:`document_id`, :func:`connect` / :func:`release`, :func:`try_briefly`,
``DUPLICATE_KEY``, :func:`speed_up_mongomock`, and the sink class :class:`MongoSink`.
"""
from __future__ import annotations

from streamkit import hookimpl

from .client import DUPLICATE_KEY, SinkError, StoreRefused, connect, release, try_briefly
from .ids import document_id, fence_field, fence_pipeline
from .mongomock_fast import speed_up_mongomock
from .reading import Aggregates, aggregates_of
from .sink import MongoSink

__all__ = ["Aggregates", "aggregates_of", "document_id", "fence_field", "fence_pipeline", "connect", "release",
           "try_briefly", "DUPLICATE_KEY", "SinkError", "StoreRefused", "speed_up_mongomock", "MongoSink"]


@hookimpl
def register_sinks(register) -> None:
    register("mongodb", MongoSink)
