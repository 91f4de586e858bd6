"""The sketch merge kinds, bounds and estimates of ``streamkit.merging`` as MongoDB expressions.

Every expression uses only operators MongoDB (5.0 and later), SecantusDB and mongomock evaluate
alike (mongomock lacks ``$sortArray``, ``$range``, ``$zip`` and ``$setField``), and repeats the
floating-point operations of ``streamkit.estimates`` in the same order, so a document's
estimates equal what Python computes from its stored sketch.

- ``max_by_key`` (HyperLogLog registers): one ``$max`` per register the flush sets, at
  ``<field>.<index>``. The estimate needs only the number of registers above 0 and an integer
  sum over their ranks: ``_<field>_n`` and ``_<field>_s`` are kept up to date in the same stage
  from the registers' values before it, so an update costs what the flush brings, not the
  size of the sketch.
- ``add_aligned`` (quantile histograms): the stored and the flush's counts added position by
  position with ``$slice``/``$concatArrays``; the ``Span`` bound is applied in the same
  expression, so no histogram ever holds more than its width.
- ``count_by_key`` (frequent items): one ``$add`` per value the flush counts, at
  ``<field>.<hash>.count``; the ``Frequent`` bound is a stage of its own, after every merge.
"""
from __future__ import annotations

from typing import Any, Callable

from streamkit import estimates

HLL_ALPHA, HLL_SCALE = estimates.HLL_ALPHA, estimates.HLL_SCALE

#: 2**(HLL_SCALE - min(rank, HLL_SCALE)) for ranks above 0, 0 for rank 0 (indexed by rank, 0..64)
_TERMS = [1 << (HLL_SCALE - min(r, HLL_SCALE)) if r else 0 for r in range(65)]
#: the bits of a 63-bit count, highest first (a binary search for an order statistic)
_BITS = [1 << b for b in range(62, -1, -1)]
#: zeros for padding histograms: 2**15 = 32768, the most buckets a percentiles option allows
_ZERO_DOUBLINGS = 15


def _let(names: dict, expr: Any) -> dict:
    return {"$let": {"vars": names, "in": expr}}


def _cond(test: Any, then: Any, otherwise: Any) -> dict:
    return {"$cond": [test, then, otherwise]}


def _slice(array: Any, position: Any, n: Any) -> dict:
    """``$slice`` of ``n`` elements from ``position`` (>= 0), [] when n <= 0 (which MongoDB refuses)."""
    return _cond({"$gt": [n, 0]}, {"$slice": [array, position, n]}, [])


def _zeros(n: Any) -> dict:
    """``n`` zeros (0 <= n <= 32768), built by doubling rather than shipped in every update."""
    expr: Any = _slice("$$z13", 0, n)
    for i in range(_ZERO_DOUBLINGS, 0, -1):
        expr = _let({f"z{i}": {"$concatArrays": [f"$$z{i - 1}", f"$$z{i - 1}"]}}, expr)
    return _let({"z0": [0]}, expr)


# -- merges: field, the flush's stored value, the field's bound -> $set expressions --------------

def max_by_key(f: str, value: dict, bound: Any) -> dict:
    if not value:  # nothing that can change the registers
        return {f: {"$ifNull": ["$" + f, {"$literal": {}}]}}
    n_field, s_field = f"_{f}_n", f"_{f}_s"
    out: dict = {n_field: None, s_field: None}  # first: mongomock evaluates a stage's fields in order
    count: list = []
    terms: list = []
    for k, rank in value.items():
        path = f"{f}.{k}"
        old = {"$ifNull": ["$" + path, 0]}
        out[path] = {"$max": [old, rank]}
        count.append({"$cond": [old, 0, 1]})  # a register that was 0 is one more above 0
        terms.append({"$arrayElemAt": [f"$$r{rank}", old]})  # what the sum gains if rank > old
    ranks = sorted(set(value.values()))
    gains = {f"r{r}": {"$literal": [_TERMS[r] - _TERMS[o] if o < r else 0 for o in range(65)]} for r in ranks}
    out[n_field] = {"$add": [{"$ifNull": ["$" + n_field, 0]}, *count]}
    out[s_field] = _let(gains, {"$add": [{"$ifNull": ["$" + s_field, 0]}, *terms]})
    return out


