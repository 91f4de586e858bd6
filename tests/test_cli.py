"""`streamkit run` as a user runs it: exact --max-events, --set, the summary line, signals."""
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from streamkit.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("streamkit ")


def test_run_max_events_exact_and_summary(root, capsys):
    n, size = 4321, 1000  # the generator's batches are 1,000 records: a flush after each, the rest at the end
    code = main(["run", f"{root}/pipeline.yaml", "--max-events", str(n), "--set", "source.rate=0", "--set", "dashboard.port=0",
                 "--set", "sinks.1.every=1h", "--set", "flush.interval=1h", "--set", f"flush.max_records={size}",
                 "--set", f"sinks.0.uri=mongomock://cli-{uuid.uuid4().hex}", "--json", "-q"])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["records_read"] == n
    assert summary["records_aggregated"] == n
    assert summary["dead_letters"] == 0
    assert summary["flushes"] == math.ceil(n / size)
    assert summary["stopped_by"] == "max_events"


def test_summary_line_text(root, capsys):
    main(["run", f"{root}/pipeline.yaml", "--max-events", "1000", "--set", "source.rate=0", "--set", "dashboard.port=0", "-q"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("1,000 records read, 1,000 aggregated, 0 dead letters, ")
    assert "records/s" in last


def test_duration_stops_the_run(root, capsys):
    assert main(["run", f"{root}/pipeline.yaml", "--duration", "1.5", "--set", "source.rate=500", "--set", "dashboard.port=0", "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["stopped_by"] == "duration"
    assert 0 < summary["records_read"] <= 1000  # at most 1.5 s at 500/s; fewer on a loaded machine
    assert summary["elapsed"] >= 1.5  # it ran for the whole duration, not less


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_after_a_final_flush(root, tmp_path, sig):
    out = tmp_path / "deltas.jsonl"
    f = tmp_path / "p.yaml"
    f.write_text(f"""
source: {{type: generator, rate: 2000}}
aggregations: [{{name: total, type: count}}]
sinks: [{{type: jsonl, path: "{out}"}}]
flush: {{interval: 1h, max_records: 700}}
""")
    proc = subprocess.Popen([sys.executable, "-m", "streamkit", "run", str(f), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def written() -> int:
        return sum(json.loads(line)["count"] for line in out.read_text().splitlines()) if out.exists() else 0

    deadline = time.monotonic() + 60
    while written() < 1000:  # two flushes by size: the run is well under way
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"{written()} records written after 60s"
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["stopped_by"] == "signal"
    # one line per flush; all but the last by size; the last one wrote the rest of what was read
    counts = [json.loads(line)["count"] for line in out.read_text().splitlines()]
    assert summary["flushes"] == len(counts) and min(counts[:-1]) >= 700
    assert sum(counts) == summary["records_read"] >= 1000


def test_progress_line_on_a_terminal(root):
    """With a terminal on stderr the run shows records, records/s and flushes."""
    import pty
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "streamkit", "run", f"{root}/pipeline.yaml", "--duration", "2",
                             "--set", "sinks.1.every=1h", "--set", "dashboard.port=0"], stdout=subprocess.PIPE, stderr=slave, text=True)
    proc.communicate(timeout=30)
    os.close(slave)
    seen = b""
    try:
        while True:
            chunk = os.read(master, 4096)
            if not chunk:
                break
            seen += chunk
    except OSError:
        pass
    os.close(master)
    text = seen.decode()
    assert "rec/s" in text and "flushes" in text and "dead letters" in text
