"""Typed option schemas that every plugin type declares.

A type lists its options as ``options = {"name": Option(int, default=1, help=...)}``.
The config loader checks a YAML block against it before anything runs, so a
wrong value is reported as ``file:line: key: expected ...``.
"""
from __future__ import annotations

import copy
import difflib
import re
from typing import Any, Callable, Mapping

__all__ = ["Option", "REQUIRED", "Duration", "ListOf", "OneOf", "parse_duration", "check_options"]


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``1.5``, ``"500ms"``, ``"10s"``, ``"1m"``, ``"2h"`` or ``"1d"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 10s, 1m or 500ms")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("expected a duration that is not negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[m.group(2)]
    raise ValueError(f"expected a duration such as 10s, 1m or 500ms, got {value!r}")


class Duration:
    """Option type: a duration, stored as float seconds."""

    name = "duration"

    @staticmethod
    def convert(value: Any) -> float:
        return parse_duration(value)


class ListOf:
    """Option type: a list whose items all have one type; a lone item becomes a list."""

    def __init__(self, item: type) -> None:
        self.item = item
        self.name = f"list of {_type_name(item)}"

    def convert(self, value: Any) -> list:
        items = value if isinstance(value, list) else [value]
        return [_convert(self.item, v) for v in items]


class OneOf:
    """Option type: one of several literal strings."""

    def __init__(self, *choices: str) -> None:
        self.choices = choices
        self.name = " | ".join(choices)

    def convert(self, value: Any) -> str:
        if value in self.choices:
            return value
        raise ValueError(f"expected one of {', '.join(self.choices)}, got {value!r}")


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
          dict: "a mapping", list: "a list", object: "any value"}


def _type_name(kind: Any) -> str:
    return getattr(kind, "name", None) or _NAMES.get(kind, getattr(kind, "__name__", str(kind)))


def _convert(kind: Any, value: Any) -> Any:
    if hasattr(kind, "convert"):
        return kind.convert(value)
    if kind is object:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind in (int, float) and isinstance(value, bool):
        raise ValueError(f"expected {_type_name(kind)}, got {value!r}")
    if isinstance(value, kind):
        return value
    raise ValueError(f"expected {_type_name(kind)}, got {_describe(value)}")


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'}"
    return repr(value)


class Option:
    """One option of a plugin type: its type, default and one line of help."""

    def __init__(self, kind: Any, default: Any = REQUIRED, help: str = "", *,
                 min: float | None = None, max: float | None = None,
                 check: Callable[[Any], Any] | None = None) -> None:
        self.kind = kind
        self.default = default
        self.help = help
        self.min = min
        self.max = max
        self.extra_check = check

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def type_name(self) -> str:
        return _type_name(self.kind)

    def convert(self, value: Any) -> Any:
        if value is None and self.default is None:
            return None
        value = _convert(self.kind, value)
        if self.min is not None and value < self.min:
            raise ValueError(f"expected at least {self.min}, got {value!r}")
        if self.max is not None and value > self.max:
            raise ValueError(f"expected at most {self.max}, got {value!r}")
        if self.extra_check is not None:
            value = self.extra_check(value)
        return value

    def describe(self) -> dict:
        return {"type": self.type_name,
                "default": None if self.required else self.default,
                "required": self.required, "help": self.help}


def closest(name: str, known: list[str]) -> str:
    """`` (did you mean 'x'?)`` when a known name is close to ``name``."""
    match = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_options(schema: Mapping[str, Option], values: Mapping[str, Any],
                  fail: Callable[[tuple, str], Exception], path: tuple = ()) -> dict:
    """Convert ``values`` against ``schema``; unknown, missing or mistyped keys fail.

    ``fail(path, message)`` builds the exception to raise, so the caller can attach
    the file and line of the offending key.
    """
    out: dict[str, Any] = {}
    for key in values:
        if key not in schema:
            known = sorted(schema)
            hint = closest(str(key), known) or (f"; known options: {', '.join(known)}" if known else "; this type takes no options")
            raise fail(path + (key,), f"unknown option{hint}")
    for key, opt in schema.items():
        if key in values:
            try:
                out[key] = opt.convert(values[key])
            except ValueError as exc:
                raise fail(path + (key,), str(exc)) from None
        elif opt.required:
            raise fail(path + (key,), f"missing required option ({opt.type_name}"
                       + (f": {opt.help}" if opt.help else "") + ")")
        elif opt.default is None:
            out[key] = None
        else:
            out[key] = opt.convert(copy.deepcopy(opt.default))
    return out