def add_aligned(f: str, value: dict, bound: Any) -> dict:
    """The stored histogram ``{offset, counts}`` plus the flush's, kept to the ``Span`` width:
    positions below the ``width`` highest add to the lowest kept (``streamkit.Span``)."""
    b, counts = value["offset"], value["counts"]
    if not counts:
        return {f: {"$ifNull": ["$" + f, {"$literal": value}]}}
    lb = len(counts)
    width = bound.width if bound is not None else 1 << _ZERO_DOUBLINGS
    lit = {"offset": b, "counts": counts}
    # A: stored counts at offset a; B: the flush's at offset b; kept: positions cut .. hi-1
    below_a = _let({"n": {"$min": ["$$la", {"$add": [{"$subtract": ["$$cut", "$$a"]}, 1]}]}},
                   _cond({"$gt": ["$$n", 0]}, {"$sum": {"$slice": ["$$sc", 0, "$$n"]}}, 0))
    below_b = _let({"n": {"$min": [lb, {"$add": [{"$subtract": ["$$cut", b]}, 1]}]}},
                   _cond({"$gt": ["$$n", 0]}, {"$sum": {"$slice": [{"$literal": counts}, 0, "$$n"]}}, 0))
    drop_a = {"$max": [0, {"$subtract": [{"$add": ["$$cut", 1]}, "$$a"]}]}
    drop_b = {"$max": [0, {"$subtract": [{"$add": ["$$cut", 1]}, b]}]}
    # the stored counts above cut, padded with zeros to the positions cut+1 .. hi-1
    padded = _let({"ac": _slice("$$sc", "$$da", {"$subtract": ["$$la", "$$da"]}),
                   "a2": {"$max": ["$$a", {"$add": ["$$cut", 1]}]}},
                  {"$concatArrays": [_zeros({"$subtract": [{"$subtract": ["$$a2", "$$cut"]}, 1]}), "$$ac",
                                     _zeros({"$subtract": [{"$subtract": ["$$hi", "$$a2"]}, {"$size": "$$ac"}]})]})
    # the flush's counts above cut, added where they fall
    tail = _let({"bc": _slice({"$literal": counts}, "$$db", {"$subtract": [lb, "$$db"]}),
                 "j": {"$subtract": [{"$subtract": [{"$max": [b, {"$add": ["$$cut", 1]}]}, "$$cut"]}, 1]}},
                _let({"lbc": {"$size": "$$bc"}},
                     {"$concatArrays": [
                         _slice("$$pa", 0, "$$j"),
                         {"$map": {"input": _slice({"$literal": list(range(lb))}, 0, "$$lbc"), "as": "i",
                                   "in": {"$add": [{"$arrayElemAt": ["$$bc", "$$i"]},
                                                   {"$arrayElemAt": ["$$pa", {"$add": ["$$j", "$$i"]}]}]}}},
                         _slice("$$pa", {"$add": ["$$j", "$$lbc"]},
                                {"$subtract": [{"$size": "$$pa"}, {"$add": ["$$j", "$$lbc"]}]})]}))
    merged = _let({"lo": {"$min": ["$$a", b]}, "hi": {"$max": [{"$add": ["$$a", "$$la"]}, b + lb]}},
                  _let({"cut": {"$max": ["$$lo", {"$subtract": ["$$hi", width]}]}},
                       _let({"below": {"$add": [below_a, below_b]}, "da": drop_a, "db": drop_b},
                            _let({"pa": padded},
                                 {"offset": "$$cut", "counts": {"$concatArrays": [["$$below"], tail]}}))))
    stored = {"$ifNull": ["$" + f, {"$literal": {"offset": b, "counts": []}}]}
    expr = _let({"s": stored}, _let({"a": "$$s.offset", "sc": "$$s.counts", "la": {"$size": "$$s.counts"}},
                                    _cond({"$eq": ["$$la", 0]}, {"$literal": lit}, merged)))
    return {f: expr}


