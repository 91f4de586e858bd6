"""Start-up stays light: ``streamkit --version``, ``validate`` and ``plugins`` import no client
library (pymongo, bson, kafka-python, confluent-kafka, mongomock) and no Bottle. A plugin loads its
heavy dependencies when one of its types is used, so every plugin's module and option schemas must
be importable without them. Each command runs in a process of its own, which reports the top-level
modules it imported; ``run`` is the control that shows the check sees an import when one happens."""
import importlib
import json
import pathlib
import subprocess
import sys

import pytest

import streamkit

ROOT = pathlib.Path(__file__).resolve().parent.parent
HEAVY = {"pymongo", "bson", "kafka", "confluent_kafka", "bottle", "mongomock", "mongomock_ng"}
REPORT = """
import json, sys
from streamkit.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted({m.split('.')[0] for m in sys.modules})}), file=sys.stderr)
"""


def imported(*argv: str) -> tuple[int, set[str]]:
    done = subprocess.run([sys.executable, "-c", REPORT, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


@pytest.mark.parametrize("argv", [
    ["--version"],
    ["validate", "pipeline.yaml"],
    ["validate", "examples/kafka-to-mongo.yaml"],
    ["plugins"],
    ["plugins", "--json"],
])
def test_command_imports_no_client_library(argv):
    code, modules = imported(*argv)
    assert code in (0, None)
    assert modules & HEAVY == set()


def test_version_loads_no_plugin():
    code, modules = imported("--version")
    assert code in (0, None)
    assert not {m for m in modules if m.startswith("streamkit_")}
    assert "pluggy" not in modules and "yaml" not in modules


def test_the_check_sees_a_client_library_a_run_imports():
    code, modules = imported("run", "pipeline.yaml", "--max-events", "10", "--quiet",
                             "--set", "source.rate=0", "--set", "dashboard.serve=false")
    assert code == 0
    assert {"pymongo", "bson", "mongomock_ng"} <= modules


def test_every_public_name_resolves_to_its_module():
    names = set(streamkit.__all__) - {"__version__"}
    assert names == set(streamkit._PUBLIC) | set(streamkit._MODULES)
    for name in streamkit._PUBLIC:
        module = importlib.import_module(f"streamkit.{streamkit._PUBLIC[name]}")
        assert getattr(streamkit, name) is getattr(module, name)
    for name in streamkit._MODULES:  # a public module: streamkit.estimates
        assert getattr(streamkit, name) is importlib.import_module(f"streamkit.{name}")
    with pytest.raises(AttributeError):
        streamkit.no_such_name  # noqa: B018


def test_version_is_the_installed_distributions():
    from importlib.metadata import version
    assert streamkit.__version__ == version("streamkit")
    done = subprocess.run([sys.executable, "-m", "streamkit", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.strip() == f"streamkit {streamkit.__version__}"


@pytest.mark.parametrize("argv", [["--help"], [], ["-v", "--help"]])
def test_help_still_lists_the_commands_plugins_add(argv):
    done = subprocess.run([sys.executable, "-m", "streamkit", *argv], capture_output=True, text=True, timeout=60)
    assert "dashboard" in done.stdout and "validate" in done.stdout


def test_a_plugins_command_still_parses():
    done = subprocess.run([sys.executable, "-m", "streamkit", "dashboard", "--port", "x"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "--port" in done.stderr and "Traceback" not in done.stderr
