"""streamkit reading Kafka against the client libraries' own ceilings, the closest peer (Quix
Streams) and the seed's naive consumer, side by side in one run, on a 4-partition topic
pre-filled with generated events.

    eval "$(scripts/services up)"
    python benchmarks/bench_kafka.py                       # 200,000 events, on kafka-python
    python benchmarks/bench_kafka.py --events 1000000      # the issue's figure
    python benchmarks/bench_kafka.py --profile             # also: where kafka-python spends its time
    python benchmarks/bench_kafka.py --clients --events 990000 --repeat 3 --aggregations count
                                                           # the two clients and Quix Streams, paired rounds

With ``--clients`` (the client libraries compared; needs the ``fast`` or ``test`` extra), every
round runs, in pairs whose order rotates from round to round:

  (b-rd) / (a-rd)   a bare confluent-kafka consume loop + orjson, and streamkit on confluent-kafka
                    (``client: confluent-kafka``) -> the aggregations -> discard
  (b) / (a-kp)      the same two on kafka-python
  (a-kp) / (a-rd)   streamkit on each client -> mongodb on MONGO_URI, exactly-once
  (q)               Quix Streams 3.28.1 counting per user (the message key) in its RocksDB state,
                    in a virtual environment of its own under ~/.cache/streamkit (installed by this
                    script on first use)

and prints each rate per round and the ratios within each round (with ``--profile``, also where
streamkit's reading thread spends its time on confluent-kafka). Without ``--clients``:

Contenders (each reads the whole topic from the start, in its own consumer group; streamkit on
kafka-python, ``client: kafka-python``):

  (a) streamkit   kafka -> count per user + avg duration per item -> sink, with the sink being
                  mongodb on MONGO_URI (SecantusDB in tests), mongodb on mongomock:// (an
                  in-process store), and discard (no store): the differences separate the
                  client's cost from the store's
  (b) bare        a kafka-python poll loop that orjson-decodes every value and does nothing else
  (b') bare, CRC in Python   the same loop with kafka-python's pure-Python CRC-32C check, as when
                  the ``crc32c`` package is not installed (kafka-python falls back to it silently)
  (c) naive       the seed's design: per record, decode, update the aggregate in memory, then
                  two update_one calls (two round trips): the user's count and the item's average.
                  It is measured on the first --sample records of the topic only, because it is
                  slow by orders of magnitude, and its rate is taken as its rate for the whole
                  topic. The report prints its rate per quarter of the sample: once the 1,200
                  documents exist the collection stops growing and the rate is steady.

Events come from streamkit's generator (seed 42, 1,000 users, 200 items) through the kafka sink,
keyed by user. ``--topic`` reuses a filled topic from an earlier run (and keeps it); a topic the
script creates is deleted at the end unless ``--keep-topic``.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
import uuid

import orjson

USERS, ITEMS = 1000, 200
AGGREGATIONS = [
    {"name": "interactions_per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "duration_per_item", "type": "avg", "field": "duration_ms", "group_by": ["item_id"]},
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- the topic ----------------------------------------------------------------------------------
def topic_size(bootstrap: str, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = c.partitions_for_topic(topic)
        if not parts:
            return 0
        tps = [TopicPartition(topic, p) for p in parts]
        return sum(c.end_offsets(tps).values()) - sum(c.beginning_offsets(tps).values())
    finally:
        c.close()


def fill(bootstrap: str, topic: str, n: int) -> float:
    """Create ``topic`` (4 partitions) and produce ``n`` generated events with streamkit itself."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from streamkit import Pipeline

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 4, 1)])
    finally:
        admin.close()
    config = {
        "name": "bench-fill",
        "source": {"type": "generator", "seed": 42, "users": USERS, "items": ITEMS, "rate": 0},
        "sinks": [{"type": "kafka", "bootstrap_servers": bootstrap, "topic": topic, "what": "records",
                   "key_field": "user_id", "linger_ms": 50, "batch_size": 1 << 20}],
        "flush": {"interval": "2s", "max_records": 50_000},
    }
    r = Pipeline.from_dict(config).run(max_events=n)
    return r.records_per_second


