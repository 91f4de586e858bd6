"""Built-in sinks that need no server (console, jsonl, discard) and dead-letter destinations (log, jsonl)."""
from __future__ import annotations

import logging
import os
import time
from collections import Counter
from typing import Any

from streamkit import (EMIT_OPTION, ConfigError, DeadLetterDestination, Duration, OneOf, Option, Sink,
                       StreamkitError, echo, hookimpl, to_json)

log = logging.getLogger("streamkit.dead_letters")


class OutputError(StreamkitError):
    """A file that opened could not be written (disk full, I/O error): a runtime failure."""

    exit_code = 1


def open_append(component: Any) -> Any:
    """Open ``component.config["path"]`` for appending; a path that cannot be is bad input,
    reported as one line naming the pipeline file, the key and the path."""
    path = component.config["path"]
    try:
        return open(path, "ab")
    except OSError as exc:
        raise ConfigError(f"cannot append to {path!r}: {exc.strerror or exc}",
                          file=component.context.file,
                          key=f"{component.context.name}.path") from None


def append(component: Any, fh: Any, data: bytes) -> None:
    """Append ``data`` and make it durable; an I/O error is one line naming the key and path."""
    try:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    except OSError as exc:
        raise OutputError(f"{component.context.name}.path: cannot write to {component.config['path']!r}: "
                          f"{exc.strerror or exc}") from None


def _delta_json(delta: Any) -> dict:
    return {"aggregation": delta.aggregation, "key": delta.key, "window": delta.window_json(),
            **delta.values}


class Console(Sink):
    """Prints aggregates: a table of the top rows per aggregation, or one JSON line per delta."""

    options = {
        "format": Option(OneOf("table", "jsonl"), "table", "table or jsonl"),
        "limit": Option(int, 5, "rows per aggregation in a table", min=1),
        "every": Option(Duration, 5.0, "print a table at most this often (deltas are merged meanwhile)"),
        "emit": EMIT_OPTION,
    }

    @classmethod
    def emits_final(cls, options: dict) -> bool:
        return options.get("emit") == "final"

    def write_final(self, windows: list) -> None:
        """Closed windows: one JSON line each (``format: jsonl``), or one line each in a table."""
        if self.config["format"] == "jsonl":
            echo(b"\n".join(to_json(w.to_json()) for w in windows).decode())
            return
        lines = []
        for w in windows:
            key = ", ".join(f"{k}={v}" for k, v in w.key.items()) or "(all)"
            vals = "  ".join(f"{k}={_fmt(v)}" for k, v in w.values.items())
            lines.append(f"{w.aggregation} [{w.window_json()['start']}] closed: {key}: {vals}")
        echo("\n".join(lines))

    def open(self) -> None:
        self.pending: dict = {}
        self.aggs: dict = {}
        self.last = time.monotonic()

    def write(self, flush: Any) -> None:
        if self.config["format"] == "jsonl":
            out = b"\n".join(to_json(_delta_json(d)) for d in flush.deltas())
            if out:
                echo(out.decode())
            return
        for agg in flush.aggregations:
            self.aggs[agg.name] = agg
        for d in flush.deltas():
            # with their types: 1, 1.0 and true are different groups (Python's == says otherwise)
            k = (d.aggregation, tuple((type(v), v) for v in d.key.values()), d.window_start)
            prev = self.pending.get(k)
            self.pending[k] = (d, d.partial if prev is None else d.aggregator.merge(prev[1], d.partial))
        if time.monotonic() - self.last >= self.config["every"]:
            self._print()

    def _print(self) -> None:
        self.last = time.monotonic()
        if not self.pending:
            return
        lines = []
        by_agg: dict[str, list] = {}
        for (name, _, _), (d, partial) in self.pending.items():
            by_agg.setdefault(name, []).append((d, partial))
        for name, rows in by_agg.items():
            agg = self.aggs[name].aggregator
            primary = agg.primary or agg.fields[0]
            rows.sort(key=lambda r: (agg.result(r[1]).get(primary) is None, -(agg.result(r[1]).get(primary) or 0)))
            lines.append(f"{name} — {len(rows)} keys updated, top {min(len(rows), self.config['limit'])} "
                         f"by {primary} in this interval:")
            for d, partial in rows[: self.config["limit"]]:
                key = ", ".join(f"{k}={v}" for k, v in d.key.items()) or "(all)"
                win = f" [{d.window_json()['start']}]" if d.window_start is not None else ""
                vals = "  ".join(f"{k}={_fmt(v)}" for k, v in agg.result(partial).items())
                lines.append(f"  {key}{win}: {vals}")
        self.pending = {}
        echo("\n".join(lines))

    def close(self) -> None:
        if self.config["format"] == "table" and getattr(self, "pending", None):
            self._print()


def _fmt(v: Any) -> str:
    return f"{v:,.2f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)


class JsonlSink(Sink):
    """Appends one JSON line per delta (aggregation, key, window, values) to a file."""

    options = {"path": Option(str, help="file to append to"), "emit": EMIT_OPTION}

    @classmethod
    def emits_final(cls, options: dict) -> bool:
        return options.get("emit") == "final"

    def open(self) -> None:
        self.fh = open_append(self)

    def write(self, flush: Any) -> None:
        lines = [to_json({"flush": flush.seq, **_delta_json(d)}) for d in flush.deltas()]
        if lines:
            append(self, self.fh, b"\n".join(lines) + b"\n")

    def write_final(self, windows: list) -> None:
        append(self, self.fh, b"".join(to_json(w.to_json()) + b"\n" for w in windows))

    def close(self) -> None:
        if getattr(self, "fh", None):
            self.fh.close()


class Discard(Sink):
    """Drops everything (for benchmarks and dry runs)."""

    def write(self, flush: Any) -> None:
        pass


class LogDeadLetters(DeadLetterDestination):
    """Counts dead letters and logs them: the first ones in full, then a count per reason each minute."""

    options = {"detail": Option(int, 10, "dead letters logged in full before summarising", min=0)}

    def open(self) -> None:
        self.total = 0
        self.since: Counter = Counter()
        self.last = time.monotonic()

    def write(self, letters: list) -> None:
        for dl in letters:
            self.total += 1
            if self.total <= self.config["detail"]:
                log.warning("dead letter at %s@%s: %s", dl.partition, dl.position, dl.reason)
            else:
                self.since[dl.reason.split(":")[0]] += 1
        if self.since and time.monotonic() - self.last > 60:
            self._summary()

    def _summary(self) -> None:
        log.warning("%d more dead letters (%s)", sum(self.since.values()),
                    ", ".join(f"{r}: {n}" for r, n in self.since.most_common(5)))
        self.since.clear()
        self.last = time.monotonic()

    def close(self) -> None:
        if getattr(self, "since", None):
            self._summary()


class JsonlDeadLetters(DeadLetterDestination):
    """Appends each dead letter as a JSON line {partition, position, reason, record}; fsynced before commit."""

    options = {"path": Option(str, help="file to append to")}

    def open(self) -> None:
        self.fh = open_append(self)

    def write(self, letters: list) -> None:
        append(self, self.fh, b"".join(to_json(dl.to_json()) + b"\n" for dl in letters))

    def close(self) -> None:
        if getattr(self, "fh", None):
            self.fh.close()


@hookimpl
def register_sinks(register) -> None:
    register("console", Console)
    register("jsonl", JsonlSink)
    register("discard", Discard)


@hookimpl
def register_dead_letters(register) -> None:
    register("log", LogDeadLetters)
    register("jsonl", JsonlDeadLetters)
