import os
import sys
import types

import pytest

from streamkit import Batch, Sink, Source, hookimpl
from streamkit.plugins import get_plugin_manager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))


@pytest.fixture
def root():
    return ROOT


class ListSource(Source):
    """Test source: yields the given records (raw bytes or dicts) in batches, per partition."""

    from streamkit import Option
    options = {"partitions": Option(dict, help="partition -> list of records"),
               "batch": Option(int, 100), "decoded": Option(bool, False)}

    def open(self, hooks):
        self.parts = {p: list(recs) for p, recs in self.config["partitions"].items()}
        resume = hooks.assigned(sorted(self.parts)) or {}
        self.pos = {p: resume.get(p, 0) for p in self.parts}
        self.committed = {}

    def poll(self, timeout):
        out = []
        for p, recs in self.parts.items():
            i = self.pos[p]
            if i < len(recs):
                n = min(self.config["batch"], len(recs) - i)
                out.append(Batch(p, recs[i:i + n], i, i + n, decoded=self.config["decoded"]))
                self.pos[p] = i + n
        return out or None

    def commit(self, positions):
        self.committed.update(positions)


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
