"""The plugin system: entry points, registration, duplicates, STREAMKIT_PLUGINS, the public API boundary."""
import ast
import json
import os
import pathlib
import subprocess
import sys
import types

import pytest

from streamkit import Aggregator, Pipeline, PluginError, hookimpl
from streamkit import hookspecs
from streamkit.cli import main
from streamkit.plugins import build_registry, get_plugin_manager

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILTINS = ["streamkit_generator", "streamkit_aggregators", "streamkit_outputs", "streamkit_mongodb"]


def test_builtins_come_from_entry_points():
    import importlib.metadata as md
    eps = {ep.value for ep in md.entry_points(group="streamkit")}
    assert set(BUILTINS) <= eps
    pm = get_plugin_manager()
    for name in BUILTINS:
        assert pm.is_registered(sys.modules[name])


def test_builtin_plugins_import_only_the_public_api():
    import streamkit
    public = set(streamkit.__all__)
    for pkg in (ROOT / "plugins").iterdir():
        for path in pkg.rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("streamkit"):
                    if node.module.split(".")[0] == "streamkit":
                        assert node.module == "streamkit", f"{path}: imports {node.module}"
                        for alias in node.names:
                            assert alias.name in public, f"{path}: {alias.name} is not public"
                elif isinstance(node, ast.Import):
                    for alias in node.names:
                        assert not alias.name.startswith("streamkit."), f"{path}: imports {alias.name}"


def test_core_names_no_plugin():
    for path in (ROOT / "streamkit").glob("*.py"):
        text = path.read_text()
        for word in ("kafka", "pymongo", "bottle", "mongomock", "streamkit_"):
            assert f"import {word}" not in text and f"from {word}" not in text, f"{path} imports {word}"


def test_duplicate_type_names_name_both_plugins():
    mod = types.ModuleType("dup_plugin")

    class Other(Aggregator):
        pass

    @hookimpl
    def register_aggregators(register):
        register("count", Other)

    mod.register_aggregators = register_aggregators
    pm = get_plugin_manager()
    pm.register(mod, name="dup_plugin")
    try:
        with pytest.raises(PluginError, match="'count' is registered twice: by plugin 'aggregators' and by plugin 'dup_plugin'"):
            build_registry(pm)
    finally:
        pm.unregister(name="dup_plugin")


def test_register_rejects_a_class_of_the_wrong_kind():
    pm = get_plugin_manager(entry_points=False)
    mod = types.ModuleType("wrong")
    mod.register_sinks = hookimpl(lambda register: register("x", dict))
    pm.register(mod, name="wrong")
    with pytest.raises(PluginError, match="must be a subclass of streamkit.Sink"):
        build_registry(pm)


def test_every_hook_is_documented_and_called():
    names = [n for n in dir(hookspecs) if not n.startswith("_") and callable(getattr(hookspecs, n))
             and hasattr(getattr(hookspecs, n), "streamkit_spec")]
    assert {"register_sources", "register_aggregators", "register_sinks", "register_dead_letters",
            "register_sections", "register_commands", "startup", "flushed", "shutdown"} <= set(names)
    readme = (ROOT / "README.md").read_text()
    for n in names:
        assert getattr(hookspecs, n).__doc__, n
        assert f"`{n}(" in readme, f"README's plugin guide lacks {n}"


def test_lifecycle_hooks_and_sections(tmp_path):
    calls = []
    mod = types.ModuleType("observer")
    from streamkit import Option
    mod.register_sections = hookimpl(lambda register: register("observer", {"label": Option(str, "x")}))
    mod.startup = hookimpl(lambda pipeline: calls.append(("startup", pipeline.sections["observer"])))
    mod.flushed = hookimpl(lambda pipeline, flush: calls.append(("flushed", flush.record_count)))
    mod.shutdown = hookimpl(lambda pipeline, result: calls.append(("shutdown", result.records_read)))
    pm = get_plugin_manager()
    pm.register(mod, name="observer")
    try:
        p = Pipeline.from_dict({"source": {"type": "generator", "rate": 0, "batch_size": 200},
                                "aggregations": [{"name": "c", "type": "count"}],
                                "sinks": [{"type": "discard"}], "observer": {"label": "hi"},
                                "flush": {"max_records": 600}})
        p.run(max_events=1000)
    finally:
        pm.unregister(name="observer")
    assert calls == [("startup", {"label": "hi"}), ("flushed", 600), ("flushed", 400), ("shutdown", 1000)]


def test_register_commands_adds_a_cli_command(capsys):
    mod = types.ModuleType("cmd")

    def register_commands(subparsers):
        p = subparsers.add_parser("hello")
        p.set_defaults(func=lambda args: print("hello from a plugin") or 0)

    mod.register_commands = hookimpl(register_commands)
    pm = get_plugin_manager()
    pm.register(mod, name="cmd")
    try:
        assert main(["hello"]) == 0
    finally:
        pm.unregister(name="cmd")
    assert "hello from a plugin" in capsys.readouterr().out


def test_plugins_module_named_in_yaml(tmp_path):
    (tmp_path / "my_extras.py").write_text(
        "from streamkit import Sink, hookimpl\n"
        "SEEN = []\n"
        "class Remember(Sink):\n"
        "    def write(self, flush):\n"
        "        SEEN.extend(d.partial for d in flush.deltas())\n"
        "@hookimpl\n"
        "def register_sinks(register):\n"
        "    register('remember', Remember)\n")
    f = tmp_path / "p.yaml"
    f.write_text("source: {type: generator, rate: 0}\naggregations: [{name: c, type: count}]\n"
                 "sinks: [{type: remember}]\nplugins: [my_extras]\n")
    p = Pipeline.from_yaml(f)
    p.run(max_events=123)
    assert sys.modules["my_extras"].SEEN == [123]
    get_plugin_manager().unregister(name="my_extras")


