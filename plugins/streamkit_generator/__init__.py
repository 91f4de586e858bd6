"""The ``generator`` source: random user-interaction events, reproducible from a seed.

Record ``n`` depends only on the options and ``n``: records are made in blocks of
1,024 from a generator seeded with ``(seed, block)``, so a run can resume from any
position and produce exactly the records it would have produced.
"""
from __future__ import annotations

import itertools
import random
import time
from typing import Any

from streamkit import Batch, Duration, Option, Source, event_time, hookimpl

BLOCK = 1024
PARTITION = "generator/0"
DEFAULT_TYPES = {"view": 0.5, "click": 0.3, "like": 0.1, "share": 0.05, "purchase": 0.05}
MALFORMED_KINDS = ("missing user_id", "non-numeric duration_ms", "bad timestamp", "user_id is a list")
#: every user and item id is kept in memory (about 200 bytes each), so their numbers are bounded
MAX_POPULATION = 1_000_000
MAX_BATCH = 1_000_000
MAX_SKEW = 10.0  # rank ** skew must stay a float for a million ranks
MAX_DURATION_MEAN = 1e12  # milliseconds: keeps duration_ms far inside 64-bit integers
MAX_WEIGHT = 1e12  # interaction type weights are relative: their sum stays a finite float


def _check_types(value: dict) -> dict:
    if not value:
        raise ValueError("expected at least one interaction type")
    for k, w in value.items():
        if not isinstance(k, str) or isinstance(w, bool) or not isinstance(w, (int, float)) \
                or not 0 < w <= MAX_WEIGHT:
            raise ValueError(f"expected type names with positive weights up to {MAX_WEIGHT:g}, got {k!r}: {w!r}")
    return value


def _check_time(value: Any) -> float:
    try:
        return event_time(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


class Generator(Source):
    """Random user-interaction events {user_id, item_id, interaction_type, timestamp, duration_ms}."""

    options = {
        "seed": Option(int, 42, "random seed; record n depends only on seed and n"),
        "users": Option(int, 1000, "distinct users", min=1, max=MAX_POPULATION),
        "items": Option(int, 200, "distinct items", min=1, max=MAX_POPULATION),
        "interaction_types": Option(dict, DEFAULT_TYPES, "type -> relative weight", check=_check_types),
        "skew": Option(float, 1.1, "Zipf exponent for users and items (0 = uniform)", min=0,
                       max=MAX_SKEW),
        "rate": Option(float, 2000.0, "records per second (0 = as fast as possible)", min=0),
        "max_records": Option(int, None, "stop after this many records in all", min=0),
        "start_time": Option(object, "2026-01-01T00:00:00Z", "event time of record 0 (ISO-8601 or epoch s)",
                             check=_check_time),
        "time_step": Option(Duration, None, "event time between records (default 1/rate, or 1ms at rate 0)"),
        "duration_ms_mean": Option(float, 300.0, "mean of duration_ms (exponential)", min=1,
                                   max=MAX_DURATION_MEAN),
        "malformed_ratio": Option(float, 0.0, "share of records made bad on purpose", min=0, max=1),
        "batch_size": Option(int, 1000, "records per batch at most", min=1, max=MAX_BATCH),
    }

    def __init__(self, config: dict, context: Any) -> None:
        super().__init__(config, context)
        c = config
        self.seed = c["seed"]
        rng = random.Random(f"streamkit-generator:{self.seed}")
        self.user_ids, self.user_cw = self._population("u", c["users"], c["skew"], rng)
        self.item_ids, self.item_cw = self._population("i", c["items"], c["skew"], rng)
        types = c["interaction_types"]
        self.types = list(types)
        self.type_cw = list(itertools.accumulate(float(w) for w in types.values()))
        self.rate = c["rate"]
        self.step = c["time_step"] if c["time_step"] is not None else (1.0 / self.rate if self.rate else 0.001)
        self.start = event_time(c["start_time"])
        self.max_records = c["max_records"]
        self.mean = c["duration_ms_mean"]
        self.malformed = c["malformed_ratio"]
        self.batch_size = c["batch_size"]
        self.pos = 0
        self._block_no = -1
        self._block: list = []

    @staticmethod
    def _population(prefix: str, n: int, skew: float, rng: random.Random) -> tuple[list, list]:
        ids = [f"{prefix}{i}" for i in range(1, n + 1)]
        rng.shuffle(ids)  # popularity rank is not the id order
        weights = [1.0 / (rank ** skew) for rank in range(1, n + 1)]
        return ids, list(itertools.accumulate(weights))

    def open(self, hooks: Any) -> None:
        resume = hooks.assigned([PARTITION]) or {}
        self.pos = resume.get(PARTITION, 0)
        self._t0 = time.monotonic()
        self._base = self.pos

    def block(self, b: int) -> list:
        """Records ``b*1024 .. b*1024+1023``: a pure function of the options and ``b``."""
        rng = random.Random(self.seed * 1_000_003 + b)
        k = BLOCK
        users = rng.choices(self.user_ids, cum_weights=self.user_cw, k=k)
        items = rng.choices(self.item_ids, cum_weights=self.item_cw, k=k)
        types = rng.choices(self.types, cum_weights=self.type_cw, k=k)
        expo, lam = rng.expovariate, 1.0 / self.mean
        durations = [int(expo(lam)) + 1 for _ in range(k)]
        first = b * k
        start, step = self.start, self.step
        records = [{"user_id": u, "item_id": i, "interaction_type": t,
                    "timestamp": round(start + (first + j) * step, 6), "duration_ms": d}
                   for j, (u, i, t, d) in enumerate(zip(users, items, types, durations))]
        if self.malformed:
            bad = [j for j in range(k) if rng.random() < self.malformed]
            for j in bad:
                r = records[j]
                kind = (first + j) % len(MALFORMED_KINDS)
                if kind == 0:
                    del r["user_id"]
                elif kind == 1:
                    r["duration_ms"] = "n/a"
                elif kind == 2:
                    r["timestamp"] = "not-a-time"
                else:
                    r["user_id"] = [r["user_id"]]
        return records

    def records(self, first: int, n: int) -> list:
        """``n`` records from position ``first`` (used by tests and tools to compute a truth)."""
        out: list = []
        pos = first
        while len(out) < n:
            b, off = divmod(pos, BLOCK)
            if b != self._block_no:
                self._block, self._block_no = self.block(b), b
            take = self._block[off:off + n - len(out)]
            out.extend(take)
            pos += len(take)
        return out

    def poll(self, timeout: float) -> list[Batch] | None:
        limit = self.max_records
        if limit is not None and self.pos >= limit:
            return None
        n = self.batch_size
        if self.rate:
            due = self._base + int((time.monotonic() - self._t0) * self.rate)
            if due <= self.pos:
                time.sleep(min(timeout, (self.pos + 1 - due) / self.rate))
                due = self._base + int((time.monotonic() - self._t0) * self.rate)
                if due <= self.pos:
                    return []
            n = min(n, due - self.pos)
        if limit is not None:
            n = min(n, limit - self.pos)
        first = self.pos
        recs = self.records(first, n)
        self.pos = first + n
        return [Batch(PARTITION, recs, first, first + n, decoded=True)]


@hookimpl
def register_sources(register) -> None:
    register("generator", Generator)
