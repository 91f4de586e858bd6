"""The ``file`` and ``stdin`` sources without servers: lines and their positions under any reading
pattern, exact results into mongomock with resume, an interrupted flush replayed, dead letters
with file and byte offset, ``follow`` through rotations and truncation, stdin twice into one store,
and one-line errors. The truth is tests/truth.py; a kill -9 against the real server is in
tests/integration/test_file_source_crash.py."""
from __future__ import annotations

import gzip
import json
import os
import random
import subprocess
import sys
import threading
import time
import uuid

import pytest
from hypothesis import given, settings, strategies as st

from streamkit import Pipeline
from streamkit_files.file import fingerprint, share
from streamkit_files.lines import Lines
from truth import aggregate, diff, stored

AGGREGATIONS = [
    {"name": "per_user", "type": "count", "group_by": ["user_id"]},
    {"name": "duration", "type": "sum", "field": "duration_ms", "group_by": ["item_id"]},
    {"name": "longest", "type": "max", "field": "duration_ms"},
]


# -- lines and positions ------------------------------------------------------------------------

def expected_lines(data: bytes, limit: int, finished: bool) -> list[tuple[int, bytes]]:
    """(offset of the first byte, record) of every line, scanning byte by byte."""
    out, start, i = [], 0, 0
    while i < len(data):
        if data[i:i + 1] == b"\n":
            line = data[start:i]
            if line not in (b"", b"\r"):
                out.append((start, line[:limit]))
            start = i + 1
        i += 1
    if finished and data[start:] not in (b"", b"\r"):
        out.append((start, data[start:][:limit]))
    return out


def expected_cuts(data: bytes, limit: int, finished: bool) -> list[tuple[int, int]]:
    """(offset, length) of every line longer than ``limit`` (the last one only if ``finished``)."""
    out, start = [], 0
    for piece in data.split(b"\n")[:-1]:
        if len(piece) > limit:
            out.append((start, len(piece)))
        start += len(piece) + 1
    rest = data[start:]
    if finished and len(rest) > limit:
        out.append((start, len(rest)))
    return out


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.sampled_from([b"{}", b"ab", b"\r", b"\n", b"\n\n", b"x" * 7, b"\r\n", b"{\"a\":1}"]),
                       max_size=40),
       cuts=st.lists(st.integers(0, 400), max_size=8), limit=st.integers(1, 12), finished=st.booleans(),
       base=st.integers(0, 10**12))
def test_lines_are_the_same_however_the_bytes_arrive(pieces, cuts, limit, finished, base):
    data = b"".join(pieces)
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    lines = Lines("p", base, limit)
    got = []
    for a, b in zip(bounds, bounds[1:]):
        batch = lines.feed(data[a:b])
        if batch is not None:
            assert batch.next == lines.position and batch.first == batch.positions[0]
            got += list(zip(batch.positions, batch.records))
    if finished:
        last = lines.finish()
        if last is not None:
            got += list(zip(last.positions, last.records))
    assert got == [(base + p, r) for p, r in expected_lines(data, limit, finished)]
    if finished:
        assert lines.position == base + len(data)
    assert [(p, n) for p, n in lines.cuts] == [(base + p, n) for p, n in expected_cuts(data, limit, finished)]


def test_a_reader_starting_at_any_line_start_sees_the_same_lines():
    rng = random.Random(7)
    data = b"".join(rng.choice([b"{}\n", b"\n", b"x" * 30 + b"\n", b"ab\r\n", b"y" * 5]) for _ in range(300))
    everything = expected_lines(data, 16, True)
    for start, _ in everything[::17]:
        lines = Lines("p", start, 16)
        got = []
        for i in range(start, len(data), 13):
            b = lines.feed(data[i:i + 13])
            got += list(zip(b.positions, b.records)) if b else []
        b = lines.finish()
        got += list(zip(b.positions, b.records)) if b else []
        assert got == [x for x in everything if x[0] >= start]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300).map(lambda b: b.replace(b"x", b"\n")), block=st.integers(1, 40))
