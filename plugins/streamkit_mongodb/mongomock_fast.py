"""A faster mongomock for tests and benchmarks: documents looked up by ``_id``.

Opt in with :func:`speed_up_mongomock` (``tests/conftest.py`` and the benchmarks do);
nothing in a pipeline calls it. ``mongomock://`` works the same without it, only slower.
"""
from __future__ import annotations

from typing import Any


def speed_up_mongomock() -> None:
    """Look documents up by ``_id`` instead of scanning the collection for every update.

    mongomock matches every filter against every document, so a flush of n upserts
    into n documents costs n² filter evaluations. A filter with a plain ``_id``
    equality can match only the document stored under that ``_id``; the filter is
    still evaluated on it, so results are unchanged. The sink's own fence conditions
    (``_fence.<p>: {$not: {$gte: end}}``) are checked directly rather than through
    mongomock's general filter code, which would double the cost of a flush.

    Patches mongomock's ``Collection`` class for the whole process (once; mongomock's own
    lookup stays reachable as ``Collection._iter_documents.__wrapped__``).
    """
    from mongomock_ng import collection as mcoll, filtering

    def applies(filter: dict, doc: dict) -> bool:  # noqa: A002
        fences = None
        for k, v in filter.items():
            if k == "_id":
                continue
            if not (k.startswith("_fence.") and type(v) is dict and len(v) == 1 and "$not" in v):
                return filtering.filter_applies(filter, doc)
            cond = v["$not"]
            if not (type(cond) is dict and len(cond) == 1 and "$gte" in cond):
                return filtering.filter_applies(filter, doc)
            if fences is None:
                fences = doc.get("_fence")
                fences = fences if isinstance(fences, dict) else {}
            have = fences.get(k[7:])
            if type(have) in (int, float) and have >= cond["$gte"]:
                return False
        return True

    cls = mcoll.Collection
    if hasattr(cls._iter_documents, "__wrapped__"):
        return
    original = cls._iter_documents

    def _iter_documents(self: Any, filter: Any) -> Any:  # noqa: A002 - mongomock's signature
        _id = filter.get("_id") if isinstance(filter, dict) else None
        if isinstance(_id, (str, int)) and not isinstance(_id, bool):
            store = self._store
            if _id in store:
                doc = store[_id]
                return iter([doc] if applies(filter, doc) else [])
            return iter([])
        return original(self, filter)

    # tests put mongomock's own lookup back, to check the fence conditions with its matcher
    _iter_documents.__wrapped__ = original  # type: ignore[attr-defined]
    cls._iter_documents = _iter_documents