# -- (b) the client's ceiling -------------------------------------------------------------------
def bare(bootstrap: str, topic: str, n: int, profile: bool = False, python_crc: bool = False) -> dict:
    from kafka import KafkaConsumer
    from kafka.record import default_records, util

    loads = orjson.loads
    checked = default_records.calc_crc32c
    if python_crc:  # what kafka-python does without the crc32c package
        default_records.calc_crc32c = lambda data: util.calc_crc32c(data, _crc32c=util.crc32c_py)
    started = time.perf_counter()
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
                      enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=10_000)
    prof = cProfile.Profile() if profile else None
    got, first = 0, None
    try:
        if prof:
            prof.enable()
        while got < n:
            batch = c.poll(timeout_ms=200)
            if batch and first is None:
                first = time.perf_counter()
            for msgs in batch.values():
                records = [loads(m.value) for m in msgs]
                got += len(records)
        if prof:
            prof.disable()
    finally:
        c.close(autocommit=False)
        default_records.calc_crc32c = checked
    end = time.perf_counter()
    out = {"records": got, "seconds": end - started, "steady": end - first}
    if prof:
        out["profile"] = prof
    return out


# -- (a) streamkit --------------------------------------------------------------------------------
class Probe:
    """Timestamps of source polls and sink writes, to see whether writes stall reading."""

    def __init__(self) -> None:
        self.polls: list[tuple[float, int]] = []
        self.writes: list[tuple[float, float]] = []
        self.waiting = 0.0
        self.first: float | None = None

    def install(self):
        from streamkit import engine
        from streamkit_kafka import source

        probe = self
        poll, write, flush = source.KafkaSource.poll, engine.Engine.write, engine.Engine.flush

        def timed_poll(self, timeout):
            batches = poll(self, timeout)
            n = sum(len(b.records) for b in batches or ())
            if n:
                now = time.perf_counter()
                if probe.first is None:
                    probe.first = now
                probe.polls.append((now, n))
            return batches

        def timed_write(self, f):
            t = time.perf_counter()
            try:
                return write(self, f)
            finally:
                probe.writes.append((t, time.perf_counter()))

        def timed_flush(self):  # flush() blocks only while the previous flush is still being written
            t = time.perf_counter()
            try:
                return flush(self)
            finally:
                probe.waiting += time.perf_counter() - t

        source.KafkaSource.poll = timed_poll
        engine.Engine.write, engine.Engine.flush = timed_write, timed_flush

        def restore():
            source.KafkaSource.poll, engine.Engine.write, engine.Engine.flush = poll, write, flush
        return restore

    def read_while_writing(self) -> float:
        """Share of records whose poll returned while a flush was being written."""
        total = sum(n for _, n in self.polls) or 1
        inside = sum(n for t, n in self.polls if any(s <= t <= e for s, e in self.writes))
        return inside / total


def streamkit_run(bootstrap: str, topic: str, n: int, sink: dict, flush: dict, client: str = "kafka-python",
                  aggregations: list[dict] = AGGREGATIONS, profile: bool = False) -> dict:
    from streamkit import Pipeline

    config = {
        "name": f"bench-{uuid.uuid4().hex[:8]}",
        "source": {"type": "kafka", "client": client, "bootstrap_servers": bootstrap, "topic": topic,
                   "group_id": f"bench-sk-{uuid.uuid4().hex[:8]}", "start": "earliest"},
        "aggregations": aggregations,
        "sinks": [sink],
        "flush": flush,
    }
    probe = Probe()
    restore = probe.install()
    prof = cProfile.Profile() if profile else None
    try:
        pipeline = Pipeline.from_dict(config)
        started = time.perf_counter()
        if prof:
            prof.enable()
        r = pipeline.run(max_events=n)
        if prof:
            prof.disable()
        end = time.perf_counter()
    finally:
        restore()
    write_time = sum(e - s for s, e in probe.writes)
    return {"records": r.records_read, "seconds": end - started, "steady": end - probe.first,
            "flushes": r.flushes, "write_time": write_time, "waiting": probe.waiting,
            "read_while_writing": probe.read_while_writing(), "profile": prof}