def test_after_last_line_finds_the_end_of_the_last_complete_line(tmp_path_factory, data, block):
    from streamkit_files.file import after_last_line
    path = tmp_path_factory.mktemp("end") / "f"
    path.write_bytes(data)
    with open(path, "rb") as fh:
        assert after_last_line(fh.fileno(), len(data), block) == data.rfind(b"\n") + 1


def test_share_gives_every_file_to_one_worker():
    paths = [f"/data/f{i}.jsonl" for i in range(400)]
    for n in (1, 2, 3, 8):
        shares = [share(p, n) for p in paths]
        assert all(0 <= s < n for s in shares)
        assert len(set(shares)) == n  # none idle with 400 files
        assert shares == [share(p, n) for p in paths]  # the same in every process


# -- files into mongomock -----------------------------------------------------------------------

def make_events(rng: random.Random, n: int) -> list[dict]:
    return [{"user_id": f"u{rng.randrange(40)}", "item_id": f"i{rng.randrange(9)}",
             "duration_ms": rng.randint(1, 9000)} for _ in range(n)]


def write_lines(path, records, *, gz=False, crlf=False, final_newline=True, extra=()):
    """Records as JSON lines, with blank lines, bad lines (``extra`` are inserted as they are)."""
    end = b"\r\n" if crlf else b"\n"
    lines = [json.dumps(r).encode() for r in records] + list(extra)
    data = end.join(lines) + (end if final_newline else b"")
    path.write_bytes(gzip.compress(data) if gz else data)
    return data


def file_pipeline(tmp_path, uri, path, interval="10s", **source):
    return Pipeline.from_dict({
        "name": "files", "source": {"type": "file", "path": path, "read_size": 4096, **source},
        "aggregations": AGGREGATIONS, "flush": {"max_records": 700, "interval": interval},
        "dead_letter": {"type": "jsonl", "path": str(tmp_path / "dead.jsonl")},
        "sinks": [{"type": "mongodb", "uri": uri, "database": "db", "collection": "aggregations"}]})


def check(uri, records):
    import streamkit_mongodb
    expected, _ = aggregate(records, AGGREGATIONS)
    problem = diff(expected, stored(streamkit_mongodb.connect(uri)["db"]["aggregations"], AGGREGATIONS))
    assert not problem, problem


def test_files_plain_gzip_and_odd_lines_exact_then_resume_after_appending(tmp_path):
    rng = random.Random(3)
    uri = f"mongomock://files-{uuid.uuid4().hex}"
    a, b, c = make_events(rng, 2500), make_events(rng, 1800), make_events(rng, 1200)
    (tmp_path / "in").mkdir()
    write_lines(tmp_path / "in" / "a.jsonl", a, extra=[b"", b"not json", b"[1, 2]"])
    write_lines(tmp_path / "in" / "b.jsonl.gz", b, gz=True, crlf=True)
    write_lines(tmp_path / "in" / "c.log", c, final_newline=False)
    pattern = str(tmp_path / "in" / "*")
    result = file_pipeline(tmp_path, uri, pattern).run()
    assert (result.records_read, result.records_aggregated, result.dead_letters) == (5502, 5500, 2)
    assert result.stopped_by == "source_finished"
    check(uri, a + b + c)
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    raw = (tmp_path / "in" / "a.jsonl").read_bytes()
    assert [(d["record"], d["position"]) for d in dead] == [("not json", raw.index(b"not json")),
                                                            ("[1, 2]", raw.index(b"[1, 2]"))]
    first_line = raw[:raw.index(b"\n") + 1]
    assert {d["partition"] for d in dead} == {f"{tmp_path / 'in' / 'a.jsonl'}#{fingerprint(first_line)}"}

    more = make_events(rng, 900)
    with open(tmp_path / "in" / "a.jsonl", "ab") as fh:  # appended: only these are new
        fh.write(b"".join(json.dumps(r).encode() + b"\n" for r in more))
    d = make_events(rng, 300)
    write_lines(tmp_path / "in" / "d.jsonl", d)  # a new file
    again = file_pipeline(tmp_path, uri, pattern).run()
    assert again.records_read == 1200  # c.log's last line had no \n: it was read, and is not again
    check(uri, a + b + c + more + d)
    assert file_pipeline(tmp_path, uri, pattern).run().records_read == 0