def count_by_key(f: str, value: dict, bound: Any) -> dict:
    if not value:  # the flush's own summary kept nothing (every value below its capacity cut)
        return {f: {"$ifNull": ["$" + f, {"$literal": {}}]}}
    out: dict = {}
    for k, e in value.items():
        path = f"{f}.{k}"
        out[path + ".count"] = {"$add": [{"$ifNull": ["$" + path + ".count", 0]}, e["count"]]}
        out[path + ".value"] = {"$literal": e["value"]}
    return out


MERGES: dict[str, Callable[[str, Any, Any], dict]] = {
    "max_by_key": max_by_key, "add_aligned": add_aligned, "count_by_key": count_by_key}


# -- bounds applied after the merges (Span is applied by add_aligned itself) --------------------

def frequent(f: str, bound: Any) -> dict:
    """Misra-Gries: over ``capacity`` values, take the (capacity+1)-th largest count from each."""
    capacity = bound.capacity
    # the (capacity+1)-th largest count: the largest t with capacity+1 counts >= t, bit by bit
    threshold = _let({"mx": {"$max": {"$map": {"input": "$$a", "as": "e", "in": "$$e.v.count"}}}},
                     {"$reduce": {"input": {"$filter": {"input": {"$literal": _BITS}, "as": "b",
                                                        "cond": {"$lte": ["$$b", "$$mx"]}}},
                                  "initialValue": 0,
                                  "in": _cond({"$gte": [{"$size": {"$filter": {
                                      "input": "$$a", "as": "e",
                                      "cond": {"$gte": ["$$e.v.count", {"$add": ["$$value", "$$this"]}]}}}},
                                      capacity + 1]}, {"$add": ["$$value", "$$this"]}, "$$value")}})
    cut = _let({"t": threshold}, {"$arrayToObject": {"$map": {
        "input": {"$filter": {"input": "$$a", "as": "e", "cond": {"$gt": ["$$e.v.count", "$$t"]}}},
        "as": "e", "in": {"k": "$$e.k", "v": {"value": "$$e.v.value",
                                               "count": {"$subtract": ["$$e.v.count", "$$t"]}}}}}})
    return _let({"a": {"$objectToArray": {"$ifNull": ["$" + f, {}]}}},
                _cond({"$lte": [{"$size": "$$a"}, capacity]}, "$" + f, cut))


BOUNDS: dict[str, Callable[[str, Any], Any]] = {"frequent": frequent}


# -- estimates: the Expr arguments -> an aggregation expression ---------------------------------

def _field(e: Any) -> str:
    if e.op != "field":
        raise TypeError(f"a sketch estimate reads a stored field, not {e!r}")
    return e.args[0]


def hll_estimate(registers: Any, precision: Any) -> dict:
    f, p = _field(registers), int(precision.args[0])
    m = 1 << p
    n, s = {"$ifNull": [f"$_{f}_n", 0]}, {"$ifNull": [f"$_{f}_s", 0]}
    limit = p + estimates.HLL_DEPTH
    tail: Any = f"$$y{limit}"  # estimates._sigma_tail, unrolled: a step is evaluated only if needed
    for d in range(limit - 1, 0, -1):
        y = f"$$y{d}"
        tail = _cond({"$lt": [y, estimates.HLL_TINY]}, y, _let(
            {f"y{d + 1}": {"$multiply": [y, y]}}, {"$add": [y, {"$multiply": [2, tail]}]}))
    z = {"$add": ["$$x", _let({"y1": {"$multiply": ["$$x", "$$x"]}}, tail)]}
    est = {"$divide": [HLL_ALPHA * m * m, {"$add": [{"$multiply": [m, z]}, {"$multiply": ["$$s", 2.0 ** -HLL_SCALE]}]}]}
    return _let({"n": n, "s": s}, _cond({"$eq": ["$$n", 0]}, 0, _let(
        {"x": {"$divide": [{"$subtract": [m, "$$n"]}, m]}},
        {"$toLong": {"$floor": {"$add": [est, 0.5]}}})))


