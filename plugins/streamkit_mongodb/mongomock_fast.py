"""A faster mongomock: documents looked up by ``_id``, and the closed-windows filters matched
directly.

The sink's own in-memory collection (``mongomock://``) gets it through :func:`fast_collection`,
an attribute of that one collection object, so the default pipeline's flushes stay linear in
the documents they touch; no class of mongomock's is changed for the process. Tests and
benchmarks that want every mongomock collection fast opt in with :func:`speed_up_mongomock`.
``mongomock://`` gives the same results without either, only slower.
"""
from __future__ import annotations

import types
from typing import Any

#: tests turn this off to have mongomock's own matcher judge the sink's fence conditions
enabled = True


def fast_collection(collection: Any) -> Any:
    """``collection`` (a mongomock collection the sink owns), looking its documents up by ``_id``."""
    lookup = _by_id(lambda self, filter: type(self)._iter_documents(self, filter))  # noqa: A006
    collection._iter_documents = types.MethodType(lookup, collection)
    return collection


def _by_id(otherwise: Any) -> Any:
    """mongomock's ``_iter_documents`` for an ``_id`` equality; ``otherwise`` for other filters."""
    from mongomock_ng import filtering

    def _iter_documents(self: Any, filter: Any) -> Any:  # noqa: A002 - mongomock's signature
        _id = filter.get("_id") if enabled and isinstance(filter, dict) else None
        if isinstance(_id, (str, int)) and not isinstance(_id, bool):
            store = self._store
            if _id in store:
                doc = store[_id]
                return iter([doc] if _applies(filter, doc, filtering) else [])
            return iter([])
        if enabled and isinstance(filter, dict) and set(filter) == _WINDOWS_FILTER:
            found = _windows(self._store, filter, filtering)
            if found is not None:
                return iter(found)
        return otherwise(self, filter)
    return _iter_documents


#: the closed-windows filters (streamkit_mongodb.closed): aggregation, final and window.end
_WINDOWS_FILTER = {"aggregation", "final", "window.end"}
_RANGE = {"$lte": lambda a, b: a <= b, "$lt": lambda a, b: a < b, "$gt": lambda a, b: a > b,
          "$gte": lambda a, b: a >= b}


def _windows(store: Any, filter: dict, filtering: Any) -> list | None:  # noqa: A002
    """The documents a closed-windows filter matches, by direct comparisons (mongomock's general
    matcher costs a hundred times more per document); None: a shape it does not know."""
    name, final, end = filter["aggregation"], filter["final"], filter["window.end"]
    if not isinstance(name, str) or not isinstance(end, dict) or not set(end) <= set(_RANGE):
        return None
    if final is True:
        want_final = True
    elif final == {"$ne": True}:
        want_final = False
    else:
        return None
    out = []
    try:
        for doc in list(store.documents):
            if doc.get("aggregation") != name or (doc.get("final") is True) is not want_final:
                continue
            e = (doc.get("window") or {}).get("end")
            if e is None or not all(_RANGE[op](e, v) for op, v in end.items()):
                continue
            out.append(doc)
    except TypeError:  # dates of different kinds: let mongomock decide
        return None
    return out


def _applies(filter: dict, doc: dict, filtering: Any) -> bool:  # noqa: A002
    """Does ``filter`` (an ``_id`` equality, plus the sink's fence conditions) match ``doc``?"""
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
    from mongomock_ng import collection as mcoll

    cls = mcoll.Collection
    if hasattr(cls._iter_documents, "__wrapped__"):
        return
    original = cls._iter_documents
    _iter_documents = _by_id(original)

    # tests put mongomock's own lookup back, to check the fence conditions with its matcher
    _iter_documents.__wrapped__ = original  # type: ignore[attr-defined]
    cls._iter_documents = _iter_documents
