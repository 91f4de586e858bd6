"""Config that would validate and then crash or eat the machine is refused at validation:
one line naming file, line and key, exit code 2, no traceback."""
from __future__ import annotations

import contextlib
import io
import math
import os
import subprocess
import sys
import tempfile

import pytest
from hypothesis import example, given, settings, strategies as st

from streamkit import ConfigError, Pipeline
from streamkit import yamlfile
from streamkit.cli import main
from streamkit.options import parse_duration
from streamkit.windows import MAX_WINDOWS_PER_RECORD, parse_window

TEN_YEARS = 3650 * 86400
UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "": 1}

PIPELINE = """\
source:
  type: generator
  rate: 0
  time_step: {time_step}
aggregations:
  - name: per_user
    type: count
    group_by: [user_id]
    window: {window}
sinks:
  - type: console
    every: {every}
flush:
  interval: {interval}
"""
GOOD = {"time_step": "1ms", "window": "1m", "every": "5s", "interval": "1s"}
LINES = {"time_step": (4, "source.time_step"), "window": (9, "aggregations[0].window"),
         "every": (12, "sinks[0].every"), "interval": (14, "flush.interval")}


def streamkit(*args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    """The real command, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "streamkit", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def one_line_error(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def validate_in_process(text: str) -> tuple[int, str]:
    with tempfile.TemporaryDirectory() as d:
        f = os.path.join(d, "p.yaml")
        with open(f, "w") as fh:
            fh.write(text)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["validate", f])
        return code, err.getvalue().replace(f, "p.yaml")


def yaml_scalar(value) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, str):
        return '"' + value + '"'
    return str(value)


def seconds_of(value) -> float | None:
    """The truth for a duration, computed apart from parse_duration: None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if not (isinstance(value, int) and abs(value) > 10 ** 300) else math.copysign(math.inf, value)
    number, unit = value, ""
    for u in ("ms", "s", "m", "h", "d"):
        if value.endswith(u):
            number, unit = value[: -len(u)], u
            break
    if not number or not all(c.isdigit() or c == "." for c in number) or number.count(".") > 1 \
            or number.startswith(".") or number.endswith("."):
        return None
    return float(number) * UNITS[unit]


# -- durations ----------------------------------------------------------------------------
bad_numbers = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
    st.floats(min_value=TEN_YEARS * 1.0001, allow_nan=False, allow_infinity=False),
    st.integers(max_value=-1),
    st.integers(min_value=TEN_YEARS + 1),
)
bad_strings = st.builds(lambda digits, unit: digits + unit,
                        st.integers(min_value=TEN_YEARS + 1).map(str), st.sampled_from(["ms", "s", "m", "h", "d", ""])
                        ).filter(lambda s: seconds_of(s) > TEN_YEARS)


@settings(max_examples=60, deadline=None)
@given(value=st.one_of(bad_numbers, bad_strings), key=st.sampled_from(sorted(LINES)))
@example(value=math.inf, key="window")
@example(value=math.nan, key="window")
@example(value="99999999999999999999999d", key="window")
@example(value=10 ** 400, key="interval")
@example(value=-5, key="every")
def test_bad_durations_are_one_line_exit_2(value, key):
    text = PIPELINE.format(**{**GOOD, key: yaml_scalar(value)})
    code, err = validate_in_process(text)
    line, path = LINES[key]
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"streamkit: error: p.yaml:{line}: {path}: expected a duration"), err


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.floats(allow_nan=True), st.integers(), st.text(alphabet="0123456789.smhd-e", max_size=12),
                 st.builds(lambda n, u: f"{n}{u}", st.decimals(min_value=0, max_value=10 ** 12, places=3),
                           st.sampled_from(sorted(UNITS)))))
@example("3650d")
@example("3650.1d")
@example("315360000")
@example("0.5ms")
def test_parse_duration_accepts_exactly_the_finite_durations_up_to_ten_years(value):
    truth = seconds_of(value)
    if truth is None or math.isnan(truth) or not 0 <= truth <= TEN_YEARS:
        with pytest.raises(ValueError):
            parse_duration(value)
    else:
        assert parse_duration(value) == pytest.approx(truth, rel=1e-12)