def test_stopping_anywhere_and_starting_again_is_exact(tmp_path):
    rng = random.Random(11)
    uri = f"mongomock://stops-{uuid.uuid4().hex}"
    events = make_events(rng, 6000)
    write_lines(tmp_path / "x.jsonl", events[:3500])
    write_lines(tmp_path / "y.jsonl.gz", events[3500:], gz=True)
    total = 0
    while True:
        result = file_pipeline(tmp_path, uri, str(tmp_path / "*.jsonl*")).run(max_events=rng.randint(1, 1500))
        total += result.records_read
        if result.stopped_by == "source_finished":
            break
    assert total == 6000
    check(uri, events)


def test_a_flush_interrupted_after_its_documents_is_replayed_line_for_line(tmp_path, monkeypatch):
    """A crash between the documents and the end of the intent: the next start reads the file
    again from the intent's start and cuts the same flush, which the fences skip; without the
    replay's exact boundaries (a flush cut elsewhere) the counts would differ."""
    from streamkit_mongodb.sink import MongoSink
    rng = random.Random(5)
    uri = f"mongomock://replay-{uuid.uuid4().hex}"
    events = make_events(rng, 5000)
    raw = write_lines(tmp_path / "x.jsonl", events)
    finish = MongoSink._finish
    calls = []

    def crash_on_third(self, parts, *clocks):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("crash after the documents, before the intent is done")
        return finish(self, parts, *clocks)
    monkeypatch.setattr(MongoSink, "_finish", crash_on_third)
    with pytest.raises(RuntimeError, match="crash after"):
        file_pipeline(tmp_path, uri, str(tmp_path / "x.jsonl")).run()
    monkeypatch.setattr(MongoSink, "_finish", finish)
    import streamkit_mongodb
    intents = [d["intent"] for d in streamkit_mongodb.connect(uri)["db"]["streamkit_offsets"].find()]
    assert len(intents) == 1 and intents[0] is not None  # the crash left the flush unfinished
    start = intents[0]["start"]
    assert 0 < start and raw[start - 1:start] == b"\n"  # a line start, after two finished flushes
    result = file_pipeline(tmp_path, uri, str(tmp_path / "x.jsonl"), read_size=999).run()
    assert result.records_read == raw[start:].count(b"\n")
    check(uri, events)


def test_an_over_long_line_is_a_dead_letter_and_the_next_lines_count(tmp_path, caplog):
    rng = random.Random(12)
    uri = f"mongomock://long-{uuid.uuid4().hex}"
    events = make_events(rng, 400)
    long_line = b'{"user_id": "' + b"x" * 5000 + b'"}'
    write_lines(tmp_path / "x.jsonl", events[:200], extra=[long_line])
    with open(tmp_path / "x.jsonl", "ab") as fh:
        fh.write(b"".join(json.dumps(r).encode() + b"\n" for r in events[200:]))
    result = file_pipeline(tmp_path, uri, str(tmp_path / "x.jsonl"), max_line_bytes=100, read_size=333).run()
    assert (result.records_read, result.dead_letters) == (401, 1)
    check(uri, events)
    (dead,) = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    raw = (tmp_path / "x.jsonl").read_bytes()
    assert dead["record"] == long_line[:100].decode() and dead["position"] == raw.index(long_line)
    assert dead["reason"].startswith("invalid JSON")
    assert [r.getMessage() for r in caplog.records if "max_line_bytes" in r.getMessage()] == [
        f"source: the line at byte {raw.index(long_line)} of {dead['partition']} has {len(long_line)} bytes, "
        f"above max_line_bytes (100): its first 100 bytes are a dead letter, the rest is skipped"]


# -- follow: growth, rotation, truncation ---------------------------------------------------------

def run_while(pipeline, writer):
    """Run ``pipeline`` while ``writer()`` writes its files on a thread; stop it when the writer is done."""
    def write():
        try:
            writer()
        finally:
            pipeline.stop()
    thread = threading.Thread(target=write)
    thread.start()
    try:
        return pipeline.run()
    finally:
        thread.join()


