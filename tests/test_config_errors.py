"""Bad input: one clear line naming file, line and key; exit code 2; no traceback."""
import subprocess
import sys
import textwrap

import pytest

from streamkit.cli import main

GOOD = """\
source:
  type: generator
  rate: 0
aggregations:
  - name: per_user
    type: count
    group_by: [user_id]
sinks:
  - type: discard
"""


def run_cli(tmp_path, text, capsys, *extra):
    f = tmp_path / "p.yaml"
    f.write_text(textwrap.dedent(text))
    code = main(["validate", str(f), *extra])
    err = capsys.readouterr().err.strip()
    return code, err.replace(str(f), "p.yaml")


CASES = [
    ("yaml syntax", GOOD.replace("rate: 0", "rate: [0"), "p.yaml:4: YAML syntax error"),
    ("unknown top-level key", GOOD + "sinkz: []\n", "p.yaml:10: sinkz: unknown top-level key (did you mean 'sinks'?)"),
    ("unknown option", GOOD.replace("rate: 0", "rat: 0"), "p.yaml:3: source.rat: unknown option (did you mean 'rate'?)"),
    ("unknown aggregation option", GOOD.replace("group_by", "grup_by"),
     "p.yaml:7: aggregations[0].grup_by: unknown option (did you mean 'group_by'?)"),
    ("unknown source type", GOOD.replace("type: generator", "type: kafak"),
     "p.yaml:2: source.type: unknown source type 'kafak'"),
    ("unknown aggregator type", GOOD.replace("type: count", "type: median"),
     "p.yaml:6: aggregations[0].type: unknown aggregator type 'median' (did you mean 'min'?); known aggregator types: avg, count, distinct, max, min, percentiles, sum, top_k"),
    ("wrong type", GOOD.replace("rate: 0", "rate: fast"), "p.yaml:3: source.rate: expected a number, got 'fast'"),
    ("wrong type in sink", GOOD.replace("type: discard", "type: mongodb\n    uri: 5"),
     "p.yaml:10: sinks[0].uri: expected a string, got 5"),
    ("missing required", GOOD.replace("type: discard", "type: jsonl"),
     "p.yaml:9: sinks[0].path: missing required option"),
    ("missing field", GOOD.replace("type: count", "type: avg"), "p.yaml:5: aggregations[0].field: missing required option"),
    ("unset variable", GOOD.replace("rate: 0", "rate: ${STREAMKIT_TEST_UNSET_VAR}"),
     "p.yaml:3: source.rate: environment variable STREAMKIT_TEST_UNSET_VAR is not set and has no default"),
    ("plugin module", GOOD + "plugins: [no_such_module_xyz]\n",
     "p.yaml:10: plugins[0]: cannot import plugin module 'no_such_module_xyz'"),
    ("bad window", GOOD.replace("group_by: [user_id]", "group_by: [user_id]\n    window: 1 minute"),
     "p.yaml:8: aggregations[0].window: expected a duration such as 10s, 1m or 500ms"),
    ("duplicate aggregation", GOOD.replace("sinks:", "  - {name: per_user, type: count}\nsinks:"),
     "p.yaml:8: aggregations[1].name: duplicate aggregation name 'per_user'"),
    ("no sinks", GOOD.split("sinks:")[0], "p.yaml:1: sinks: missing required key (known sink types: console, discard, jsonl"),
    ("bad --set", GOOD, "--set source.rate: expected a number, got 'slow'"),
]


@pytest.mark.parametrize("name,text,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, name, text, expected):
    extra = ["--set", "source.rate=slow"] if name == "bad --set" else []
    code, err = run_cli(tmp_path, text, capsys, *extra)
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("streamkit: error: " + expected), err


def test_unknown_type_lists_known_types(tmp_path, capsys):
    _, err = run_cli(tmp_path, GOOD.replace("type: discard", "type: nul"), capsys)
    assert "known sink types: console, discard, jsonl, " in err and "mongodb" in err


def test_good_file_validates(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text(GOOD)
    assert main(["validate", str(f)]) == 0
    assert "ok" in capsys.readouterr().out


def test_default_with_env(tmp_path, monkeypatch):
    from streamkit import Pipeline
    f = tmp_path / "p.yaml"
    f.write_text(GOOD.replace("rate: 0", "rate: ${STREAMKIT_T_RATE:-7}\n  seed: ${STREAMKIT_T_SEED}"))
    monkeypatch.setenv("STREAMKIT_T_SEED", "9")
    p = Pipeline.from_yaml(f)
    assert p.spec.source.options["rate"] == 7.0 and p.spec.source.options["seed"] == 9


def test_subprocess_has_no_traceback(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(GOOD.replace("type: generator", "type: nope"))
    proc = subprocess.run([sys.executable, "-m", "streamkit", "run", str(f)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith(f"streamkit: error: {f}:2: source.type: unknown source type 'nope'")
    assert len(proc.stderr.strip().splitlines()) == 1