def test_infinite_window_in_the_real_command(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(PIPELINE.format(**{**GOOD, "window": ".inf"}))
    line = one_line_error(streamkit("validate", str(f)))
    assert line == f"streamkit: error: {f}:9: aggregations[0].window: expected a duration of at most 3650d (ten years), got inf"


# -- windows per record -------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(size=st.integers(min_value=1, max_value=10 ** 6), hop=st.integers(min_value=1, max_value=10 ** 6))
@example(size=3600, hop=36)
@example(size=3600, hop=35)
@example(size=86400, hop=1)
def test_a_record_falls_into_at_most_100_windows(size, hop):
    windows = -(-size // hop)  # ceil, in integers
    value = {"size": f"{size}s", "hop": f"{hop}s"}
    if hop > size:
        with pytest.raises(ValueError, match="hop must not exceed"):
            parse_window(value)
    elif windows > MAX_WINDOWS_PER_RECORD:
        with pytest.raises(ValueError, match=f"every record would fall into {windows:,} windows; at most 100"):
            parse_window(value)
    else:
        w = parse_window(value)
        t = float(hop * 1_000_003)  # the start of a hop: in the most windows
        assert len(w.all_starts(t) if hop < size else w.starts([t])) == windows


def test_window_ratio_is_one_line_naming_the_ratio(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(PIPELINE.format(**{**GOOD, "window": "{size: 1d, hop: 1ms}"}))
    line = one_line_error(streamkit("validate", str(f)))
    assert line == (f"streamkit: error: {f}:9: aggregations[0].window: size/hop is 8.64e+07: every record would "
                    f"fall into 86,400,000 windows; at most 100 are allowed (make hop at least 864s)")


# -- generator bounds ---------------------------------------------------------------------
GENERATOR = """\
source:
  type: generator
  {option}: {value}
sinks:
  - type: console
"""


@pytest.mark.parametrize("option,value,message", [
    ("users", "99999999999999999999999999", "expected at most 1000000, got 99999999999999999999999999"),
    ("items", "1000001", "expected at most 1000000, got 1000001"),
    ("batch_size", "10000000000", "expected at most 1000000, got 10000000000"),
    ("skew", "11.0", "expected at most 10.0, got 11.0"),
    ("skew", ".nan", "expected a finite number, got nan"),
    ("rate", ".inf", "expected a finite number, got inf"),
    ("duration_ms_mean", "1.0e+300", "expected at most 1000000000000.0, got 1e+300"),
    ("interaction_types", "{view: 1.0e+300}", "expected type names with positive weights up to 1e+12, got 'view': 1e+300"),
])
def test_generator_bounds_are_one_line(tmp_path, option, value, message):
    f = tmp_path / "p.yaml"
    f.write_text(GENERATOR.format(option=option, value=value) + "aggregations: [{name: c, type: count}]\n")
    line = one_line_error(streamkit("validate", str(f)))
    assert line == f"streamkit: error: {f}:3: source.{option}: {message}"


# -- YAML alias bombs ---------------------------------------------------------------------
def billion_laughs(levels: int = 9) -> str:
    text = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    names = "abcdefghijklmnopqrstuvwxyz"
    for i in range(1, levels):
        text += f"{names[i]}: &{names[i]} [" + ", ".join([f"*{names[i - 1]}"] * 9) + "]\n"
    return text


def test_billion_laughs_is_refused_after_a_bounded_number_of_values(monkeypatch):
    built = 0
    real = yamlfile._build

    def counting(*args, **kwargs):
        nonlocal built
        built += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(yamlfile, "_build", counting)
    with pytest.raises(ConfigError) as exc:
        yamlfile.load(billion_laughs(), "p.yaml")
    assert str(exc.value).startswith("p.yaml:")
    assert "YAML aliases expand to more than 10,000 values" in str(exc.value)
    # 9 ** 9 = 387,420,489 values if expanded; the refusal comes after the limit and the few written out
    assert yamlfile.MAX_ALIAS_NODES < built <= yamlfile.MAX_ALIAS_NODES + 200


def test_aliases_below_the_limit_still_work():
    data = yamlfile.load("base: &s {type: discard}\nsinks: [*s, *s]\nx: &n 5\ny: *n\n").data
    assert data == {"base": {"type": "discard"}, "sinks": [{"type": "discard"}] * 2, "x": 5, "y": 5}


def test_billion_laughs_in_the_real_command(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(billion_laughs())
    line = one_line_error(streamkit("validate", str(f)))
    assert line == (f"streamkit: error: {f}:1: e[0][2][0][6][7]: YAML aliases expand to more than 10,000 values; "
                    f"write the values out or use fewer aliases")


@pytest.mark.parametrize("text,message", [
    ("a: &a [*a]\n", "p.yaml:1: a[0]: a YAML alias refers to a value that contains it (a recursive alias)"),
    ("a: &a {b: {c: *a}}\n", "p.yaml:1: a.b.c: a YAML alias refers to a value that contains it (a recursive alias)"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "p.yaml: YAML nested too deeply"),
    ("a: 2026-02-30\n", "p.yaml:1: a: cannot read '2026-02-30': day is out of range for month"),
    ("a: " + "9" * 5000 + "\n", "p.yaml:1: a: cannot read '9999999999999999999999999999999999999...': "
                                 "too many digits for an integer"),
])
def test_yaml_that_python_cannot_build_is_one_line(text, message):
    with pytest.raises(ConfigError) as exc:
        yamlfile.load(text, "p.yaml")
    assert str(exc.value) == message


# -- run limits ---------------------------------------------------------------------------
@pytest.mark.parametrize("args,message", [
    (["--max-events", "-1"], "argument --max-events: expected a whole number of records, at least 0, got '-1'"),
    (["--max-events", "2.5"], "argument --max-events: expected a whole number of records, at least 0, got '2.5'"),
    (["--duration", "-5"], "argument --duration: expected a number of seconds from 0 to 315360000 (3650d), got '-5'"),
    (["--duration", "nan"], "argument --duration: expected a number of seconds from 0 to 315360000 (3650d), got 'nan'"),
    (["--duration", "inf"], "argument --duration: expected a number of seconds from 0 to 315360000 (3650d), got 'inf'"),
])
def test_run_limits_are_checked_by_the_command(root, args, message):
    line = one_line_error(streamkit("run", f"{root}/pipeline.yaml", *args))
    assert line == f"streamkit: error: {message} (see streamkit run --help)"


def test_duration_takes_units_on_the_command_line(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(GENERATOR.format(option="rate", value=0) + "aggregations: [{name: c, type: count}]\n")
    proc = streamkit("run", str(f), "--duration", "0.2s", "--max-events", "0", "--json", "-q")
    assert proc.returncode == 0, proc.stderr
    assert '"records_read": 0' in proc.stdout


@pytest.mark.parametrize("kwargs,message", [
    ({"max_events": -1}, "max_events: expected a whole number of records, at least 0, got -1"),
    ({"max_events": 1.5}, "max_events: expected a whole number of records, at least 0, got 1.5"),
    ({"max_events": True}, "max_events: expected a whole number of records, at least 0, got True"),
    ({"duration": -5}, "duration: expected a number of seconds from 0 to 315360000 (3650d), got -5"),
    ({"duration": math.nan}, "duration: expected a number of seconds from 0 to 315360000 (3650d), got nan"),
    ({"duration": math.inf}, "duration: expected a number of seconds from 0 to 315360000 (3650d), got inf"),
])
def test_run_limits_are_checked_by_the_library(kwargs, message):
    p = Pipeline.from_dict({"source": {"type": "generator", "rate": 0},
                            "aggregations": [{"name": "c", "type": "count"}], "sinks": [{"type": "discard"}]})
    with pytest.raises(ValueError) as exc:
        p.run(**kwargs)
    assert str(exc.value) == message
    assert p.source is None  # refused before anything started

