"""What a sketch's stored form says: the formulas behind :func:`streamkit.merging.hll_estimate`,
:func:`~streamkit.merging.quantile` and :func:`~streamkit.merging.top_entries`, in Python.

A store translates the same formulas into its own language and must give the same values: each
is written as the sequence of floating-point operations a store repeats (no sum whose rounding
depends on the order of a map's keys), so a stored sketch gives one estimate wherever it is read.
"""
from __future__ import annotations

import math
from typing import Any

#: 1 / (2 ln 2): the HyperLogLog constant for many registers (Ertl 2017)
HLL_ALPHA = 0.7213475204444817
#: the estimate's sum of 2**-rank, scaled to integers by 2**HLL_SCALE (exact, whatever the order of
#: the registers); a rank above HLL_SCALE counts as HLL_SCALE, which changes the sum by less than
#: 2**-40 and needs about 2**40 distinct values per register to happen
HLL_SCALE = 40


def hll_terms(ranks: Any) -> tuple[int, int]:
    """(registers above 0, sum of 2**(HLL_SCALE - min(rank, HLL_SCALE)) over them): all the
    estimate needs of the registers, in integers."""
    n = s = 0
    for r in ranks:
        if r > 0:
            n += 1
            s += 1 << (HLL_SCALE - min(r, HLL_SCALE))
    return n, s


def hll_from_terms(n: int, s: int, precision: int) -> int:
    """Ertl's improved estimator ("New cardinality estimation algorithms for HyperLogLog
    sketches", 2017) from :func:`hll_terms`: no bias tables, no switch to linear counting, and
    close to the true count from a handful of values up to billions."""
    if n == 0:
        return 0
    m = 1 << precision
    x = (m - n) / m
    z = x + _sigma_tail(x * x, 1, precision + HLL_DEPTH)
    est = HLL_ALPHA * m * m / (m * z + s * 2.0 ** -HLL_SCALE)
    return math.floor(est + 0.5)


#: sigma(x) = x + sum over k >= 1 of x**(2**k) * 2**(k-1), written as x + g(x*x) with
#: g(y) = y + 2 g(y*y), stopped where y < HLL_TINY (the rest is below y * 2**-59) or after
#: precision + HLL_DEPTH steps (enough for y to fall below HLL_TINY while a register is 0)
HLL_TINY = 2.0 ** -60
HLL_DEPTH = 7


def _sigma_tail(y: float, depth: int, limit: int) -> float:
    if y < HLL_TINY or depth == limit:
        return y
    return y + 2 * _sigma_tail(y * y, depth + 1, limit)


def hll_estimate(registers: dict | None, precision: int) -> int:
    """The distinct values behind a register map (index -> rank; missing index: rank 0)."""
    n, s = hll_terms((registers or {}).values())
    return hll_from_terms(n, s, int(precision))


def bucket_value(index: int, gamma: float) -> float:
    """The value reported for log bucket ``index``, which holds (gamma**(index-1), gamma**index]:
    within (gamma-1)/(gamma+1), the relative accuracy, of every value in it."""
    return 2 * gamma ** index / (1 + gamma)


def _key_at(hist: dict, rank: float) -> int:
    cum = 0
    for i, c in enumerate(hist["counts"]):
        cum += c
        if cum > rank:
            return hist["offset"] + i
    return hist["offset"] + len(hist["counts"]) - 1


def quantile(positive: dict | None, negative: dict | None, zero: int | None, count: int | None,
             low: float | None, high: float | None, q: float, gamma: float) -> float | None:
    """The value at rank q*(count-1) of a log-bucketed histogram, clamped to [low, high] (the
    exact smallest and largest, which are also the 0 and 1 quantiles): within the relative
    accuracy of the true value at that rank."""
    if not count:
        return None
    if q <= 0 or q >= 1:  # the extremes are kept exactly
        return low if q <= 0 else high
    empty = {"offset": 0, "counts": []}
    positive, negative = positive or empty, negative or empty
    rank = q * (count - 1)
    below = sum(negative["counts"])
    if rank < below:
        v = -bucket_value(_key_at(negative, below - 1 - rank), gamma)
    elif rank < below + (zero or 0):
        v = 0.0
    else:
        v = bucket_value(_key_at(positive, rank - below - (zero or 0)), gamma)
    return min(max(v, low), high)


def top_entries(items: dict | None, k: int) -> list[dict]:
    """The ``k`` entries with the largest counts, ties broken by the smaller key."""
    ranked = sorted((items or {}).items(), key=lambda kv: (-kv[1]["count"], kv[0]))[:int(k)]
    return [{"value": e["value"], "count": e["count"]} for _, e in ranked]