# -- the librdkafka client's ceiling and the closest peer ----------------------------------------
def bare_librdkafka(bootstrap: str, topic: str, n: int) -> dict:
    """(b-rd) a confluent-kafka consume loop that orjson-decodes every value and does nothing else."""
    from confluent_kafka import Consumer

    loads = orjson.loads
    started = time.perf_counter()
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-rd-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got, first = 0, None
    try:
        while got < n:
            msgs = c.consume(10_000, 0.2)
            if msgs and first is None:
                first = time.perf_counter()
            records = [loads(m.value()) for m in msgs]
            got += len(records)
    finally:
        c.close()
    end = time.perf_counter()
    return {"records": got, "seconds": end - started, "steady": end - first}


QUIX = "quixstreams==3.28.1"
QUIX_APP = r"""
import json, sys, tempfile, time, uuid
from quixstreams import Application

bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
started = time.perf_counter()
app = Application(broker_address=bootstrap, consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}",
                  auto_offset_reset="earliest", state_dir=tempfile.mkdtemp(prefix="bench-quix-"),
                  loglevel="WARNING")
seen = {"n": 0, "first": None}

def count(value, state):  # the topic is keyed by user: Quix's state is per message key
    state.set("count", state.get("count", 0) + 1)
    seen["n"] += 1
    if seen["first"] is None:
        seen["first"] = time.perf_counter()
    if seen["n"] == n:
        seen["end"] = time.perf_counter()
        app.stop()

app.dataframe(app.topic(topic, value_deserializer="json")).update(count, stateful=True)
app.run()
print(json.dumps({"records": seen["n"], "seconds": seen["end"] - started, "steady": seen["end"] - seen["first"]}))
"""


def quix_python() -> str:
    """The Python of a virtual environment with Quix Streams (made, and kept, on first use)."""
    import subprocess
    home = os.path.join(os.path.expanduser("~"), ".cache", "streamkit", f"venv-{QUIX.replace('==', '-')}")
    exe = os.path.join(home, "bin", "python")
    if not os.path.exists(exe) or subprocess.run([exe, "-c", "import quixstreams"],
                                                 capture_output=True).returncode:
        log(f"installing {QUIX} into {home} (once) ...")
        subprocess.run([sys.executable, "-m", "venv", home], check=True)
        subprocess.run([exe, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", QUIX],
                       check=True)
    return exe


def quix(bootstrap: str, topic: str, n: int) -> dict:
    """(q) Quix Streams: count per user (the message key) in its RocksDB state, no sink."""
    import subprocess
    proc = subprocess.run([quix_python(), "-c", QUIX_APP, bootstrap, topic, str(n)], capture_output=True,
                          text=True, timeout=3600)
    if proc.returncode:
        raise RuntimeError(f"the Quix Streams contender failed:\n{proc.stderr[-2000:]}")
    return json_loads_last(proc.stdout)


def json_loads_last(text: str) -> dict:
    return orjson.loads(text.strip().splitlines()[-1])


# -- (c) the seed's naive consumer ---------------------------------------------------------------
def naive(bootstrap: str, topic: str, sample: int, uri: str) -> dict:
    from kafka import KafkaConsumer
    from streamkit_mongodb import connect

    client = connect(uri) if uri.startswith("mongomock://") else connect(uri, serverSelectionTimeoutMS=10_000)
    db = client[f"bench_naive_{uuid.uuid4().hex[:8]}"]
    users, items = db["user_counts"], db["item_durations"]
    counts: dict = {}
    durations: dict = {}
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"bench-naive-{uuid.uuid4().hex[:8]}",
                      enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=500)
    got, first = 0, None
    marks = []  # time at each quarter of the sample
    quarter = max(1, sample // 4)
    try:
        while got < sample:
            for msgs in c.poll(timeout_ms=200).values():
                if first is None:
                    first = time.perf_counter()
                for m in msgs:
                    if got >= sample:
                        break
                    e = orjson.loads(m.value)
                    u, i, d = e["user_id"], e["item_id"], e["duration_ms"]
                    counts[u] = counts.get(u, 0) + 1
                    s, k = durations.get(i, (0, 0))
                    durations[i] = (s + d, k + 1)
                    users.update_one({"_id": u}, {"$set": {"count": counts[u]}}, upsert=True)
                    s, k = durations[i]
                    items.update_one({"_id": i}, {"$set": {"sum": s, "count": k, "avg": s / k}}, upsert=True)
                    got += 1
                    if got % quarter == 0:
                        marks.append(time.perf_counter())
        end = time.perf_counter()
    finally:
        c.close(autocommit=False)
        client.drop_database(db.name)
        if not uri.startswith("mongomock://"):
            client.close()
    quarters = [quarter / (b - a) for a, b in zip([first] + marks, marks)][:4]
    return {"records": got, "seconds": end - first, "steady": end - first, "quarters": quarters}


def drop_topic(bootstrap: str, topic: str) -> None:
    from kafka.admin import KafkaAdminClient
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()


# -- report --------------------------------------------------------------------------------------
def rate(r: dict, key: str = "steady") -> float:
    return r["records"] / r[key]


def where_kafka_python_spends(prof: cProfile.Profile, limit: int = 8) -> str:
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    total = stats.total_tt
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:limit]
    lines = [f"  {'tottime':>8} {'share':>6}  function"]
    for (path, line, fn), (_, _, tt, _, _) in rows:
        short = path.split("site-packages/")[-1]
        lines.append(f"  {tt:8.2f}s {tt / total:6.1%}  {short}:{line}({fn})")
    return "\n".join(lines)


