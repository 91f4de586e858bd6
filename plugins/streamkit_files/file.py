"""The ``file`` source: JSON lines from files named by paths or glob patterns, plain or gzip.

Partitions and positions. Each file is a partition named by its absolute path and a fingerprint
of its first line, ``/data/events.jsonl#5d41402abc4b``, and a position is a byte offset in the
file (in its decompressed content, for gzip): the offset of a line's first byte. A sink that
keeps positions (the mongodb sink) stores, per file, the offset after the last line it merged, so
a restart resumes every file there and replays an interrupted flush line for line, as with a
Kafka partition. The fingerprint tells the generations of one path apart: a file replaced by
another at the same path (a rotation) starts a partition of its own at offset 0, whose positions
never meet the old one's fences.

Without ``follow`` the files that match when the pipeline starts are read one after the other
(in path order) to their end, the last line also without a ``\\n``, and the source ends. With
``follow`` the source never ends: it reads every matching file as it grows, looks for new ones
every ``scan_interval``, and follows a path through rotations like ``tail -F``:

- renamed or deleted (the path names another file, or none): the old file is read to its end
  through the descriptor still open, and closed once it is at its end at least one
  ``scan_interval`` after the rotation was noticed; the file now at the path is read from its
  start, as its own partition;
- truncated in place (``copytruncate``: the file is shorter than what was read): what was
  written after the last read and before the truncation is gone; the file is read from its start
  again as soon as its first line is complete (a new fingerprint, a new partition).

A line is a record once its ``\\n`` is written; a file whose first line is not complete yet is
not started (its partition name needs the fingerprint).
"""
from __future__ import annotations

import glob
import gzip
import hashlib
import logging
import os
import time
import zlib
from typing import Any

from streamkit import (REQUIRED, Batch, Duration, ListOf, OneOf, Option, Source, StreamkitError)

from .lines import Lines, report_cuts

log = logging.getLogger("streamkit.file")

#: bytes of the first line that name a file's content (its fingerprint)
FINGERPRINT_BYTES = 1024
GZIP_MAGIC = b"\x1f\x8b"


class InputError(StreamkitError):
    """A file that cannot be read as it must be (unreadable, a broken gzip stream)."""


def fingerprint(first_line: bytes) -> str:
    """12 hex digits of a file's first line (with its ``\\n``; at most 1 KiB)."""
    return hashlib.blake2b(first_line, digest_size=6).hexdigest()


