"""``distinct``: the number of distinct values of a field, as a HyperLogLog sketch.

The stored form is the register map ``{index: rank}`` (only registers above 0), merged by the
store key by key with the larger rank (``max_by_key``): the same registers whatever the order
and the split of the merges, so a replayed or a concurrent flush changes nothing the fences let
through twice. At most 2**precision registers: the document's size is bounded by the option.
"""
from __future__ import annotations

from typing import Any

from streamkit import Aggregator, F, Option, hll_estimate, stable_hash

#: hashes kept per aggregation between batches (values repeat: users, items)
_CACHE = 1 << 16


class Distinct(Aggregator):
    """Distinct values of a field (HyperLogLog): estimate within about 1.04/sqrt(2**precision)."""

    description = "number of distinct values of `field` (HyperLogLog sketch)"
    numeric = False
    keyed = True
    fields = ("distinct",)
    merges = {"registers": "max_by_key"}
    primary = "distinct"
    options = {
        "precision": Option(int, 14, "2**precision registers: standard error 1.04/sqrt(2**precision), "
                                     "0.81 % at 14; a document holds at most 2**precision registers",
                            min=4, max=16),
    }

    def __init__(self, config: dict | None = None) -> None:
        super().__init__(config)
        self.precision = p = int(self.config.get("precision", 14))
        self.derived = {"distinct": hll_estimate(F("registers"), p)}
        self._rest = 64 - p
        self._mask = (1 << self._rest) - 1
        self._slots: dict = {}

    def slot(self, value: Any) -> tuple[int, int]:
        """(register index, rank) of a value: the first ``precision`` bits of its hash, and one
        more than the leading zeros of the other bits."""
        h = stable_hash(value)
        return h >> self._rest, self._rest - (h & self._mask).bit_length() + 1

    def create(self) -> dict:
        return {}

    def add(self, partial: dict, value: Any) -> dict:
        i, r = self.slot(value)
        if partial.get(i, 0) < r:
            partial[i] = r
        return partial

    def merge(self, a: dict, b: dict) -> dict:
        out = dict(a)
        for i, r in b.items():
            if out.get(i, 0) < r:
                out[i] = r
        return out

    def add_batch(self, table: dict, keys: list, values: list | None) -> None:
        slots = self._slots
        if len(slots) > _CACHE:
            slots.clear()
        slot, get = self.slot, table.get
        for k, v in set(zip(keys, values)):  # type: ignore[arg-type]
            s = slots.get(v)
            if s is None:
                s = slots[v] = slot(v)
            regs = get(k)
            if regs is None:
                table[k] = {s[0]: s[1]}
            elif regs.get(s[0], 0) < s[1]:
                regs[s[0]] = s[1]

    def result(self, partial: dict) -> dict:
        return {"distinct": self.derived["distinct"].evaluate({"registers": partial})}

    def stored(self, partial: dict) -> dict:
        return {"registers": {str(i): r for i, r in partial.items()}}
