"""``streamkit run`` as the crash, fault and scale-out tests run it: the pipeline files they write,
the inputs they feed, the processes they start, kill and wait for, the kill loops, and what a run
left in the store's offsets collection. The fixture ``runs`` (tests/integration/conftest.py) hands
out a :class:`Runs`; the truth to compare with is tests/truth.py.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from truth import as_pipeline

TESTS = Path(__file__).resolve().parent
# on the path of every process: pipeline files may name the test-only plugins (tests/integration)
TEST_PATH = [str(TESTS), str(TESTS / "integration")]


def seed_for(name: str) -> int:
    """The seed of a test: ``STREAMKIT_CRASH_SEED`` to replay a failure, else a fresh one (printed)."""
    raw = os.environ.get("STREAMKIT_CRASH_SEED")
    seed = int(raw) if raw else random.SystemRandom().randrange(1, 10**6)
    print(f"{name}: seed {seed} (replay with STREAMKIT_CRASH_SEED={seed})")
    return seed


# -- pipeline files and processes -----------------------------------------------------------

def write_yaml(path: Path, config: dict) -> Path:
    import yaml
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Run:
    """One ``streamkit run FILE`` subprocess, its output kept in a file."""

    def __init__(self, yaml_file: Path, log_file: Path, extra: list[str] | None = None,
                 env: dict | None = None, verbose: bool = False) -> None:
        self.log_file = log_file
        self.out = open(log_file, "ab")
        self.out.write(f"--- start {time.strftime('%H:%M:%S')}\n".encode())
        self.out.flush()
        cmd = [sys.executable, "-m", "streamkit", *(["-v"] if verbose else []), "run", str(yaml_file), "-q",
               *(extra or [])]
        path = os.pathsep.join([*TEST_PATH, *filter(None, [os.environ.get("PYTHONPATH")])])
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONPATH": path, **(env or {})},
                                     start_new_session=True)
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(f"streamkit run did not finish within {timeout:.0f}s; log:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        self.out.flush()
        lines = self.log_file.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def close(self) -> None:
        if self.alive():
            self.kill9()
        self.out.close()


class Runs:
    """Every process a test started; all of them are killed at the end, whatever happened."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.all: list[Run] = []

    def start(self, yaml_file: Path, name: str = "run", **kwargs: Any) -> Run:
        run = Run(yaml_file, self.folder / f"{name}.log", **kwargs)
        self.all.append(run)
        return run

    def close(self) -> None:
        for run in self.all:
            run.close()


class Kills(list):
    """What a :func:`kill_loop` did: a line per start (it is the list), how many kills landed on a
    running process, and how many of those left a flush unfinished (an intent open)."""

    def __init__(self) -> None:
        super().__init__()
        self.landed = 0
        self.open_intents = 0

    def summary(self) -> str:
        return f"{self.landed} kills landed, {self.open_intents} of them with an intent open"


def kill_loop(start: Callable[[], Run], rng: random.Random, kills: int, low: float, high: float,
              open_intents: Callable[[], Any], after_kill: Callable[[], str] | None = None,
              timeout: float = 90.0, until_killed: bool = False,
              ready: Callable[[], bool] | None = None,
              progress: tuple[Callable[[], int], int] | None = None) -> Kills:
    """Start, kill -9 after a random delay in [low, high) seconds, ``kills`` times; then run to the
    end (unless ``until_killed``: a source that never ends is finished by the caller). With
    ``ready``, the delay counts from when ``ready()`` is first true. With ``progress`` (a
    function giving the records stored so far, and the total), the i-th delay counts from when
    that passes a random point of the i-th of ``kills + 1`` equal stretches, so the kills
    spread over the whole input rather than piling up in its first flushes.

    ``open_intents()`` gives the unfinished flushes in the store (their intents; falsy for none).
    A kill hits an open intent when, after it, intents are open that were not there before that
    start: the killed process was in the middle of a flush. After the first kill, while no kill
    has hit one yet, a kill waits past its delay until the process has one open, so the replay
    of an interrupted flush is always tested. Fails when no kill landed (every process finished
    first) or none hit an open intent; prints how many did.

    Returns the lines saying what happened (for the failure message), with the counts."""
    events = Kills()
    for i in range(kills):
        before = open_intents()
        run = start()
        if ready is not None:
            wait_for("the process to take its partitions", lambda: ready() or not run.alive(), 60)
        if progress is not None:
            stored_so_far, total = progress
            target = total * rng.uniform(i, i + 1) / (kills + 1)
            wait_for(f"{target:.0f} records stored", lambda: stored_so_far() >= target or not run.alive(),
                     timeout)
        delay = rng.uniform(low, high)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and run.alive():
            time.sleep(0.01)
        aimed = i > 0 and events.open_intents == 0
        if aimed:
            give_up = time.monotonic() + 60
            while run.alive() and not _new(open_intents(), before) and time.monotonic() < give_up:
                time.sleep(0.002)
        if not run.alive():
            code = run.proc.wait()
            events.append(f"start {i + 1}: finished by itself (exit {code}) before the kill at {delay:.2f}s")
            assert code == 0, f"streamkit run failed (exit {code}):\n{run.tail()}"
            _check_kills(events)
            return events
        run.kill9()
        events.landed += 1
        now = open_intents()
        hit = _new(now, before)
        events.open_intents += hit
        state = f"; then {after_kill()}" if after_kill is not None else ""
        how = "waited for an open intent, " if aimed else ""
        what = "a flush interrupted" if hit else "the earlier intent still open" if now else "no intent open"
        events.append(f"start {i + 1}: kill -9 after {delay:.2f}s ({how}{what}){state}")
    if not until_killed:
        run = start()
        code = run.wait(timeout)
        events.append(f"last start: exit {code} after {time.monotonic() - run.started:.1f}s")
        assert code == 0, f"streamkit run failed (exit {code}):\n{run.tail()}"
    _check_kills(events)
    return events