def _key_at(hist: str, rank: Any) -> dict:
    """The position where the running count of ``hist`` first passes ``rank`` (else the last): a
    binary search whose steps each add a prefix of the counts (``$sum`` of a ``$slice``), so the
    expression evaluates 15 steps, not one per bucket."""
    counts = f"{hist}.counts"
    step = _let({"mid": {"$toInt": {"$floor": {"$divide": [{"$add": ["$$value.lo", "$$value.hi"]}, 2]}}}},
                _cond({"$gt": [{"$sum": {"$slice": [counts, 0, {"$add": ["$$mid", 1]}]}}, "$$r"]},
                      {"lo": "$$value.lo", "hi": "$$mid"}, {"lo": {"$add": ["$$mid", 1]}, "hi": "$$value.hi"}))
    search = {"$reduce": {"input": {"$literal": list(range(_ZERO_DOUBLINGS))},
                          "initialValue": {"lo": 0, "hi": {"$subtract": [{"$size": counts}, 1]}},
                          "in": _cond({"$lt": ["$$value.lo", "$$value.hi"]}, step, "$$value")}}
    return _let({"r": rank}, {"$add": [f"{hist}.offset", {"$min": [_let({"found": search}, "$$found.lo"),
                                                                     {"$subtract": [{"$size": counts}, 1]}]}]})


def quantile(positive: Any, negative: Any, zero: Any, count: Any, low: Any, high: Any, q: Any, gamma: Any) -> dict:
    q, g = q.args[0], gamma.args[0]
    empty = {"$literal": {"offset": 0, "counts": []}}

    def value(key: Any) -> dict:
        return {"$divide": [{"$multiply": [2, {"$pow": [g, key]}]}, 1 + g]}

    v = _cond({"$lt": ["$$rank", "$$below"]},
              {"$multiply": [-1, value(_key_at("$$neg", {"$subtract": [{"$subtract": ["$$below", 1]}, "$$rank"]}))]},
              _cond({"$lt": ["$$rank", {"$add": ["$$below", "$$zero"]}]}, 0.0,
                    value(_key_at("$$pos", {"$subtract": [{"$subtract": ["$$rank", "$$below"]}, "$$zero"]}))))
    body = _let({"neg": {"$ifNull": ["$" + _field(negative), empty]}, "pos": {"$ifNull": ["$" + _field(positive), empty]},
                 "zero": {"$ifNull": ["$" + _field(zero), 0]},
                 "rank": {"$multiply": [q, {"$subtract": ["$$c", 1]}]}},
                _let({"below": {"$sum": "$$neg.counts"}},
                     {"$min": [{"$max": [v, "$" + _field(low)]}, "$" + _field(high)]}))
    if q <= 0 or q >= 1:
        body = "$" + _field(low if q <= 0 else high)
    return _let({"c": {"$ifNull": ["$" + _field(count), 0]}}, _cond({"$gt": ["$$c", 0]}, body, None))


def top_entries(items: Any, k: Any) -> dict:
    f, k = _field(items), int(k.args[0])
    rest = "$$value.rest"
    step = _let({"mc": {"$max": {"$map": {"input": rest, "as": "e", "in": "$$e.v.count"}}}}, _let(
        {"pick": {"$min": {"$map": {"input": {"$filter": {"input": rest, "as": "e",
                                                          "cond": {"$eq": ["$$e.v.count", "$$mc"]}}},
                                    "as": "e", "in": "$$e.k"}}}},
        {"out": {"$concatArrays": ["$$value.out", {"$map": {
            "input": {"$filter": {"input": rest, "as": "e", "cond": {"$eq": ["$$e.k", "$$pick"]}}},
            "as": "e", "in": {"value": "$$e.v.value", "count": "$$e.v.count"}}}]},
         "rest": {"$filter": {"input": rest, "as": "e", "cond": {"$ne": ["$$e.k", "$$pick"]}}}}))
    scan = {"$reduce": {"input": {"$literal": list(range(k))},
                        "initialValue": {"out": [], "rest": {"$objectToArray": {"$ifNull": ["$" + f, {}]}}},
                        "in": _cond({"$eq": [{"$size": rest}, 0]}, "$$value", step)}}
    return _let({"r": scan}, "$$r.out")


ESTIMATES: dict[str, Callable[..., Any]] = {
    "hll_estimate": hll_estimate, "quantile": quantile, "top_entries": top_entries}
