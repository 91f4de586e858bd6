"""The real `streamkit` command on broken plugin modules, binary files, unwritable paths and
closed pipes: one line, exit code 2 for bad input and 1 for a runtime failure, no traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from test_config_limits import one_line_error, streamkit

PIPELINE = """\
source: {type: generator, rate: 0, malformed_ratio: 0.5}
aggregations: [{name: c, type: count, group_by: [user_id]}]
sinks: [{type: jsonl, path: "SINK"}]
dead_letter: {type: jsonl, path: "LETTERS"}
plugins: [MODULE]
delivery: at_least_once
"""


def pipeline(tmp_path, module: str = "[]", sink: str | None = None, letters: str | None = None) -> str:
    text = PIPELINE.replace("SINK", sink or str(tmp_path / "out.jsonl"))
    text = text.replace("LETTERS", letters or str(tmp_path / "letters.jsonl"))
    text = text.replace("plugins: [MODULE]", f"plugins: [{module}]" if module != "[]" else "plugins: []")
    f = tmp_path / "p.yaml"
    f.write_text(text)
    return str(f)


# -- plugin modules -----------------------------------------------------------------------
MODULES = {
    "raises_on_import": ('import os\nraise RuntimeError("no licence key")\n',
                         "cannot import plugin module 'raises_on_import': RuntimeError: no licence key "
                         "(at {dir}/raises_on_import.py:2)"),
    "bad_syntax": ("from streamkit import hookimpl\n\ndef register_sinks(register:\n    pass\n",
                   "cannot import plugin module 'bad_syntax': {dir}/bad_syntax.py:3: syntax error: "
                   "'(' was never closed"),
    "misspelled_hook": ("from streamkit import hookimpl\n\n\n@hookimpl\ndef register_sink(register):\n    pass\n",
                        "plugin module 'misspelled_hook' ({dir}/misspelled_hook.py:4): unknown hook "
                        "'register_sink' (did you mean 'register_sinks'?)"),
    "missing_dependency": ("import streamkit\nimport no_such_dependency_xyz\n",
                           "cannot import plugin module 'missing_dependency': No module named "
                           "'no_such_dependency_xyz' (at {dir}/missing_dependency.py:2)"),
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_broken_plugin_module_is_one_line_exit_2(tmp_path, module):
    source, message = MODULES[module]
    (tmp_path / f"{module}.py").write_text(source)
    f = pipeline(tmp_path, module)
    line = one_line_error(streamkit("validate", f))
    assert line == f"streamkit: error: {f}:5: plugins[0]: " + message.format(dir=tmp_path)


def test_misspelled_hook_leaves_the_plugin_manager_usable(tmp_path, monkeypatch):
    from streamkit import ConfigError, Pipeline
    from streamkit.plugins import get_plugin_manager

    (tmp_path / "misspelled_hook_2.py").write_text(MODULES["misspelled_hook"][0])
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = {"source": {"type": "generator", "rate": 0}, "aggregations": [{"name": "c", "type": "count"}],
           "sinks": [{"type": "discard"}]}
    with pytest.raises(ConfigError, match="unknown hook 'register_sink'"):
        Pipeline.from_dict({**cfg, "plugins": ["misspelled_hook_2"]})
    assert get_plugin_manager().get_plugin("misspelled_hook_2") is None
    get_plugin_manager().check_pending()  # nothing left behind to fail the next pipeline
    assert Pipeline.from_dict(cfg).run(max_events=10).records_read == 10


def test_plugins_command_with_a_broken_module(tmp_path):
    (tmp_path / "misspelled_hook_3.py").write_text(MODULES["misspelled_hook"][0])
    proc = subprocess.run([sys.executable, "-m", "streamkit", "plugins", "--module", "misspelled_hook_3"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])})
    line = one_line_error(proc)
    assert line == (f"streamkit: error: plugin module 'misspelled_hook_3' ({tmp_path}/misspelled_hook_3.py:4): "
                    f"unknown hook 'register_sink' (did you mean 'register_sinks'?)")


def test_verbose_shows_the_traceback(tmp_path):
    (tmp_path / "raises_on_import.py").write_text(MODULES["raises_on_import"][0])
    proc = streamkit("-v", "validate", pipeline(tmp_path, "raises_on_import"))
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("streamkit: error: ")


# -- the pipeline file itself -------------------------------------------------------------
def test_binary_pipeline_file_is_one_line(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_bytes(b"source: {type: generator}\n\x89PNG\r\n\x1a\n\x00\x00\xff")
    line = one_line_error(streamkit("validate", str(f)))
    assert line == f"streamkit: error: {f}:2: not a YAML text file: byte 0x89 at offset 26 is not UTF-8"


def test_control_characters_in_the_pipeline_file_are_one_line(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_bytes(b"source:\n  type: gen\x00erator\n")
    line = one_line_error(streamkit("validate", str(f)))
    assert line == f"streamkit: error: {f}:2: not a YAML text file: character #x0000 at position 19 is not allowed"


# -- jsonl paths --------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["sink", "letters"])
@pytest.mark.parametrize("path,reason", [
    ("/proc/streamkit-test/x", "No such file or directory"),
    ("{tmp}", "Is a directory"),
    ("{tmp}/no/such/dir/out.jsonl", "No such file or directory"),
])
def test_unwritable_jsonl_path_is_one_line_exit_2(tmp_path, where, path, reason):
    path = path.format(tmp=tmp_path)
    f = pipeline(tmp_path, **({"sink": path} if where == "sink" else {"letters": path}))
    line = one_line_error(streamkit("run", f, "--max-events", "100", "-q"), code=2)
    key = "sinks[0].path" if where == "sink" else "dead_letter.path"
    assert line == f"streamkit: error: {f}: {key}: cannot append to {path!r}: {reason}"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("where", ["sink", "letters"])
def test_full_disk_is_a_runtime_failure_exit_1(tmp_path, where):
    f = pipeline(tmp_path, **({"sink": "/dev/full"} if where == "sink" else {"letters": "/dev/full"}))
    line = one_line_error(streamkit("run", f, "--max-events", "3000", "-q"), code=1)
    key = "sinks[0].path" if where == "sink" else "dead_letter.path"
    assert line == f"streamkit: error: {key}: cannot write to '/dev/full': No space left on device"


# -- closed pipes -------------------------------------------------------------------------
def test_plugins_into_a_closed_pipe_exits_quietly():
    """`streamkit plugins | head -1`: the reader is gone before the first write."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "streamkit", "plugins"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert proc.stderr == ""
    assert proc.returncode == 141


def test_plugins_into_head():
    proc = subprocess.run(f"{sys.executable} -m streamkit plugins | head -1", shell=True, capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout == "source types:\n"
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
