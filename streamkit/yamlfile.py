"""YAML with line numbers and ``${VAR}`` / ``${VAR:-default}`` interpolation."""
from __future__ import annotations

import os
import re
from typing import Any, Mapping

import yaml

from .errors import ConfigError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def key_path(path: tuple) -> str:
    """``("sinks", 0, "uri")`` -> ``sinks[0].uri``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class Located:
    """Plain Python data read from YAML, plus the line of every key and item."""

    def __init__(self, data: Any, file: str | None = None, lines: Mapping[tuple, int] | None = None) -> None:
        self.data = data
        self.file = file
        self.lines = dict(lines or {})
        self.overrides: set[tuple] = set()  # paths given on the command line with --set

    def line(self, path: tuple) -> int | None:
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())

    def error(self, path: tuple, message: str) -> ConfigError:
        path = tuple(path)
        if any(path[:i] in self.overrides for i in range(1, len(path) + 1)):
            return ConfigError(message, key=f"--set {key_path(path)}")
        return ConfigError(message, file=self.file, line=self.line(path), key=key_path(path) or None)


def _interpolate(text: str, path: tuple, fail) -> str:
    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        value = os.environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise fail(path, f"environment variable {name} is not set and has no default "
                                 f"(write ${{{name}:-value}} to give one)")
            return default
        return value
    return _VAR.sub(sub, text)


#: values an alias may bring in, all aliases of a file together: a pipeline file needs few,
#: and nested aliases grow exponentially ("billion laughs")
MAX_ALIAS_NODES = 10_000


class _Expansion:
    """What one load has built so far: to refuse recursive aliases and alias bombs."""

    def __init__(self) -> None:
        self.built: set[int] = set()   # nodes built once: meeting one again means an alias
        self.open: set[int] = set()    # nodes being built: meeting one of these means a recursive alias
        self.aliased = 0               # values built again because an alias named them


def _build(node: yaml.Node, path: tuple, lines: dict, fail, env: bool,
           seen: _Expansion | None = None, via_alias: bool = False) -> Any:
    if seen is None:
        seen = _Expansion()
    ident = id(node)
    if ident in seen.open:
        raise fail(path, "a YAML alias refers to a value that contains it (a recursive alias)")
    if ident in seen.built:
        via_alias = True
    if via_alias:
        seen.aliased += 1
        if seen.aliased > MAX_ALIAS_NODES:
            raise fail(path, f"YAML aliases expand to more than {MAX_ALIAS_NODES:,} values; "
                             f"write the values out or use fewer aliases")
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.ScalarNode):
        seen.built.add(ident)
        return _scalar_value(node, path, fail, env)
    seen.open.add(ident)
    try:
        if isinstance(node, yaml.MappingNode):
            out: dict = {}
            for key_node, value_node in node.value:
                key = _build(key_node, path + ("<key>",), {}, fail, False, seen, via_alias)
                if not isinstance(key, (str, int)):
                    raise fail(path, f"keys must be strings, got {key!r}")
                if key in out:
                    lines[path + (key,)] = key_node.start_mark.line + 1
                    raise fail(path + (key,), "duplicate key")
                out[key] = _build(value_node, path + (key,), lines, fail, env, seen, via_alias)
                lines[path + (key,)] = key_node.start_mark.line + 1
            return out
        return [_build(item, path + (i,), lines, fail, env, seen, via_alias) for i, item in enumerate(node.value)]
    finally:
        seen.open.discard(ident)
        seen.built.add(ident)


def _scalar_value(node: yaml.ScalarNode, path: tuple, fail, env: bool) -> Any:
    try:
        value = _scalar(node)
    except (ValueError, OverflowError) as exc:  # 2026-02-30, an integer of 5,000 digits, ...
        reason = str(exc).split(";")[0]
        if "integer string conversion" in reason:  # Python's limit, worded differently by version
            reason = "too many digits for an integer"
        raise fail(path, f"cannot read {_short(node.value)}: {reason}") from None
    if env and isinstance(value, str) and "${" in value:
        text = _interpolate(value, path, fail)
        if node.style is None:  # plain scalar: let YAML type the substituted text (${RATE:-0} is a number)
            try:
                return yaml.safe_load(text) if text.strip() else None
            except (yaml.YAMLError, ValueError, OverflowError):
                return text
        return text
    return value


def _short(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:37] + "...")


_loader_for_scalars = yaml.SafeLoader("")


def _scalar(node: yaml.ScalarNode) -> Any:
    return _loader_for_scalars.construct_object(node, deep=True)


def load(text: str, file: str | None = None, env: bool = True) -> Located:
    """Parse YAML ``text``; errors name the file and line."""
    located = Located(None, file)

    def fail(path: tuple, message: str) -> ConfigError:
        return located.error(path, message)

    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"YAML syntax error: {problem}", file=file,
                          line=mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as exc:  # a control character: most likely not a text file at all
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise ConfigError(f"not a YAML text file: character #x{exc.character:04x} at position {exc.position} "
                          f"is not allowed", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax error: {' '.join(str(exc).split())}", file=file) from None
    except RecursionError:
        raise ConfigError("YAML nested too deeply", file=file) from None
    if node is None:
        located.data = None
        return located
    try:
        located.data = _build(node, (), located.lines, fail, env)
    except RecursionError:
        raise ConfigError("YAML nested too deeply", file=file) from None
    return located


def load_file(path: str, env: bool = True) -> Located:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the pipeline file: {exc.strerror}", file=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not a YAML text file: byte 0x{raw[exc.start]:02x} at offset {exc.start} is not UTF-8",
                          file=path, line=raw.count(b"\n", 0, exc.start) + 1) from None
    return load(text, file=path, env=env)


def apply_overrides(located: Located, overrides: list[str]) -> None:
    """Apply ``--set dotted.key=value`` overrides in place; values are YAML."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item}: expected dotted.key=value")
        dotted, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except (yaml.YAMLError, ValueError, OverflowError, RecursionError):
            value = raw
        parts: list = [int(p) if p.isdigit() else p for p in dotted.split(".")]
        if not all(str(p) for p in parts):
            raise ConfigError(f"--set {item}: empty key")
        if located.data is None:
            located.data = {}
        target = located.data
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(target, list):
                if not isinstance(part, int) or part >= len(target):
                    raise ConfigError(f"--set {dotted}: no item {part} in {key_path(tuple(parts[:i]))}")
                target = target[part]
            elif isinstance(target, dict):
                if part not in target or target[part] is None:
                    target[part] = [] if isinstance(nxt, int) else {}
                target = target[part]
            else:
                raise ConfigError(f"--set {dotted}: {key_path(tuple(parts[:i]))} is not a mapping or list")
        last = parts[-1]
        if isinstance(target, list):
            if not isinstance(last, int) or last > len(target):
                raise ConfigError(f"--set {dotted}: no item {last}")
            if last == len(target):
                target.append(value)
            else:
                target[last] = value
        elif isinstance(target, dict):
            target[last] = value
        else:
            raise ConfigError(f"--set {dotted}: cannot set a key inside a {type(target).__name__}")
        located.overrides.add(tuple(parts))