def _new(intents: Any, before: Any) -> bool:
    return bool(intents) and intents != before


def _check_kills(events: Kills) -> None:
    print(events.summary())
    lines = "\n".join(events)
    assert events.landed, f"no kill landed: every process finished before its kill\n{lines}"
    assert events.open_intents, f"no kill hit an open intent (an unfinished flush)\n{lines}"


# -- pipelines, inputs and what a run left in the store -----------------------------------

def generator_records(source: dict, n: int) -> list[dict]:
    """The first ``n`` records a ``generator`` source with these options produces."""
    from streamkit import Pipeline
    spec = Pipeline.from_dict({"source": {"type": "generator", **source},
                               "aggregations": [{"name": "n", "type": "count"}],
                               "sinks": [{"type": "discard"}]}).spec
    gen = spec.source.cls(spec.source.options, None)
    return gen.records(0, n)


def pipeline(name: str, source: dict, uri: str, database: str, aggregations: list[dict],
             flush: dict, delivery: str = "exactly_once") -> dict:
    """A pipeline file's content: ``source`` into the ``mongodb`` sink; windows in seconds."""
    return {"name": name, "source": source, "aggregations": as_pipeline(aggregations),
            "sinks": [{"type": "mongodb", "uri": uri, "database": database, "collection": "aggregations",
                       "connect_timeout": "2s", "retry_backoff_max": "0.5s"}],
            "flush": flush, "delivery": delivery}


def kafka_source(bootstrap: str, topic: str, group: str, instance: str | None = None,
                 client: str = "auto") -> dict:
    """A ``kafka`` source whose killed member leaves the group within seconds (the broker's
    shortest session, 6 s, rather than 45 s) and that finds a restarted broker within a second.
    With ``instance`` (static membership) a restart with the same id takes the killed member's
    partitions at once. ``client``: the client library (the ``kafka_client`` fixture)."""
    source = {"type": "kafka", "client": client, "bootstrap_servers": bootstrap, "topic": topic, "group_id": group,
              "connect_timeout": "20s", "max_poll_records": 500, "session_timeout": "6s",
              "reconnect_backoff_max": "1s"}
    if instance is not None:
        source["group_instance_id"] = instance
    return source


def consumed(db, name: str, topic: str, ends: dict[int, int]) -> bool:
    """The sink stored the end offset of every partition, with no flush unfinished."""
    state = offsets_state(db, name)
    return all(state.get(f"{topic}/{p}", (None, None, None))[:2] == (end, None) for p, end in ends.items())


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def make_events(n: int, rng: random.Random, users: int = 200, items: int = 30) -> list[dict]:
    """Interaction events with whole-number durations (every sum exact in any order)."""
    types = ["view", "click", "like", "share", "purchase"]
    return [{"user_id": f"u{rng.randrange(users)}", "item_id": f"i{rng.randrange(items)}",
             "interaction_type": rng.choice(types), "timestamp": round(T0 + i * 0.01, 3),
             "duration_ms": rng.randint(1, 5000)} for i in range(n)]


def dealt(n: int, seed: int, partitions: int, lag_every: int = 0, lag: float = 2.5) -> dict[str, list[dict]]:
    """The events of the crash points' ``dealt`` source, per partition (round-robin); with
    ``lag_every``, every such event of a partition carries a time ``lag`` seconds earlier."""
    events = make_events(n, random.Random(seed), users=40, items=12)
    out = {f"dealt/{i}": [dict(e) for e in events[i::partitions]] for i in range(partitions)}
    if lag_every:
        for recs in out.values():
            for r in recs[lag_every - 1::lag_every]:
                r["timestamp"] = round(r["timestamp"] - lag, 3)
    return out


def offsets_state(db, pipeline: str) -> dict:
    """partition -> (position, intent, epoch) from the sink's offsets collection."""
    return {d.get("partition"): (d.get("position"), d.get("intent"), d.get("epoch"))
            for d in db["streamkit_offsets"].find({"pipeline": pipeline})}