def test_follow_reads_growth_new_files_rotation_and_truncation(tmp_path):
    rng = random.Random(9)
    uri = f"mongomock://follow-{uuid.uuid4().hex}"
    log = tmp_path / "app.log"
    other = tmp_path / "other.log"
    batches = [make_events(rng, 400) for _ in range(6)]
    written: list[dict] = []
    pipeline = file_pipeline(tmp_path, uri, str(tmp_path / "*.log"), interval="0.05s", follow=True,
                             scan_interval="0.05s")

    def append(path, records):
        with open(path, "ab") as fh:
            fh.write(b"".join(json.dumps(r).encode() + b"\n" for r in records))
        written.extend(records)

    def settle():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = pipeline.result
            if r is not None and r.records_read == len(written):
                return
            time.sleep(0.02)
        raise AssertionError(f"read {pipeline.result.records_read} of {len(written)}")

    def writer():
        append(log, batches[0])
        settle()
        append(log, batches[1])           # growth
        append(other, batches[2])         # a new file
        settle()
        os.rename(log, tmp_path / "app.log.1")  # rotation: renamed, written a little more, replaced
        append(tmp_path / "app.log.1", batches[3][:50])
        append(log, batches[3][50:])
        settle()
        with open(other, "r+b") as fh:    # copytruncate
            fh.truncate(0)
        time.sleep(0.3)
        append(other, batches[4])
        settle()
        os.remove(tmp_path / "app.log.1")
        append(log, batches[5])
        settle()
    result = run_while(pipeline, writer)
    assert result.records_read == len(written) == 2400
    check(uri, written)


def test_follow_from_the_end_skips_what_was_there_and_reads_new_files_whole(tmp_path):
    rng = random.Random(16)
    uri = f"mongomock://end-{uuid.uuid4().hex}"
    old, new, other = make_events(rng, 500), make_events(rng, 300), make_events(rng, 200)
    data = write_lines(tmp_path / "app.log", old)
    with open(tmp_path / "app.log", "ab") as fh:  # a line being written when the run starts: it counts
        fh.write(json.dumps(new[0]).encode()[:10])
    pipeline = file_pipeline(tmp_path, uri, str(tmp_path / "*.log"), interval="0.05s", follow=True,
                             scan_interval="0.05s", start="end", read_size=777)

    def writer():
        time.sleep(0.5)
        with open(tmp_path / "app.log", "ab") as fh:
            fh.write(json.dumps(new[0]).encode()[10:] + b"\n")
            fh.write(b"".join(json.dumps(r).encode() + b"\n" for r in new[1:]))
        write_lines(tmp_path / "other.log", other)  # appears later: read from its start
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (pipeline.result is None or pipeline.result.records_read < 500):
            time.sleep(0.02)
        time.sleep(0.2)
    result = run_while(pipeline, writer)
    assert result.records_read == 500
    check(uri, new + other)
    import streamkit_mongodb
    first = {d["partition"].rsplit("/", 1)[1].split("#")[0]: d["position"]
             for d in streamkit_mongodb.connect(uri)["db"]["streamkit_offsets"].find()}
    assert first["app.log"] == (tmp_path / "app.log").stat().st_size > len(data)