def share(path: str, workers: int) -> int:
    """Which of ``workers`` processes reads the file at ``path``: the same in every process and
    every start, whatever else matches, so no two processes ever read one file."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % workers


def after_last_line(fd: int, size: int, block: int = 65536) -> int:
    """The offset after the last ``\\n`` among the first ``size`` bytes of a file (0 if none)."""
    end = size
    while end > 0:
        start = max(0, end - block)
        i = os.pread(fd, end - start, start).rfind(b"\n")
        if i >= 0:
            return start + i + 1
        end = start
    return 0


class _File:
    """One open file being read: its descriptor, what it is, where its lines stand."""

    def __init__(self, path: str, raw: Any, st: os.stat_result, gz: bool) -> None:
        self.path = path
        self.raw = raw
        self.stream = gzip.GzipFile(fileobj=raw, mode="rb") if gz else raw
        self.identity = (st.st_dev, st.st_ino)
        self.gz = gz
        self.read_to = 0            # offset after the last byte read (decompressed for gzip)
        self.size_seen = st.st_size  # the largest size seen: a smaller one is a truncation
        self.started_at = 0          # the position reading started from
        self.lines: Lines | None = None
        self.gone_at: float | None = None  # when the path stopped naming this file
        self.ended = False                 # read to its end, its last line handed out, closed

    def first_line(self, complete: bool) -> bytes | None:
        """The fingerprinted head of the file; None while its first line is still to be written
        (``complete``: the file will not grow, whatever it holds is its first line)."""
        head = self.stream.read(FINGERPRINT_BYTES)
        self.stream.seek(0)
        i = head.find(b"\n")
        if i >= 0:
            return head[:i + 1]
        if len(head) == FINGERPRINT_BYTES or (complete and head):
            return head
        return None

    def seek(self, position: int) -> None:
        self.stream.seek(position)
        self.read_to = position

    def read(self, n: int) -> bytes:
        data = self.stream.read(n)
        self.read_to += len(data)
        return data

    def size(self) -> int:
        return os.fstat(self.raw.fileno()).st_size

    def close(self) -> None:
        try:
            if self.stream is not self.raw:
                self.stream.close()
        finally:
            self.raw.close()


class FileSource(Source):
    """JSON lines from files (a path, a glob or a list of them), plain or gzip; with follow, tails them."""

    splittable = True
    options = {
        "path": Option(ListOf(str), REQUIRED, "file, glob pattern (`*`, `?`, `[..]`, `**`) or a list of them"),
        "follow": Option(bool, False, "keep reading as files grow and appear, through rotations "
                                      "(like tail -F); otherwise end after the last line"),
        "start": Option(OneOf("beginning", "end"), "beginning",
                        "with follow, where a file that is there at start-up and has no stored position "
                        "starts: its beginning, or after its last complete line (tail -F -n 0)"),
        "compression": Option(OneOf("auto", "gzip", "none"), "auto",
                              "gzip or plain; auto: gzip when a file starts with gzip's magic bytes"),
        "scan_interval": Option(Duration, 1.0, "with follow: how often to look for new and rotated files"),
        "read_size": Option(int, 1 << 20, "bytes read from a file at a time", min=1, max=1 << 30),
        "max_line_bytes": Option(int, 16 << 20, "a longer line is cut to this many bytes: a dead letter",
                                 min=1, max=1 << 30),
    }

    def __init__(self, config: dict, context: Any) -> None:
        super().__init__(config, context)
        self.patterns = [os.path.expanduser(p) for p in config["path"]]
        self.follow: bool = config["follow"]
        self.worker, self.workers = context.worker if context is not None else (0, 1)
        self.hooks: Any = None
        self.todo: list[str] = []            # without follow: the paths still to read, in order
        self.files: dict[str, _File] = {}    # path -> the file being read there
        self.draining: list[_File] = []      # rotated away or deleted, read to their end
        self.warned: set = set()
        self.next_scan = 0.0
        self.there_at_start: set = set()  # (device, inode) of the files there when a follow began

    # -- finding files ----------------------------------------------------------------------
    def _matches(self) -> list[str]:
        """The files the patterns match now that are this process's share, in path order."""
        return [p for p in self._all_matches() if share(p, self.workers) == self.worker]

    def _all_matches(self) -> list[str]:
        found: dict[str, None] = {}
        for pattern in self.patterns:
            if glob.has_magic(pattern):
                names = sorted(glob.glob(pattern, recursive=True))
            else:
                names = [pattern] if os.path.exists(pattern) else []
            for name in names:
                path = os.path.abspath(name)
                if os.path.isfile(path):
                    found[path] = None
        return list(found)

    def open(self, hooks: Any) -> None:
        self.hooks = hooks
        if self.follow:
            if self.config["start"] == "end":
                for path in self._matches():
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue
                    self.there_at_start.add((st.st_dev, st.st_ino))
            self._scan(time.monotonic())
            return
        self.todo = self._matches()
        if not self.todo and not self._all_matches():
            shown = ", ".join(repr(p) for p in self.config["path"])
            raise self._error(f"no file matches {shown}")
        self.todo.reverse()  # popped from the end

    def _error(self, message: str) -> StreamkitError:
        """Bad input about the files: one line naming the pipeline file, the line and the key."""
        pipeline = self.context.pipeline if self.context is not None else None
        if pipeline is not None:
            return pipeline.config_error(("source", "path"), message)
        return InputError(f"{self.context.name if self.context else 'source'}.path: {message}")

    def _open(self, path: str, complete: bool) -> _File | None:
        """Open ``path`` and take its partition (resuming where the sinks stored it); None if it
        cannot be started yet (its first line is incomplete) or at all (gone, empty)."""
        try:
            raw = open(path, "rb", buffering=0)
        except FileNotFoundError:
            return None
        except OSError as exc:
            message = f"cannot read {path!r}: {exc.strerror or exc}"
            if not self.follow:
                raise self._error(message) from None
            if path not in self.warned:
                self.warned.add(path)
                log.warning("%s: %s", self.context.name, message)
            return None
        try:
            st = os.fstat(raw.fileno())
            kind = self.config["compression"]
            gz = kind == "gzip" or (kind == "auto" and os.pread(raw.fileno(), 2, 0) == GZIP_MAGIC)
            f = _File(path, raw, st, gz)
            head = f.first_line(complete or gz)
        except (OSError, EOFError, zlib.error) as exc:
            raw.close()
            self._broken(path, 0, exc)
            return None
        if head is None:
            f.close()
            return None
        partition = f"{path}#{fingerprint(head)}"
        stored = self.hooks.assigned([partition]) or {}
        resume = stored.get(partition, 0)
        if partition not in stored and f.identity in self.there_at_start and not gz:
            resume = after_last_line(raw.fileno(), st.st_size)
        if resume:
            size = f.size() if not gz else None
            if size is not None and resume > size:
                log.warning("%s: %s is %d bytes, shorter than its stored position %d: it was truncated and "
                            "rewritten with the same first line, which cannot be told from the file read "
                            "before; it is read once it passes that position", self.context.name, path,
                            size, resume)
            try:
                f.seek(resume)
            except (OSError, EOFError, zlib.error) as exc:
                f.close()
                self._broken(path, resume, exc)
                return None
        f.started_at = f.read_to
        f.lines = Lines(partition, f.read_to, self.config["max_line_bytes"])
        log.info("%s: reading %s from byte %d", self.context.name, partition, resume)
        return f

    def _broken(self, path: str, position: int, exc: BaseException) -> None:
        """A gzip stream that cannot be decompressed (or a read that failed)."""
        message = f"cannot read {path!r} at byte {position:,} of its content: {type(exc).__name__}: {exc}"
        if not self.follow:
            raise self._error(message) from None
        if (path, str(exc)) not in self.warned:  # a gzip file still being written: tried again later
            self.warned.add((path, str(exc)))
            log.warning("%s: %s; trying again every scan", self.context.name, message)

    def _scan(self, now: float) -> None:
        """With follow: start new files, notice rotated, deleted and truncated ones."""
        self.next_scan = now + self.config["scan_interval"]
        present = set()
        for path in self._matches():
            present.add(path)
            f = self.files.get(path)
            if f is not None:
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
                if (st.st_dev, st.st_ino) != f.identity:
                    self._retire(f, now, "was replaced (rotated)")
                    f = None
                elif not f.gz and st.st_size < f.size_seen:
                    log.warning("%s: %s was truncated to %d bytes after %d were read: reading it again from "
                                "its start (what was written after the last read is lost)",
                                self.context.name, path, st.st_size, f.read_to)
                    self.files.pop(path)
                    f.close()
                    f = None
                else:
                    f.size_seen = max(f.size_seen, st.st_size)
            if f is None:
                started = self._open(path, complete=False)
                if started is not None:
                    self.files[path] = started
        for path in [p for p in self.files if p not in present]:
            self._retire(self.files[path], now, "is gone (deleted or renamed)")

    def _retire(self, f: _File, now: float, why: str) -> None:
        log.info("%s: %s %s; reading it to its end", self.context.name, f.path, why)
        self.files.pop(f.path, None)
        f.gone_at = now
        if not f.ended:
            self.draining.append(f)

    # -- reading ----------------------------------------------------------------------------
    def _read(self, f: _File) -> tuple[Batch | None, bool]:
        """The records of the next read of ``f``, and whether it is at its end."""
        try:
            data = f.read(self.config["read_size"])
        except (OSError, EOFError, zlib.error) as exc:
            if self.follow and f.gz and isinstance(exc, EOFError):
                # a gzip file still being written: a later scan opens it again, and the engine
                # reads it again from the position the sinks stored
                f.ended = True
                f.close()
                self.files.pop(f.path, None)
                return None, True
            self._broken(f.path, f.read_to, exc)
            return None, True
        if not data:
            if f.read_to > f.started_at:  # what was read existed: a smaller file is a truncated one
                f.size_seen = max(f.size_seen, f.read_to)
            return None, True
        assert f.lines is not None
        batch = f.lines.feed(data)
        if f.lines.cuts:
            report_cuts(f.lines, self.context.name, log)
        return batch, False

    def poll(self, timeout: float) -> list[Batch] | None:
        if not self.follow:
            return self._poll_once()
        now = time.monotonic()
        if now >= self.next_scan:
            self._scan(now)
        batches: list[Batch] = []
        busy = False
        for f in [*self.draining, *self.files.values()]:
            if f.ended:
                continue
            batch, end = self._read(f)
            if batch is not None:
                batches.append(batch)
            if not end:
                busy = True
            elif f.gone_at is not None:
                if now - f.gone_at >= self.config["scan_interval"]:
                    self._end(f, batches)
                    self.draining.remove(f)
            elif f.gz:  # a gzip file is complete once its stream ends: its last line counts without a \n
                self._end(f, batches)
        if not busy and not batches:
            time.sleep(max(0.0, min(timeout, self.next_scan - time.monotonic())))
        return batches

    def _end(self, f: _File, batches: list[Batch]) -> None:
        """``f`` is read to its end: hand out its last line (also without a \\n) and close it."""
        if f.lines is not None and not f.ended:
            last = f.lines.finish()
            if last is not None:
                batches.append(last)
            report_cuts(f.lines, self.context.name, log)
        f.ended = True
        f.close()

    def _poll_once(self) -> list[Batch] | None:
        """Without follow: the next records of the file being read, the files one after another."""
        current = next(iter(self.files.values()), None)
        while current is None:
            if not self.todo:
                return None
            path = self.todo.pop()
            current = self._open(path, complete=True)
            if current is not None:
                self.files[path] = current
        batch, end = self._read(current)
        if not end:
            return [batch] if batch is not None else []
        out: list[Batch] = []
        self._end(current, out)
        del self.files[current.path]
        return out

    def close(self) -> None:
        for f in [*self.draining, *self.files.values()]:
            try:
                f.close()
            except OSError:
                pass
        self.files.clear()
        self.draining.clear()

