"""Plugins meet each other only through public names: no reach into another plugin's private
names, modules or objects (issue: the dashboard and alerts once read the mongodb sink's insides)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "plugins"


def _sources():
    for pkg in sorted(p for p in PLUGINS.iterdir() if p.is_dir() and p.name.startswith("streamkit_")):
        for path in sorted(pkg.rglob("*.py")):
            yield pkg.name, path


def test_the_tree_has_plugins_to_check():
    owners = {owner for owner, _ in _sources()}
    assert {"streamkit_mongodb", "streamkit_dashboard", "streamkit_alerts"} <= owners


def test_no_plugin_reads_the_insides_of_a_sink():
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for _, path in _sources()
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"sink\.(coll|db|upserted)\b", line)]
    assert found == []


def private_imports(owner: str, source: str) -> list[str]:
    """Imports in a module of plugin ``owner`` of another plugin's ``_name``, or of a module of it
    other than the package itself, or attribute reads ``other_plugin._name``."""
    out = []
    others: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            top = node.module.split(".")[0]
            if top.startswith("streamkit_") and top != owner:
                if node.module != top:
                    out.append(f"from {node.module} import ...")
                out += [f"from {top} import {a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                if top.startswith("streamkit_") and top != owner:
                    if a.name != top:
                        out.append(f"import {a.name}")
                    others.add(a.asname or top)
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in others
                and node.attr.startswith("_")):
            out.append(f"{node.value.id}.{node.attr}")
    return out


def test_no_plugin_imports_private_names_or_modules_of_another():
    found = [f"{path.relative_to(ROOT)}: {what}"
             for owner, path in _sources() for what in private_imports(owner, path.read_text())]
    assert found == []


def test_the_check_sees_each_kind_of_private_reach():
    source = ("from streamkit_mongodb import _speed\n"
              "from streamkit_mongodb.sink import MongoSink\n"
              "import streamkit_mongodb.client\n"
              "import streamkit_mongodb as m\n"
              "m._mock_clients\n"
              "from streamkit_mongodb import connect\n"
              "from .own import _fine\n")
    assert private_imports("streamkit_dashboard", source) == [
        "from streamkit_mongodb import _speed", "from streamkit_mongodb.sink import ...",
        "import streamkit_mongodb.client", "m._mock_clients"]
    assert private_imports("streamkit_mongodb", source) == []
