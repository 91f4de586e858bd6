"""Helpers for the crash, fault and scale-out tests: a private MongoDB-wire server, ``streamkit run``
subprocesses that get killed, and an independent truth to compare the stored documents with.

The truth is plain Python over the input records (no streamkit code): group, window by
``floor(t / size) * size``, count / sum / avg / min / max. Documents are compared by
(aggregation, group key, window start in ms), every field exactly.
"""
from __future__ import annotations

import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest

FIELDS = {"count": ("count",), "sum": ("sum",), "avg": ("avg", "sum", "count"), "min": ("min",),
          "max": ("max",)}


def seed_for(name: str) -> int:
    """The seed of a test: ``STREAMKIT_CRASH_SEED`` to replay a failure, else a fresh one (printed)."""
    raw = os.environ.get("STREAMKIT_CRASH_SEED")
    seed = int(raw) if raw else random.SystemRandom().randrange(1, 10**6)
    print(f"{name}: seed {seed} (replay with STREAMKIT_CRASH_SEED={seed})")
    return seed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, up: bool, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            is_up = s.connect_ex(("127.0.0.1", port)) == 0
        if is_up == up:
            return True
        time.sleep(0.05)
    return False


class MongoServer:
    """A SecantusDB process of our own, on a real data folder, so it can be stopped and restarted
    without disturbing the tests that use the shared server."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = open(os.path.join(folder, "server.log"), "ab")

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(self.port),
             "--storage-path", os.path.join(self.folder, "data"), "--log-level", "WARNING"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_port(self.port, True, 30):
            self.stop()
            raise RuntimeError(f"SecantusDB did not listen on port {self.port} within 30s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        wait_port(self.port, False, 5)

    def client(self):
        from pymongo import MongoClient
        return MongoClient(self.uri, tz_aware=True, serverSelectionTimeoutMS=10000)

    def close(self) -> None:
        self.stop()
        self.log.close()


@pytest.fixture(scope="module")
def mongo_server(secantus):
    """A private SecantusDB for the module (skipped when SecantusDB is not installed)."""
    folder = tempfile.mkdtemp(prefix="streamkit-crash-")
    server = MongoServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


class PrivateKafka:
    """A Kafka broker of our own, started by ``scripts/services`` on free ports with its own state
    folder, so it can be stopped and started again while no other test depends on it."""

    def __init__(self, folder: str) -> None:
        port = free_port()
        cport = free_port()
        self.bootstrap = f"127.0.0.1:{port}"
        self.env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP"}
        self.env.update({"STREAMKIT_SERVICES_DIR": folder, "STREAMKIT_KAFKA_PORT": str(port),
                         "STREAMKIT_KAFKA_CONTROLLER_PORT": str(cport),
                         "MONGO_URI": "mongodb://127.0.0.1:1"})  # set: the script starts no MongoDB

    def services(self, command: str) -> None:
        script = Path(__file__).resolve().parents[2] / "scripts" / "services"
        done = subprocess.run([str(script), command], env=self.env, capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"scripts/services {command} failed:\n{done.stderr}")

    def start(self) -> None:
        self.services("start-kafka")

    def stop(self) -> None:
        self.services("stop-kafka")


@pytest.fixture(scope="module")
def private_kafka(kafka_bootstrap):
    """A Kafka broker for the module alone (skipped when the shared one is not running either:
    the jars come from the same cache)."""
    folder = tempfile.mkdtemp(prefix="streamkit-kafka-")
    broker = PrivateKafka(folder)
    broker.services("up")
    try:
        yield broker
    finally:
        try:
            broker.services("down")
        finally:
            shutil.rmtree(folder, ignore_errors=True)


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
        cmd = [sys.executable, __file__, *(["-v"] if verbose else []), "run", str(yaml_file), "-q",
               *(extra or [])]
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})}, start_new_session=True)
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


@pytest.fixture
def runs(tmp_path):
    r = Runs(tmp_path)
    try:
        yield r
    finally:
        r.close()


def kill_loop(start: Callable[[], Run], rng: random.Random, kills: int, low: float, high: float,
              after_kill: Callable[[], str] | None = None, timeout: float = 90.0,
              until_killed: bool = False, ready: Callable[[], bool] | None = None) -> list[str]:
    """Start, kill -9 after a random delay in [low, high) seconds, ``kills`` times; then run to the
    end (unless ``until_killed``: a source that never ends is finished by the caller). With
    ``ready``, the delay counts from when ``ready()`` is first true.

    Returns a line per start saying what happened (for the failure message)."""
    events: list[str] = []
    for i in range(kills):
        run = start()
        if ready is not None:
            wait_for("the process to take its partitions", lambda: ready() or not run.alive(), 60)
        delay = rng.uniform(low, high)
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline and run.alive():
            time.sleep(0.01)
        if not run.alive():
            code = run.proc.wait()
            events.append(f"start {i + 1}: finished by itself (exit {code}) before the kill at {delay:.2f}s")
            assert code == 0, f"streamkit run failed (exit {code}):\n{run.tail()}"
            return events
        run.kill9()
        state = f"; then {after_kill()}" if after_kill is not None else ""
        events.append(f"start {i + 1}: kill -9 after {delay:.2f}s{state}")
    if until_killed:
        return events
    run = start()
    code = run.wait(timeout)
    events.append(f"last start: exit {code} after {time.monotonic() - run.started:.1f}s")
    assert code == 0, f"streamkit run failed (exit {code}):\n{run.tail()}"
    return events


# -- the truth ------------------------------------------------------------------------------

def generator_records(source: dict, n: int) -> list[dict]:
    """The first ``n`` records a ``generator`` source with these options produces."""
    from streamkit import Pipeline
    spec = Pipeline.from_dict({"source": {"type": "generator", **source},
                               "aggregations": [{"name": "n", "type": "count"}],
                               "sinks": [{"type": "discard"}]}).spec
    gen = spec.source.cls(spec.source.options, None)
    return gen.records(0, n)


def _window_ms(start: float) -> int:
    return int(round(start * 1000))


def truth(records: Iterable[dict], aggregations: list[dict]) -> dict:
    """Expected documents: {(aggregation, key items, window start ms or None): {field: value}}.

    ``aggregations`` use the pipeline-file shape; a window is a number of seconds."""
    out: dict = {}
    records = list(records)
    for agg in aggregations:
        kind, name, fld = agg["type"], agg["name"], agg.get("field")
        size = agg.get("window")
        groups: dict = defaultdict(list)
        for r in records:
            key = tuple((g, r[g]) for g in sorted(agg.get("group_by", [])))
            start = None
            if size is not None:
                start = _window_ms(math.floor(r[agg.get("time_field", "timestamp")] / size) * size)
            groups[(name, key, start)].append(r[fld] if fld else 1)
        for k, values in groups.items():
            if kind == "count":
                doc = {"count": len(values)}
            elif kind == "sum":
                doc = {"sum": sum(values)}
            elif kind == "avg":
                doc = {"sum": sum(values), "count": len(values), "avg": sum(values) / len(values)}
            elif kind == "min":
                doc = {"min": min(values)}
            elif kind == "max":
                doc = {"max": max(values)}
            else:
                raise ValueError(f"no truth for aggregation type {kind!r}")
            out[k] = doc
    return out


def stored(collection, aggregations: list[dict]) -> dict:
    """The documents in ``collection``, in the shape :func:`truth` returns."""
    kinds = {a["name"]: a["type"] for a in aggregations}
    out: dict = {}
    for doc in collection.find({}):
        name = doc.get("aggregation")
        start = (doc.get("window") or {}).get("start")
        key = (name, tuple(sorted((doc.get("key") or {}).items())),
               None if start is None else _window_ms(start.timestamp()))
        fields = FIELDS.get(kinds.get(name, ""), ())
        out[key] = {f: doc.get(f) for f in fields} if fields else {"unknown aggregation": doc}
    return out


def diff(expected: dict, actual: dict, limit: int = 15) -> str:
    """A readable difference, '' when the documents are exactly the expected ones."""
    lines = []
    missing = [k for k in expected if k not in actual]
    extra = [k for k in actual if k not in expected]
    wrong = [k for k in expected if k in actual and expected[k] != actual[k]]
    if not (missing or extra or wrong):
        return ""
    lines.append(f"{len(expected)} documents expected, {len(actual)} stored: {len(missing)} missing, "
                 f"{len(extra)} unexpected, {len(wrong)} with wrong values")
    for k in sorted(wrong, key=repr)[:limit]:
        lines.append(f"  differs  {_fmt(k)}: expected {expected[k]}, stored {actual[k]}")
    for k in sorted(missing, key=repr)[:limit]:
        lines.append(f"  missing  {_fmt(k)}: expected {expected[k]}")
    for k in sorted(extra, key=repr)[:limit]:
        lines.append(f"  extra    {_fmt(k)}: stored {actual[k]}")
    return "\n".join(lines)


def _fmt(k: tuple) -> str:
    name, key, start = k
    w = "" if start is None else f" window {time.strftime('%H:%M:%S', time.gmtime(start / 1000))}"
    return f"{name} {dict(key)}{w}"


def pipeline(name: str, source: dict, uri: str, database: str, aggregations: list[dict],
             flush: dict, delivery: str = "exactly_once") -> dict:
    """A pipeline file's content: ``source`` into the ``mongodb`` sink; windows in seconds."""
    aggs = [{**a, "window": f"{a['window']}s"} if "window" in a else a for a in aggregations]
    return {"name": name, "source": source, "aggregations": aggs,
            "sinks": [{"type": "mongodb", "uri": uri, "database": database, "collection": "aggregations",
                       "connect_timeout": "2s", "retry_backoff_max": "0.5s"}],
            "flush": flush, "delivery": delivery}


