"""``percentiles``: quantiles of a numeric field, from a log-bucketed histogram (DDSketch).

A value v > 0 counts in bucket ceil(log(v) / log(gamma)), gamma = (1 + a) / (1 - a) for the
relative accuracy a; the bucket's value 2 gamma**i / (1 + gamma) is within a of every value in
it, so every quantile is within a of a true value at its rank (Masson, Rim and Lee, "DDSketch",
VLDB 2019). Negative values count by magnitude in a second histogram, zeros apart. The stored
histograms are ``add_aligned`` (added position by position) and bounded by a ``Span`` of
``buckets`` positions: a value more than gamma**buckets below the largest one (1e17 times at
the defaults) is counted in the lowest bucket kept. The exact smallest and largest values are
kept too (``min``, ``max``), and every quantile is clamped to them.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

from streamkit import Aggregator, F, ListOf, Option, Span, quantile

_CACHE = 1 << 16


def field_name(q: float) -> str:
    """The result field of quantile q: 0.5 -> p50, 0.95 -> p95, 0.999 -> p99_9."""
    text = f"{q * 100:.6f}".rstrip("0").rstrip(".")
    return "p" + text.replace(".", "_")


def _quantiles(value: list) -> list:
    if not value:
        raise ValueError("expected at least one quantile")
    if len(value) > 20:
        raise ValueError(f"expected at most 20 quantiles, got {len(value)}")
    for q in value:
        if not 0 <= q <= 1:
            raise ValueError(f"expected quantiles between 0 and 1, got {q!r}")
    names = [field_name(q) for q in value]
    if len(set(names)) != len(names):
        raise ValueError(f"expected different quantiles, got {value!r}")
    return value


class Percentiles(Aggregator):
    """Quantiles of a numeric field, each within the relative accuracy of a true value at its rank."""

    description = "quantiles of `field` (p50, p95, p99...) within a relative accuracy (DDSketch)"
    options = {
        "quantiles": Option(ListOf(float), [0.5, 0.95, 0.99], "quantiles to keep current, between 0 and 1",
                            check=_quantiles),
        "relative_accuracy": Option(float, 0.01, "every quantile is within this fraction of a true value "
                                                 "at its rank", min=0.001, max=0.2),
        "buckets": Option(int, 2048, "most buckets per sign: values more than gamma**buckets below the "
                                     "largest (1e17 times at 1 %, 60 times at 0.1 %) share the lowest bucket",
                          min=16, max=32768),
    }
    merges = {"positive": "add_aligned", "negative": "add_aligned", "zero": "add", "count": "add",
              "min": "min", "max": "max"}

    def __init__(self, config: dict | None = None) -> None:
        super().__init__(config)
        c = self.config
        self.quantiles = list(c.get("quantiles", [0.5, 0.95, 0.99]))
        a = float(c.get("relative_accuracy", 0.01))
        self.width = int(c.get("buckets", 2048))
        self.gamma = (1 + a) / (1 - a)
        self._scale = 1 / math.log(self.gamma)
        names = [field_name(q) for q in self.quantiles]
        self.fields = (*names, "count", "min", "max")
        self.primary = "p95" if "p95" in names else names[-1]
        self.bounds = {"positive": Span(self.width), "negative": Span(self.width)}
        self.derived = {n: quantile(F("positive"), F("negative"), F("zero"), F("count"), F("min"), F("max"),
                                    q, self.gamma) for n, q in zip(names, self.quantiles)}
        self._keys: dict = {}

    def key(self, value: float) -> int:
        """The bucket of a value's magnitude: the i with gamma**(i-1) < |value| <= gamma**i."""
        return math.ceil(math.log(abs(value)) * self._scale)

    # partial: [positive {bucket: count}, negative {bucket: count}, zeros, count, min, max]
    def create(self) -> list:
        return [{}, {}, 0, 0, None, None]

    def add(self, partial: list, value: float) -> list:
        self._count(partial, value, 1)
        return partial

    def _count(self, p: list, v: float, n: int) -> None:
        if v > 0:
            side = p[0]
        elif v < 0:
            side = p[1]
        else:
            p[2] += n
            side = None
        if side is not None:
            i = self._keys.get(v)
            if i is None:
                i = self._keys[v] = self.key(v)
            side[i] = side.get(i, 0) + n
            if len(side) > 2 * self.width:
                self._trim(side)
        p[3] += n
        if p[4] is None or v < p[4]:
            p[4] = v
        if p[5] is None or v > p[5]:
            p[5] = v

    def _trim(self, side: dict) -> None:
        """Keep memory bounded within a flush: fold what the store's Span would fold anyway."""
        low = max(side) - self.width + 1
        folded = sum(c for i, c in side.items() if i <= low)
        for i in [i for i in side if i < low]:
            del side[i]
        side[low] = folded

    def merge(self, a: list, b: list) -> list:
        out = [dict(a[0]), dict(a[1]), a[2] + b[2], a[3] + b[3],
               b[4] if a[4] is None or (b[4] is not None and b[4] < a[4]) else a[4],
               b[5] if a[5] is None or (b[5] is not None and b[5] > a[5]) else a[5]]
        for side, other in ((out[0], b[0]), (out[1], b[1])):
            for i, c in other.items():
                side[i] = side.get(i, 0) + c
            if len(side) > 2 * self.width:
                self._trim(side)
        return out

    def add_batch(self, table: dict, keys: list, values: list | None) -> None:
        if len(self._keys) > _CACHE:
            self._keys.clear()
        get, count = table.get, self._count
        for (k, v), n in Counter(zip(keys, values)).items():  # type: ignore[arg-type]
            p = get(k)
            if p is None:
                p = table[k] = [{}, {}, 0, 0, None, None]
            count(p, v, n)

    def _histogram(self, side: dict) -> dict:
        if not side:
            return {"offset": 0, "counts": []}
        lo, hi = min(side), max(side)
        counts = [0] * (hi - lo + 1)
        for i, c in side.items():
            counts[i - lo] += c
        return self.bounds["positive"].apply({"offset": lo, "counts": counts})

    def stored(self, partial: list) -> dict:
        return {"positive": self._histogram(partial[0]), "negative": self._histogram(partial[1]),
                "zero": partial[2], "count": partial[3], "min": partial[4], "max": partial[5]}

    def result(self, partial: list) -> dict:
        s = self.stored(partial)
        out = {n: e.evaluate(s) for n, e in self.derived.items()}
        out.update(count=s["count"], min=s["min"], max=s["max"])
        return out
