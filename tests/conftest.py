"""Shared fixtures, among them the only ones through which a test reaches a server or a browser.

A test that needs a server or a browser asks for one of the fixtures in ``NEEDS`` (or one
built on them) and carries that fixture's marker; collection stops with an error when the
two disagree, so ``pytest -m "not integration and not browser"`` runs every test that
needs neither. Without the servers those fixtures skip, saying how to start them; with
``STREAMKIT_REQUIRE_SERVERS=1`` (``scripts/test`` sets it) every skip of a marked test is
a failure instead, so a run that could not reach a server cannot pass.
"""
import os
import shutil
import sys
import types

import pytest

from streamkit import Sink, hookimpl
from streamkit.plugins import get_plugin_manager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from listsource import ListSource  # noqa: E402 - tests/ is on the path from here

REQUIRE = "STREAMKIT_REQUIRE_SERVERS"
HOW = 'start the servers with: eval "$(scripts/services up)"'
# fixture -> the marker of every test that uses it
NEEDS = {"kafka_bootstrap": "integration", "mongo_uri": "integration", "secantus": "integration",
         "chromium_path": "browser",
         "prometheus_path": "integration", "promtool_path": "integration", "docker_compose_path": "integration"}
# (fixture, param) -> the marker of every test that takes that parameter of the fixture
PARAM_NEEDS = {("store", "server"): "integration", ("coll", "server"): "integration"}
MARKERS = ("integration", "browser")


def pytest_collection_modifyitems(config, items):
    wrong = []
    for item in items:
        needs = {NEEDS[f] for f in getattr(item, "fixturenames", ()) if f in NEEDS}
        params = getattr(getattr(item, "callspec", None), "params", {})
        needs |= {m for (f, v), m in PARAM_NEEDS.items() if params.get(f) == v}
        marked = {m for m in MARKERS if item.get_closest_marker(m)}
        if needs != marked:
            wrong.append(f"  {item.nodeid}: marked {sorted(marked) or 'with neither'}, "
                         f"but its fixtures need {sorted(needs) or 'neither'}")
    if wrong:
        raise pytest.UsageError("tests whose markers do not match the servers they use "
                                f"(fixtures {sorted(NEEDS)}):\n" + "\n".join(wrong))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if (report.skipped and os.environ.get(REQUIRE) == "1" and not hasattr(report, "wasxfail")
            and any(item.get_closest_marker(m) for m in MARKERS)):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"{REQUIRE}=1, so this may not skip: {reason}"
    return report


@pytest.fixture(scope="session", autouse=True)
def _fast_mongomock():
    """mongomock looks documents up by ``_id`` in every test (``streamkit_mongodb.speed_up_mongomock``:
    the tests opt in, a pipeline never does)."""
    from streamkit_mongodb import speed_up_mongomock
    speed_up_mongomock()


@pytest.fixture(autouse=True)
def _servers_only_where_marked(request, monkeypatch):
    """A test without the marker runs (and starts processes) without the servers' addresses, so it
    behaves alike with and without servers: the default pipeline falls back to mongomock://."""
    if not any(request.node.get_closest_marker(m) for m in MARKERS):
        monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
        monkeypatch.delenv("MONGO_URI", raising=False)


#: the client libraries behind the ``kafka`` types; confluent-kafka comes with the ``test`` extra
KAFKA_CLIENTS = ("kafka-python", "confluent-kafka")


@pytest.fixture(params=KAFKA_CLIENTS)
def kafka_client(request) -> str:
    """Each Kafka client library in turn (the ``client:`` option): a test that takes this fixture
    proves the two behave alike. Only the tests that prove parity take it, to keep CI short."""
    return request.param


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    value = os.environ.get("KAFKA_BOOTSTRAP")
    if not value:
        pytest.skip(f"KAFKA_BOOTSTRAP is not set; {HOW}")
    return value


@pytest.fixture(scope="session")
def mongo_uri() -> str:
    value = os.environ.get("MONGO_URI")
    if not value:
        pytest.skip(f"MONGO_URI is not set; {HOW}")
    return value


@pytest.fixture(scope="session")
def secantus() -> None:
    """SecantusDB, for tests that start a MongoDB-wire server of their own."""
    pytest.importorskip("secantus", reason="SecantusDB is not installed (pip install -e .[test])")


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("chromium is not on PATH; install it with: apt-get install chromium")
    return path


def _program(name: str, package: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not on PATH; install it with: apt-get install {package}")
    return path


@pytest.fixture(scope="session")
def prometheus_path() -> str:
    return _program("prometheus", "prometheus")


@pytest.fixture(scope="session")
def promtool_path() -> str:
    return _program("promtool", "prometheus")


@pytest.fixture(scope="session")
def docker_compose_path() -> str:
    """Debian's docker-compose, which parses and resolves a compose file without a Docker daemon."""
    return _program("docker-compose", "docker-compose")


@pytest.fixture
def root():
    return ROOT




CAPTURED: list = []


class CaptureSink(Sink):
    """Test sink: keeps every flush, and the merged partials per (aggregation, key, window)."""

    def open(self):
        self.state = {}
        CAPTURED.append(self)
        self.flushes = []

    def write(self, flush):
        self.flushes.append(flush)
        for d in flush.deltas():
            k = (d.aggregation, tuple(sorted(d.key.items())), d.window_start)
            prev = self.state.get(k)
            self.state[k] = d.partial if prev is None else d.aggregator.merge(prev, d.partial)

    def results(self, aggs):
        by_name = {a.name: a.aggregator for a in aggs}
        return {k: by_name[k[0]].result(v) for k, v in self.state.items()}


@pytest.fixture
def throwaway_plugin():
    """``throwaway_plugin(name, hook=fn, ...)`` registers the hook implementations as a plugin
    module for this test; every one registered is unregistered afterwards."""
    pm = get_plugin_manager()
    names = []

    def register(name: str, **hooks):
        mod = types.ModuleType(name)
        for hook, fn in hooks.items():
            setattr(mod, hook, hookimpl(fn))
        pm.register(mod, name=name)
        names.append(name)
        return mod
    yield register
    for name in names:
        pm.unregister(name=name)


@pytest.fixture
def test_plugins():
    """Register the test source and sink as a throw-away plugin; unregister afterwards."""
    mod = types.ModuleType("streamkit_test_plugin")

    @hookimpl
    def register_sources(register):
        register("list", ListSource)

    @hookimpl
    def register_sinks(register):
        register("capture", CaptureSink)

    mod.register_sources = register_sources
    mod.register_sinks = register_sinks
    pm = get_plugin_manager()
    pm.register(mod, name="streamkit_test_plugin")
    CAPTURED.clear()
    yield CAPTURED
    pm.unregister(name="streamkit_test_plugin")
    CAPTURED.clear()