COUNT_PER_USER = [AGGREGATIONS[0]]

#: --clients: contenders run in pairs, each ratio taken within its pair of the same round
CLIENT_PAIRS = [("b-rd", "a-rd-discard"), ("b", "a-kp-discard"), ("a-kp-mongodb", "a-rd-mongodb"), ("q",)]
CLIENT_RATIOS = [("a-rd-discard", "b-rd", ">= 0.8"), ("a-rd-mongodb", "a-kp-mongodb", ">= 1.5"),
                 ("a-kp-discard", "b", ""), ("b-rd", "b", ""), ("a-rd-discard", "a-kp-discard", ""),
                 ("a-rd-discard", "q", "")]


def measure_clients(args: argparse.Namespace, bootstrap: str, mongo: str | None, topic: str, skip: set) -> int:
    """The two client libraries side by side, and Quix Streams, in paired rounds."""
    n = args.events
    if not ensure_topic(bootstrap, topic, n):
        return 2
    aggs = COUNT_PER_USER if args.aggregations == "count" else AGGREGATIONS
    what = "count per user" if args.aggregations == "count" else "count per user + avg duration per item"
    flush = {"interval": args.flush_interval, "max_records": args.flush_max_records}
    databases: list[str] = []

    def into_mongo() -> dict:  # a new database each time: exactly-once would resume otherwise
        databases.append(f"bench_{uuid.uuid4().hex[:8]}")
        return {"type": "mongodb", "uri": mongo, "database": databases[-1], "collection": "aggregations"}

    runs = {
        "b-rd": ("(b-rd) bare confluent-kafka consume loop + orjson", lambda: bare_librdkafka(bootstrap, topic, n)),
        "b": ("(b) bare kafka-python poll loop + orjson", lambda: bare(bootstrap, topic, n)),
        "a-rd-discard": (f"(a-rd) streamkit on confluent-kafka -> {what} -> discard",
                         lambda: streamkit_run(bootstrap, topic, n, {"type": "discard"}, flush, "confluent-kafka", aggs)),
        "a-kp-discard": (f"(a-kp) streamkit on kafka-python -> {what} -> discard",
                         lambda: streamkit_run(bootstrap, topic, n, {"type": "discard"}, flush, "kafka-python", aggs)),
        "a-rd-mongodb": ("(a-rd) the same on confluent-kafka -> mongodb on MONGO_URI, exactly-once",
                         lambda: streamkit_run(bootstrap, topic, n, into_mongo(), flush, "confluent-kafka", aggs)),
        "a-kp-mongodb": ("(a-kp) the same on kafka-python -> mongodb on MONGO_URI, exactly-once",
                         lambda: streamkit_run(bootstrap, topic, n, into_mongo(), flush, "kafka-python", aggs)),
        "q": (f"(q) {QUIX.replace('==', ' ')} (librdkafka, RocksDB state) count per user, no sink",
              lambda: quix(bootstrap, topic, n)),
    }
    if not mongo:
        skip |= {"a-rd-mongodb", "a-kp-mongodb"}
    rates: dict[str, list[float]] = {k: [] for k in runs if k not in skip}
    for i in range(args.repeat):
        pairs = CLIENT_PAIRS[i % len(CLIENT_PAIRS):] + CLIENT_PAIRS[:i % len(CLIENT_PAIRS)]
        for pair in pairs:
            for key in (pair if i % 2 == 0 else pair[::-1]):
                if key in rates:
                    log(f"{runs[key][0]} ... [round {i + 1}/{args.repeat}]")
                    rates[key].append(rate(runs[key][1]()))
    if databases:
        from pymongo import MongoClient
        with MongoClient(mongo) as client:
            for d in databases:
                client.drop_database(d)

    print(f"\n{n:,} events, 4 partitions, {USERS:,} users, {ITEMS} items; streamkit: {what}, flush.interval "
          f"{args.flush_interval}, flush.max_records {args.flush_max_records:,}; records/s from the first record "
          f"read; {args.repeat} rounds, pairs in turn (order rotating), other work on the machine meanwhile")
    print(f"{'contender':<84} " + " ".join(f"{'round ' + str(i + 1):>9}" for i in range(args.repeat))
          + f" {'median':>9}")
    for key, got in rates.items():
        print(f"{runs[key][0]:<84} " + " ".join(f"{r:>9,.0f}" for r in got) + f" {statistics.median(got):>9,.0f}")
    print("\nratios within each round (median, min-max)")
    for a, b, target in CLIENT_RATIOS:
        if a in rates and b in rates:
            got = [x / y for x, y in zip(rates[a], rates[b])]
            aim = f"  target {target}" if target else ""
            print(f"  {a:>12} / {b:<12} {statistics.median(got):5.2f}x ({min(got):.2f}-{max(got):.2f}){aim}")
    if args.profile:
        log("(a-rd) streamkit on confluent-kafka -> discard once more under cProfile ...")
        prof = streamkit_run(bootstrap, topic, n, {"type": "discard"}, flush, "confluent-kafka", aggs,
                             profile=True)["profile"]
        print("\nwhere streamkit on confluent-kafka spends its reading thread's time (cProfile, top by own time):")
        print(where_kafka_python_spends(prof, limit=12))
    return 0


