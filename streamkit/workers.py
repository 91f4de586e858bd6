"""``streamkit run FILE --workers N``: N processes of one pipeline on one machine, supervised.

Each worker is ``streamkit run FILE --worker I/N``, a process of its own (a core of its own), with
the same pipeline file and overrides. How they share the input is the source's business
(:attr:`streamkit.Source.splittable`): members of one consumer group, or each reading its share
(:attr:`streamkit.Context.worker`). They merge into the same documents; the sinks' fences and
owner epochs keep that exact however the partitions move, as with processes started by hand.

The supervisor restarts a worker that dies (a crash, a kill, exit code 1) and lets one that
finished (its source ended, ``--duration``) stay finished; a worker that stops on bad input (exit
code 2) stops them all. SIGTERM and SIGINT are passed on, and every worker stops after its final
flush. Each worker reports its counters through a pipe; the supervisor shows one progress line
and prints one summary line for all of them.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

from .errors import StreamkitError
from .progress import Progress
from .result import RunResult

#: a worker that dies this many times within WINDOW seconds is not started again
MAX_CRASHES = 5
WINDOW = 60.0
#: the first wait before restarting a worker that died, doubled for each quick death, at most MAX_WAIT
FIRST_WAIT = 0.5
MAX_WAIT = 10.0


class WorkersFailed(StreamkitError):
    """A worker kept dying: the supervisor stopped the others."""

    exit_code = 1


class Report(Progress):
    """A worker's counters, written as JSON lines to the supervisor's pipe (twice a second, and
    its final counters once it stopped)."""

    def __init__(self, fd: int) -> None:
        super().__init__(enabled=True, every=0.5)
        self.out = os.fdopen(fd, "w", buffering=1)

    def update(self, records: int, dead: int, flushes: int, extra: str = "") -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._send({"records": records, "dead": dead, "flushes": flushes})

    def clear(self) -> None:
        pass

    def final(self, result: RunResult) -> None:
        self._send({"final": result.as_dict(), "positions": result.positions})

    def _send(self, data: dict) -> None:
        try:
            self.out.write(json.dumps(data) + "\n")
        except (BrokenPipeError, OSError):  # the supervisor is gone; the parent watch stops the run
            pass


def watch_supervisor(pid: int, stop: Any) -> None:
    """Stop the run (``stop()``) when the supervisor ``pid`` that started this worker is gone (this
    process then has another parent, also when the supervisor died before it got here)."""
    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(0.5)
        stop()
    threading.Thread(target=watch, name="streamkit-supervisor-watch", daemon=True).start()


class _Worker:
    def __init__(self, index: int, count: int, argv: list[str]) -> None:
        self.index = index
        self.count = count
        self.argv = argv
        self.proc: subprocess.Popen | None = None
        self.reader: threading.Thread | None = None
        self.latest: dict = {}
        self.final: dict | None = None
        self.finals: list[dict] = []      # of every start that stopped cleanly
        self.crashes: list[float] = []
        self.restart_at: float | None = None
        self.done = False

    def start(self) -> None:
        read, write = os.pipe()
        cmd = [*self.argv, "--worker", f"{self.index}/{self.count}", "--report-fd", str(write),
               "--supervisor", str(os.getpid())]
        self.proc = subprocess.Popen(cmd, pass_fds=(write,))
        os.close(write)
        self.latest, self.final = {}, None
        self.reader = threading.Thread(target=self._read, args=(os.fdopen(read, "r"),),
                                       name=f"streamkit-worker-{self.index}", daemon=True)
        self.reader.start()

    def _read(self, reader: IO[str]) -> None:
        with reader:
            for line in reader:
                try:
                    data = json.loads(line)
                except ValueError:
                    continue
                if "final" in data:
                    self.final = data
                else:
                    self.latest = data

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)


class Supervisor:
    def __init__(self, argv: list[str], count: int, progress: bool) -> None:
        self.workers = [_Worker(i, count, argv) for i in range(count)]
        self.progress = Progress(enabled=None if progress else False)
        self.stopping = False
        self.restarts = 0
        self.failure: StreamkitError | None = None
        self.bad_input = 0

    def _signal(self, signum: int, frame: Any) -> None:
        if self.stopping and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stopping = True
        for w in self.workers:
            w.stop()

    def run(self) -> RunResult:
        started = time.monotonic()
        previous = {sig: signal.signal(sig, self._signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for w in self.workers:
                w.start()
            with self.progress:
                while not all(w.done for w in self.workers):
                    self._tend(time.monotonic())
                    if self.progress.enabled:
                        self.progress.update(*self._counts(), extra=f" | {len(self.workers)} workers")
                    time.sleep(0.1)
        finally:
            for w in self.workers:
                w.stop()
            for w in self.workers:
                if w.proc is not None:
                    w.proc.wait()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.bad_input:
            raise _Quiet(self.bad_input)
        if self.failure is not None:
            raise self.failure
        return self._result(time.monotonic() - started)

    def _tend(self, now: float) -> None:
        for w in self.workers:
            if w.done:
                continue
            if w.proc is None:
                if self.stopping:
                    w.done = True
                elif w.restart_at is not None and now >= w.restart_at:
                    w.restart_at = None
                    self.restarts += 1
                    w.start()
                continue
            code = w.proc.poll()
            if code is None:
                continue
            if w.reader is not None:  # the pipe ends with the worker: its last line is read by then
                w.reader.join(5)
            if w.final is not None:
                w.finals.append(w.final)
            w.proc = None
            if code == 0 and w.final is not None:
                w.done = True  # it finished: its source ended, or its duration passed, or a stop
            elif code == 2:  # bad input (the worker printed it): the others would fail alike
                self.bad_input = code
                self._stop_all()
            elif self.stopping:
                w.done = True
            else:
                self._crashed(w, code, now)

    def _crashed(self, w: _Worker, code: int, now: float) -> None:
        w.crashes = [t for t in w.crashes if now - t < WINDOW] + [now]
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        if len(w.crashes) >= MAX_CRASHES:
            self.failure = WorkersFailed(f"worker {w.index} {how}, its {len(w.crashes)}th death within "
                                         f"{WINDOW:.0f}s; stopped the other workers")
            self._stop_all()
            return
        wait = min(MAX_WAIT, FIRST_WAIT * 2 ** (len(w.crashes) - 1))
        print(f"streamkit: worker {w.index} {how}; starting it again in {wait:g}s", file=sys.stderr,
              flush=True)
        w.restart_at = now + wait

    def _stop_all(self) -> None:
        self.stopping = True
        for w in self.workers:
            w.stop()

    def _counts(self) -> tuple[int, int, int]:
        records = dead = flushes = 0
        for w in self.workers:
            for f in w.finals:
                records += f["final"]["records_read"]
                dead += f["final"]["dead_letters"]
                flushes += f["final"]["flushes"]
            if w.proc is not None and w.latest:
                records += w.latest["records"]
                dead += w.latest["dead"]
                flushes += w.latest["flushes"]
        return records, dead, flushes

    def _result(self, elapsed: float) -> "WorkersResult":
        total = WorkersResult(workers=len(self.workers), restarts=self.restarts)
        stops = []
        for w in self.workers:
            for f in w.finals:
                r = f["final"]
                total.records_read += r["records_read"]
                total.records_aggregated += r["records_aggregated"]
                total.dead_letters += r["dead_letters"]
                total.flushes += r["flushes"]
                total.positions.update(f.get("positions") or {})
                for p, u in r["unfinished"].items():
                    total.unfinished[p] = (u["reached"], u["end"])
                stops.append(r["stopped_by"])
        total.elapsed = elapsed
        total.stopped_by = "signal" if "signal" in stops else (stops[-1] if stops else "")
        if "source_finished" in stops and all(s == "source_finished" for s in stops):
            total.stopped_by = "source_finished"
        return total


class WorkersResult(RunResult):
    """The counters of every worker's runs added up (those of a worker that was killed are lost
    with it: its replacement reads again only what the killed one had not flushed)."""

    def __init__(self, workers: int, restarts: int) -> None:
        super().__init__()
        self.workers = workers
        self.restarts = restarts

    def as_dict(self) -> dict:
        return {**super().as_dict(), "workers": self.workers, "restarts": self.restarts}

    def __str__(self) -> str:
        again = f", {self.restarts} restart{'s' if self.restarts != 1 else ''}" if self.restarts else ""
        return f"{super().__str__()}, {self.workers} workers{again}"


class _Quiet(StreamkitError):
    """A worker already printed why it stopped: exit with its code, print nothing more."""

    def __init__(self, code: int) -> None:
        super().__init__("")
        self.exit_code = code