def kafka_source(bootstrap: str, topic: str, group: str) -> dict:
    return {"type": "kafka", "bootstrap_servers": bootstrap, "topic": topic, "group_id": group,
            "connect_timeout": "20s", "max_poll_records": 500}


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


def offsets_state(db, pipeline: str) -> dict:
    """partition -> (position, intent, epoch) from the sink's offsets collection."""
    return {d.get("partition"): (d.get("position"), d.get("intent"), d.get("epoch"))
            for d in db["streamkit_offsets"].find({"pipeline": pipeline})}


def main(argv: list[str]) -> int:
    """``streamkit`` as the tests run it: kafka-python's group session timeout lowered from 45 s
    to 6 s (the broker's minimum), so a killed member leaves the group within seconds."""
    try:
        from kafka import KafkaConsumer
        KafkaConsumer.DEFAULT_CONFIG["session_timeout_ms"] = 6000
        KafkaConsumer.DEFAULT_CONFIG["heartbeat_interval_ms"] = 1000
        KafkaConsumer.DEFAULT_CONFIG["reconnect_backoff_max_ms"] = 1000
        if os.environ.get("CRASHKIT_GROUP_INSTANCE_ID"):  # static membership: a restart takes over at once
            KafkaConsumer.DEFAULT_CONFIG["group_instance_id"] = os.environ["CRASHKIT_GROUP_INSTANCE_ID"]
    except ImportError:
        pass
    from streamkit.cli import main as streamkit_main
    return streamkit_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