def ensure_topic(bootstrap: str, topic: str, n: int) -> bool:
    have = topic_size(bootstrap, topic)
    if have == 0:
        log(f"filling {topic} (4 partitions) with {n:,} generated events ...")
        log(f"  produced at {fill(bootstrap, topic, n):,.0f} events/s (streamkit generator -> kafka sink)")
    elif have != n:
        log(f"topic {topic} holds {have:,} events, not {n:,}")
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    from streamkit_mongodb import speed_up_mongomock
    speed_up_mongomock()  # mongomock looks documents up by _id, as a server does
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000, help="events in the topic (default 200,000)")
    ap.add_argument("--sample", type=int, default=20_000,
                    help="records the naive consumer handles (default 20,000); its rate is taken for all")
    ap.add_argument("--topic", help="reuse this topic if it holds --events events (else it is created)")
    ap.add_argument("--keep-topic", action="store_true", help="keep the topic this run creates")
    ap.add_argument("--profile", action="store_true",
                    help="profile the bare loop: where the client's time goes")
    ap.add_argument("--repeat", type=int, default=3, help="runs of (b) and (a)->discard; the best counts")
    ap.add_argument("--flush-interval", default="1s", help="streamkit's flush.interval (default 1s)")
    ap.add_argument("--flush-max-records", type=int, default=500_000,
                    help="streamkit's flush.max_records (default 500,000: flushes are time-triggered)")
    ap.add_argument("--skip", default="", help="comma list of contenders to skip: "
                                               "mongodb,mongomock,discard,python-crc,naive-mongodb,naive-mongomock; "
                                               "with --clients: b-rd,b,a-rd-discard,a-kp-discard,a-rd-mongodb,"
                                               "a-kp-mongodb,q")
    ap.add_argument("--clients", action="store_true",
                    help="compare the client libraries instead: bare loops and streamkit on confluent-kafka and "
                         "on kafka-python, and Quix Streams (installed into its own venv on first use), in paired "
                         "rounds (--repeat of them)")
    ap.add_argument("--aggregations", choices=("count", "both"), default="both",
                    help="streamkit's aggregations: count per user, or also avg duration per item (default)")
    args = ap.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP")
    mongo = os.environ.get("MONGO_URI")
    if not bootstrap:
        log('KAFKA_BOOTSTRAP is not set; start the servers with: eval "$(scripts/services up)"')
        return 2
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if not mongo:
        log("MONGO_URI is not set: the MongoDB-server contenders are skipped")
        skip |= {"mongodb", "naive-mongodb"}
    n = args.events

    topic = args.topic or f"bench_{n}_{uuid.uuid4().hex[:6]}"
    try:
        return (measure_clients if args.clients else measure)(args, bootstrap, mongo, topic, skip)
    finally:
        if not args.topic and not args.keep_topic:
            drop_topic(bootstrap, topic)