def test_plugins_command_json_lists_types_packages_and_options(capsys):
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    gen = next(t for t in data["source"] if t["name"] == "generator")
    assert gen["package"] == "streamkit" and gen["version"]
    assert gen["options"]["rate"] == {"type": "a number", "default": 2000.0, "required": False,
                                      "help": "records per second (0 = as fast as possible)"}
    assert {t["name"] for t in data["aggregator"]} >= {"count", "sum", "avg", "min", "max"}
    assert {t["name"] for t in data["sink"]} >= {"mongodb", "console", "jsonl", "discard"}


def test_streamkit_plugins_env_limits_what_loads():
    env = {**os.environ, "STREAMKIT_PLUGINS": "generator,outputs"}
    out = subprocess.run([sys.executable, "-m", "streamkit", "plugins", "--json"], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    data = json.loads(out)
    assert [t["name"] for t in data["source"]] == ["generator"]
    assert data["aggregator"] == []
    env["STREAMKIT_PLUGINS"] = ""
    data = json.loads(subprocess.run([sys.executable, "-m", "streamkit", "plugins", "--json"], env=env,
                                     capture_output=True, text=True, timeout=60, check=True).stdout)
    assert data["source"] == [] and data["sink"] == []


def test_register_kinds_defines_a_kind_other_plugins_register_types_of(capsys):
    """A plugin defines the kind ``notifier`` with its own hook and base class; another plugin
    registers a type of it; the registry, the pipeline and ``streamkit plugins`` know it."""
    from streamkit import Option, PluginType, hookspec

    class Notifier(PluginType):
        pass

    spec = types.ModuleType("notifier_spec")

    def register_notifiers(register):
        """Register notifier types."""

    spec.register_notifiers = hookspec(register_notifiers)
    definer = types.ModuleType("notifier_definer")
    definer.register_kinds = hookimpl(
        lambda register: register("notifier", spec.register_notifiers, Notifier))

    class Beeper(Notifier):
        """Beeps."""
        options = {"times": Option(int, 1, "how often")}

    user = types.ModuleType("notifier_user")
    user.register_notifiers = hookimpl(lambda register: register("beep", Beeper))
    wrong = types.ModuleType("notifier_wrong")
    wrong.register_notifiers = hookimpl(lambda register: register("bad", dict))
    pm = get_plugin_manager(entry_points=False)
    pm.register(definer, name="notifier_definer")
    pm.register(user, name="notifier_user")
    registry = build_registry(pm)
    assert list(registry.types) == ["source", "aggregator", "sink", "dead_letter", "notifier"]
    assert registry.known("notifier") == ["beep"]
    assert registry.get("notifier", "beep").plugin == "notifier_user"
    pm.register(wrong, name="notifier_wrong")
    with pytest.raises(PluginError, match="notifier type 'bad' must be a subclass of streamkit.Notifier"):
        build_registry(pm)
    again = types.ModuleType("notifier_again")
    again.register_kinds = hookimpl(lambda register: register("notifier", spec.register_notifiers, Notifier))
    with pytest.raises(PluginError, match="the kind 'notifier' of plugin types is defined twice"):
        pm.register(again, name="notifier_again")

    main_pm = get_plugin_manager()
    main_pm.register(definer, name="notifier_definer")
    main_pm.register(user, name="notifier_user")
    try:
        assert main(["plugins", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        assert [(t["name"], t["plugin"]) for t in listed["notifier"]] == [("beep", "notifier_user")]
        assert [t["name"] for t in listed["alert_destination"]] == ["kafka", "log", "webhook"]
        p = Pipeline.from_dict({"source": {"type": "generator"}, "sinks": [{"type": "discard"}],
                                "aggregations": [{"name": "c", "type": "count"}]})
        assert p.types("notifier") == {"beep": Beeper}
        assert p.types("no such kind") == {}
    finally:
        main_pm.unregister(name="notifier_user")
        main_pm.unregister(name="notifier_definer")


def test_what_a_plugin_reads_from_the_pipeline(tmp_path):
    f = tmp_path / "shop.yaml"
    f.write_text("source:\n  type: generator\n  seed: 7\naggregations:\n  - {name: c, type: count}\n"
                 "sinks:\n  - type: discard\nflush:\n  interval: 2s\ndelivery: at_least_once\n")
    p = Pipeline.from_yaml(f)
    assert (p.name, p.file, p.delivery, p.flush_interval) == ("shop", str(f), "at_least_once", 2.0)
    assert p.source_type == "generator" and p.source_class.__name__ == "Generator"
    assert p.source_options["seed"] == 7
    assert str(p.config_error(("sinks", 0, "type"), "no good")) == f"{f}:7: sinks[0].type: no good"
    assert str(p.config_error(("flush", "nope"), "no good")) == f"{f}:8: flush.nope: no good"
    from streamkit import Context
    assert (Context(p, "sinks[0]").delivery, Context(p, "sinks[0]").file) == ("at_least_once", str(f))
    assert (Context(None, "sinks[0]").delivery, Context(None, "sinks[0]").file) == ("exactly_once", None)
    d = Pipeline.from_dict({"source": {"type": "generator"}, "sinks": [{"type": "discard"}],
                            "aggregations": [{"name": "c", "type": "count"}]})
    assert (d.file, d.delivery, d.flush_interval) == ("<dict>", "exactly_once", 1.0)
    assert str(d.config_error(("alerts", "sink"), "no good")) == "<dict>: alerts.sink: no good"
