"""Document ids and fence field names: stable across processes, pipelines and Python versions."""
from __future__ import annotations

import hashlib

import orjson


def document_id(aggregation: str, key: dict, window_start: float | None) -> str:
    """Deterministic ``_id`` from aggregation, group key and window (stable across processes)."""
    raw = orjson.dumps([aggregation, sorted(key.items()), window_start], default=str)
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def _escape(name: str) -> str:
    return name.replace("%", "%25").replace(".", "%2E").replace("$", "%24").replace("|", "%7C")


def _unescape(name: str) -> str:
    return name.replace("%7C", "|").replace("%24", "$").replace("%2E", ".").replace("%25", "%")


def fence_field(pipeline: str, partition: str) -> str:
    """A pipeline's partition as one field name of ``_fence``: ``<pipeline>|<partition>``, each part
    escaped (no '.', no '$', no '|'), so pipelines sharing a collection keep separate fences."""
    return f"{_escape(pipeline)}|{_escape(partition)}"


def fence_pipeline(field: str) -> str | None:
    """The pipeline a fence field belongs to; None for a field of the unscoped (older) layout."""
    owner, sep, _ = field.partition("|")
    return _unescape(owner) if sep else None