def measure(args: argparse.Namespace, bootstrap: str, mongo: str | None, topic: str, skip: set) -> int:
    n = args.events
    if not ensure_topic(bootstrap, topic, n):
        return 2

    results: dict[str, dict] = {}
    flush = {"interval": args.flush_interval, "max_records": args.flush_max_records}

    def best(key: str, r: dict) -> None:  # other work on the machine only ever slows a run down
        if key not in results or rate(r) > rate(results[key]):
            results[key] = r

    pairs: dict[str, list[float]] = {"a-discard": [], "b-pycrc": []}  # each run / (b) of the same round
    for i in range(args.repeat):  # the client-bound contenders, interleaved
        log(f"(b) bare kafka-python + orjson loop ... [{i + 1}/{args.repeat}]")
        b = bare(bootstrap, topic, n)
        best("b", b)
        if "python-crc" not in skip:
            log(f"(b') the same, CRC-32C checked in Python ... [{i + 1}/{args.repeat}]")
            r = bare(bootstrap, topic, n, python_crc=True)
            best("b-pycrc", r)
            pairs["b-pycrc"].append(rate(r) / rate(b))
        if "discard" not in skip:
            log(f"(a) streamkit -> discard ... [{i + 1}/{args.repeat}]")
            r = streamkit_run(bootstrap, topic, n, {"type": "discard"}, flush)
            best("a-discard", r)
            pairs["a-discard"].append(rate(r) / rate(b))
    skip.add("discard")
    databases: list[str] = []

    def sink(store: str) -> dict:  # a new database each time: exactly-once would resume otherwise
        databases.append(f"bench_{uuid.uuid4().hex[:8]}")
        uri = (mongo or "") if store == "mongodb" else "mongomock://bench"
        return {"type": "mongodb", "uri": uri, "database": databases[-1], "collection": "aggregations"}

    for name, uri in (("mongomock", "mongomock://naive"), ("mongodb", mongo)):
        if name not in skip:
            log("(b) bare kafka-python + orjson loop, paired with the next ...")
            b = bare(bootstrap, topic, n)
            best("b", b)
            log(f"(a) streamkit -> {name} ...")
            r = results[f"a-{name}"] = streamkit_run(bootstrap, topic, n, sink(name), flush)
            pairs[f"a-{name}"] = [rate(r) / rate(b)]
        if f"naive-{name}" not in skip:
            log(f"(c) naive update_one per record -> {name} ({args.sample:,}-record sample) ...")
            results[f"c-{name}"] = naive(bootstrap, topic, args.sample, uri)
            if name not in skip:  # (a) again, so that (c) is bracketed by (a) into the same store
                log(f"(a) streamkit -> {name}, again after (c) ...")
                results[f"a-{name}-after"] = streamkit_run(bootstrap, topic, n, sink(name), flush)
    if mongo and databases:  # drop the benchmark databases on the server
        from pymongo import MongoClient
        with MongoClient(mongo) as client:
            for d in databases:
                client.drop_database(d)

    print(f"\n{n:,} events, 4 partitions, {USERS:,} users, {ITEMS} items, flush.interval "
          f"{args.flush_interval}, flush.max_records {args.flush_max_records:,}; records/s from the first record "
          f"read (in brackets: including connect and group join); (b), (b') and (a)->discard: best of "
          f"{args.repeat}; (c): the first {args.sample:,} records only")
    print(f"{'contender':<52} {'records/s':>12} {'(with join)':>13}")
    labels = {"b": "(b) bare kafka-python + orjson",
              "b-pycrc": "(b') bare, CRC-32C in Python (no crc32c package)",
              "a-discard": "(a) streamkit -> discard",
              "a-mongomock": "(a) streamkit -> mongodb on mongomock://",
              "a-mongodb": "(a) streamkit -> mongodb on MONGO_URI",
              "a-mongomock-after": "(a) streamkit -> mongodb on mongomock://, after (c)",
              "a-mongodb-after": "(a) streamkit -> mongodb on MONGO_URI, after (c)",
              "c-mongomock": "(c) naive, 2 update_one/record -> mongomock://",
              "c-mongodb": "(c) naive, 2 update_one/record -> MONGO_URI"}
    for key, r in results.items():
        print(f"{labels[key]:<52} {rate(r):>12,.0f} {rate(r, 'seconds'):>13,.0f}")
    for key in ("c-mongomock", "c-mongodb"):
        if key in results:
            q = results[key]["quarters"]
            print(f"{labels[key]}: records/s per quarter of the sample: " + ", ".join(f"{x:,.0f}" for x in q))
    b = rate(results["b"])
    print("\nratios to (b); paired: each run against the (b) run just before it (median, min-max)")
    for key in ("b-pycrc", "a-discard", "a-mongomock", "a-mongodb"):
        if key in results:
            p = pairs.get(key) or [rate(results[key]) / b]
            spread = f"{min(p):.2f}-{max(p):.2f}" if len(p) > 1 else "one pair"
            print(f"{labels[key].split(') ', 1)[1]:<48} / bare = {statistics.median(p):5.2f}x paired ({spread}); "
                  f"best / best {rate(results[key]) / b:5.2f}x")
    for store, name in (("mongomock", "mongomock://"), ("mongodb", "MONGO_URI")):
        a, c = results.get(f"a-{store}"), results.get(f"c-{store}")
        if a and c:
            after = results.get(f"a-{store}-after")
            both = f" (before) and {rate(after) / rate(c):,.0f}x (after)" if after else ""
            print(f"streamkit / naive, both into {name:<13} = {rate(a) / rate(c):,.0f}x{both}; naive: 2 update_one "
                  f"round trips per record, the rate of its first {c['records']:,} records taken for all {n:,}")
    print()
    for key in ("a-discard", "a-mongomock", "a-mongodb"):
        r = results.get(key)
        if r:
            print(f"{labels[key][4:]}: {r['flushes']} flushes, writer busy {r['write_time']:.1f}s of "
                  f"{r['steady']:.1f}s, reader waited for the writer {r['waiting']:.1f}s, "
                  f"{r['read_while_writing']:.0%} of records read while a flush was being written")
    if args.profile:
        log("(b) once more under cProfile ...")
        prof = bare(bootstrap, topic, n, profile=True)["profile"]
        print("\nwhere the bare loop's time goes (cProfile, top functions by own time):")
        print(where_kafka_python_spends(prof))
    return 0


if __name__ == "__main__":
    sys.exit(main())
