"""``streamkit run --workers N`` without servers: sources that cannot be split are refused in one
line, a split file source reads every file once, a killed worker is started again, SIGTERM stops
all with one summary line, and workers stop when their supervisor is killed. Exactly-once with
several workers into the real MongoDB-wire server, Kafka and files: tests/integration/test_workers.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from processes import wait_for


def write(tmp_path, text: str):
    p = tmp_path / "p.yaml"
    p.write_text(text)
    return p


def cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "streamkit", *map(str, args)], capture_output=True, text=True,
                          timeout=180, **kwargs)


PIPELINE = """name: w
delivery: at_least_once
source: {source}
aggregations: [{{name: n, type: count, group_by: [k]}}]
sinks: [{{type: discard}}]
"""


@pytest.mark.parametrize("how", ["flag", "file"])
def test_a_source_that_cannot_be_split_is_refused_in_one_line(tmp_path, how):
    p = write(tmp_path, PIPELINE.format(source="{type: generator}") + ("workers: 3\n" if how == "file" else ""))
    out = cli("run", p, *(["--workers", "3"] if how == "flag" else []))
    given = "--workers 3" if how == "flag" else "workers: 3"
    line = (f"streamkit: error: {p}:3: source.type: a generator source cannot be split over several processes "
            f"({given}); run one")
    assert out.returncode == 2 and out.stderr.strip() == line
    if how == "file":  # validate says so too
        checked = cli("validate", p)
        assert checked.returncode == 2 and checked.stderr.strip() == line


@pytest.mark.parametrize("value, message", [("0", "expected at least 1, got 0"), ("two", "expected an integer")])
def test_a_bad_workers_value_is_one_line(tmp_path, value, message):
    p = write(tmp_path, PIPELINE.format(source="{type: generator}") + f"workers: {value}\n")
    out = cli("validate", p)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert f"{p}:6: workers: {message}" in out.stderr
    bad = cli("run", p, "--workers", "0")
    assert bad.returncode == 2 and "--workers: expected a whole number of processes, at least 1" in bad.stderr


def test_max_events_cannot_be_split(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"k": 1}\n')
    p = write(tmp_path, PIPELINE.format(source=json.dumps({"type": "file", "path": str(tmp_path / "*.jsonl")})))
    out = cli("run", p, "--workers", "2", "--max-events", "5")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["streamkit: error: --max-events counts the records of one process; "
                                               "it cannot be combined with --workers 2"]


def test_split_files_are_each_read_by_one_worker(tmp_path):
    sizes, total = {}, 0
    for i in range(12):
        lines = [json.dumps({"k": j % 7}) for j in range(100 + 37 * i)]
        path = tmp_path / f"f{i:02}.jsonl"
        path.write_text("\n".join(lines) + "\n")
        sizes[str(path)] = path.stat().st_size
        total += len(lines)
    p = write(tmp_path, PIPELINE.format(source=json.dumps({"type": "file", "path": str(tmp_path / "*.jsonl")})))
    out = cli("run", p, "--workers", "3", "--json", "-q")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["records_read"], result["workers"], result["restarts"]) == (total, 3, 0)
    assert result["stopped_by"] == "source_finished"
    # the summary adds up what every worker read: were a file read by two, the count would be higher
    assert out.stdout.count("\n") == 1


def _workers_of(sup: psutil.Process) -> list[psutil.Process]:
    out = []
    for c in sup.children():
        try:
            if "--worker" in c.cmdline():
                out.append(c)
        except psutil.Error:  # one that just died
            pass
    return out


def test_a_killed_worker_is_started_again_and_sigterm_stops_all(tmp_path):
    (tmp_path / "a.log").write_text('{"k": 1}\n' * 50)
    (tmp_path / "b.log").write_text('{"k": 2}\n' * 50)
    p = write(tmp_path, PIPELINE.format(source=json.dumps({"type": "file", "path": str(tmp_path / "*.log"),
                                                           "follow": True})) + "workers: 2\n")
    err = open(tmp_path / "err.txt", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "streamkit", "run", str(p), "-q"], stdout=subprocess.PIPE,
                            stderr=err, text=True)
    try:
        sup = psutil.Process(proc.pid)
        first = wait_for("two workers", lambda: len(_workers_of(sup)) == 2 and _workers_of(sup), 60)
        victim = next(w for w in first if "1/2" in w.cmdline())
        os.kill(victim.pid, signal.SIGKILL)
        wait_for("the worker to be started again", lambda: any(
            w.pid != victim.pid and "1/2" in w.cmdline() for w in _workers_of(sup) if w.pid != victim.pid), 60)
        time.sleep(1.5)  # the new one is running
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    err.seek(0)
    log = err.read()
    assert proc.returncode == 0, log
    assert "streamkit: worker 1 was killed by signal 9; starting it again" in log
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(", 2 workers, 1 restart"), out
    assert not [w for w in first if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


def test_workers_stop_when_their_supervisor_is_killed(tmp_path):
    (tmp_path / "a.log").write_text('{"k": 1}\n')
    p = write(tmp_path, PIPELINE.format(source=json.dumps({"type": "file", "path": str(tmp_path / "*.log"),
                                                           "follow": True})))
    proc = subprocess.Popen([sys.executable, "-m", "streamkit", "run", str(p), "-q", "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sup = psutil.Process(proc.pid)
    workers = wait_for("two workers", lambda: len(_workers_of(sup)) == 2 and _workers_of(sup), 60)
    proc.kill()
    proc.wait()
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, "workers outlived their supervisor"


def test_a_worker_stopped_by_bad_input_stops_all_with_its_one_line(tmp_path):
    import gzip
    for i in range(8):
        (tmp_path / f"f{i}.jsonl").write_text('{"k": 1}\n' * 100)
    data = gzip.compress(b'{"k": 1}\n' * 20000)
    (tmp_path / "broken.jsonl.gz").write_bytes(data[:len(data) // 2])
    p = write(tmp_path, PIPELINE.format(source=json.dumps({"type": "file", "path": str(tmp_path / "*.jsonl*")})))
    out = cli("run", p, "--workers", "2", "-q")
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("streamkit: error:")]
    assert len(errors) == 1 and f"cannot read '{tmp_path / 'broken.jsonl.gz'}'" in errors[0], out.stderr
    assert out.stdout == ""  # no summary: the run failed


def test_a_worker_that_keeps_dying_stops_all(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"k": 1}\n' * 10)
    p = write(tmp_path, "name: w\nsource: " + json.dumps({"type": "file", "path": str(tmp_path / "*.jsonl")}) +
              "\naggregations: [{name: n, type: count, group_by: [k]}]\n"
              "sinks: [{type: mongodb, uri: 'mongodb://127.0.0.1:9', connect_timeout: 0.2s, retry_for: 0.2s}]\n")
    out = cli("run", p, "--workers", "2", "-q")
    assert out.returncode == 1, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("streamkit: error: worker")]
    assert len(errors) == 1 and "its 5th death within 60s; stopped the other workers" in errors[0], out.stderr
    which = errors[0].split()[3]
    waits = [line.split(" in ")[-1] for line in out.stderr.splitlines()
             if line.startswith(f"streamkit: worker {which} ") and "starting it again in" in line]
    assert waits == ["0.5s", "1s", "2s", "4s"], out.stderr


def test_the_dashboard_of_workers_is_served_once(tmp_path):
    for i in range(6):
        (tmp_path / f"f{i}.jsonl").write_text('{"k": 1}\n' * 50)
    p = write(tmp_path, "name: w\nsource: " + json.dumps({"type": "file", "path": str(tmp_path / "*.jsonl")}) +
              "\naggregations: [{name: n, type: count, group_by: [k]}]\n"
              "sinks: [{type: mongodb, uri: 'mongomock://w'}]\ndashboard: {port: 38301}\n")
    out = cli("run", p, "--workers", "2", "-q")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("dashboard: http://127.0.0.1:38301/") == 1, out.stdout