def test_follow_reads_a_gzip_file_once_its_stream_is_complete(tmp_path):
    """A .gz still being written ends short of its stream's end: it is tried again at the next
    scan, and the records read from its first part are read again (the engine drops them with the
    new assignment) rather than counted twice."""
    rng = random.Random(13)
    uri = f"mongomock://gz-{uuid.uuid4().hex}"
    events = make_events(rng, 3000)
    plain = b"".join(json.dumps(r).encode() + b"\n" for r in events)
    data = gzip.compress(plain)
    pipeline = file_pipeline(tmp_path, uri, str(tmp_path / "*.gz"), interval="0.1s", follow=True,
                             scan_interval="0.05s")
    import streamkit_mongodb
    offsets = streamkit_mongodb.connect(uri)["db"]["streamkit_offsets"]

    def writer():
        with open(tmp_path / "late.jsonl.gz", "wb") as fh:
            fh.write(data[:len(data) // 2])
            fh.flush()
            time.sleep(0.5)
            fh.write(data[len(data) // 2:])
        deadline = time.monotonic() + 30  # until the whole content is stored as merged
        while time.monotonic() < deadline and [d.get("position") for d in offsets.find()] != [len(plain)]:
            time.sleep(0.02)
        time.sleep(0.3)  # were anything read twice, it would be by now
    run_while(pipeline, writer)
    check(uri, events)


def test_a_file_rewritten_shorter_with_the_same_first_line_is_not_read_twice(tmp_path, caplog):
    rng = random.Random(14)
    uri = f"mongomock://short-{uuid.uuid4().hex}"
    events = make_events(rng, 1000)
    write_lines(tmp_path / "x.jsonl", events)
    file_pipeline(tmp_path, uri, str(tmp_path / "x.jsonl")).run()
    write_lines(tmp_path / "x.jsonl", events[:300])  # the same first line, shorter than the stored position
    again = file_pipeline(tmp_path, uri, str(tmp_path / "x.jsonl")).run()
    assert again.records_read == 0
    check(uri, events)
    assert any("shorter than its stored position" in r.getMessage() for r in caplog.records)


# -- stdin ----------------------------------------------------------------------------------------

class _Pipe:
    def __init__(self, data: bytes) -> None:
        self.r, w = os.pipe()
        threading.Thread(target=self._write, args=(w, data), daemon=True).start()

    @staticmethod
    def _write(w, data):
        with os.fdopen(w, "wb") as fh:
            for i in range(0, len(data), 5000):
                fh.write(data[i:i + 5000])
                fh.flush()

    def fileno(self):
        return self.r


def test_stdin_twice_into_one_store_counts_both_runs(tmp_path, monkeypatch):
    """The second run's positions start above the first's, so the fences take none of its records
    for ones already merged (were they counted from 0 again, the store would keep the first run's)."""
    rng = random.Random(2)
    uri = f"mongomock://stdin-{uuid.uuid4().hex}"
    first, second = make_events(rng, 3000), make_events(rng, 2000)
    for run in (first, second):
        data = b"".join(json.dumps(r).encode() + b"\n" for r in run) + b"oops\n"
        monkeypatch.setattr(sys, "stdin", _Pipe(data))
        pipeline = Pipeline.from_dict({
            "name": "piped", "source": {"type": "stdin"}, "aggregations": AGGREGATIONS,
            "flush": {"max_records": 700},
            "sinks": [{"type": "mongodb", "uri": uri, "database": "db", "collection": "aggregations"}]})
        result = pipeline.run()
        assert (result.records_read, result.dead_letters, result.stopped_by) == (len(run) + 1, 1,
                                                                                 "source_finished")
    check(uri, first + second)


def test_stdin_after_a_crash_in_a_flush_counts_the_next_run_whole(tmp_path, monkeypatch):
    """A run that dies in the middle of a flush leaves an intent; the next run's records lie
    beyond its end, so none of them is taken for the replay of that flush and fenced away. (The
    next run sends the same lines again first, as a producer that starts over would: counted
    from the intent's start, they would cut the same flush, which the fences skip.)"""
    from streamkit_mongodb.sink import MongoSink
    import streamkit_mongodb
    rng = random.Random(8)
    uri = f"mongomock://stdin-crash-{uuid.uuid4().hex}"
    first = make_events(rng, 3000)
    second = first + make_events(rng, 500)
    finish = MongoSink._finish

    def crash(self, parts, *clocks):
        raise RuntimeError("killed after the documents, before the intent is done")

    def run(records):
        data = b"".join(json.dumps(r).encode() + b"\n" for r in records)
        monkeypatch.setattr(sys, "stdin", _Pipe(data))
        return Pipeline.from_dict({
            "name": "piped", "source": {"type": "stdin"}, "aggregations": AGGREGATIONS,
            "flush": {"max_records": 1000, "interval": "10s"},
            "sinks": [{"type": "mongodb", "uri": uri, "database": "db", "collection": "aggregations"}]}).run()
    monkeypatch.setattr(MongoSink, "_finish", crash)
    with pytest.raises(RuntimeError, match="killed after"):
        run(first)
    monkeypatch.setattr(MongoSink, "_finish", finish)
    (intent,) = [d["intent"] for d in streamkit_mongodb.connect(uri)["db"]["streamkit_offsets"].find()]
    data = b"".join(json.dumps(r).encode() + b"\n" for r in first)
    merged = data[:intent["end"] - intent["start"]].count(b"\n")  # the first flush reached every document
    assert 0 < merged < len(first)
    assert run(second).records_read == len(second)
    check(uri, first[:merged] + second)


def test_stdin_from_a_shell_pipe_with_the_cli_spelling(tmp_path):
    rng = random.Random(4)
    events = make_events(rng, 500)
    p = tmp_path / "p.yaml"
    p.write_text(json.dumps({"source": {"type": "generator"}, "aggregations": AGGREGATIONS[:1],
                             "sinks": [{"type": "jsonl", "path": str(tmp_path / "out.jsonl")}]}))
    data = b"".join(json.dumps(r).encode() + b"\n" for r in events)
    out = subprocess.run([sys.executable, "-m", "streamkit", "run", str(p), "-q", "--json",
                          "--set", "source={type: stdin}"], input=data, capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["records_read"] == 500
    counts: dict = {}
    for line in (tmp_path / "out.jsonl").read_text().splitlines():
        d = json.loads(line)
        counts[d["key"]["user_id"]] = counts.get(d["key"]["user_id"], 0) + d["count"]
    expected: dict = {}
    for e in events:
        expected[e["user_id"]] = expected.get(e["user_id"], 0) + 1
    assert counts == expected


# -- bad input ------------------------------------------------------------------------------------

#: as root, the command without the power to read any file (root's CAP_DAC_OVERRIDE dropped)
AS_USER = (["setpriv", "--bounding-set=-dac_override,-dac_read_search",
            "--inh-caps=-dac_override,-dac_read_search"] if os.geteuid() == 0 else [])


def run_cli(tmp_path, source: dict, *extra: str, prefix: list | None = None):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\ndelivery: at_least_once\nsource: " + json.dumps(source) +
                 "\naggregations: [{name: n, type: count}]\nsinks: [{type: discard}]\n")
    return subprocess.run([*(prefix or []), sys.executable, "-m", "streamkit", "run", str(p), "-q", *extra],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", ["no match", "broken gzip", "unreadable"])
def test_bad_input_is_one_line_with_exit_code_2(tmp_path, case):
    if case == "no match":
        source = {"type": "file", "path": str(tmp_path / "nothing" / "*.jsonl")}
        want = f"source.path: no file matches '{tmp_path / 'nothing' / '*.jsonl'}'"
    elif case == "broken gzip":
        data = gzip.compress(b'{"a": 1}\n' * 5000)
        (tmp_path / "x.jsonl.gz").write_bytes(data[:len(data) // 2])
        source = {"type": "file", "path": str(tmp_path / "x.jsonl.gz")}
        want = f"cannot read '{tmp_path / 'x.jsonl.gz'}' at byte"
    else:
        (tmp_path / "x.jsonl").write_text("{}\n")
        os.chmod(tmp_path / "x.jsonl", 0)
        source = {"type": "file", "path": str(tmp_path / "x.jsonl")}
        want = "Permission denied"
    out = run_cli(tmp_path, source, prefix=AS_USER if case == "unreadable" else None)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and want in lines[0] and "bad.yaml:3: source.path: " in lines[0], out.stderr


def test_the_files_example_runs(tmp_path):
    from pathlib import Path
    rng = random.Random(15)
    events = make_events(rng, 2000)
    write_lines(tmp_path / "a.jsonl", events[:1200], extra=[b"oops"])
    write_lines(tmp_path / "b.jsonl.gz", events[1200:], gz=True)
    example = Path(__file__).resolve().parent.parent / "examples" / "files.yaml"
    env = {**os.environ, "FILES": str(tmp_path / "*.jsonl*"), "MONGO_URI": "mongomock://example",
           "DEAD_LETTERS": str(tmp_path / "dead.jsonl")}
    out = subprocess.run([sys.executable, "-m", "streamkit", "run", str(example), "-q", "--json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert (result["records_read"], result["dead_letters"], result["stopped_by"]) == (2001, 1, "source_finished")
    assert json.loads((tmp_path / "dead.jsonl").read_text())["record"] == "oops"
