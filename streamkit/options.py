"""Typed option schemas that every plugin type declares.

A type lists its options as ``options = {"name": Option(int, default=1, help=...)}``.
The config loader checks a YAML block against it before anything runs, so a
wrong value is reported as ``file:line: key: expected ...``.
"""
from __future__ import annotations

import copy
import difflib
import math
import re
from typing import Any, Callable, Mapping

__all__ = ["Option", "REQUIRED", "Duration", "ListOf", "OneOf", "parse_duration", "check_options"]


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
#: the longest duration any option (window, hop, flush interval, timeout) accepts: ten years
MAX_DURATION = 3650 * 86400.0


def parse_duration(value: Any) -> float:
    """Seconds from ``1.5``, ``"500ms"``, ``"10s"``, ``"1m"``, ``"2h"`` or ``"1d"``.

    Not negative, not NaN or infinite, and at most :data:`MAX_DURATION` (``3650d``), so
    that every time computed from it (window starts, deadlines) stays representable.
    """
    seconds: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond any float
            seconds = math.inf
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds is None or math.isnan(seconds):
        raise ValueError(f"expected a duration such as 10s, 1m or 500ms, got {value!r}")
    if seconds < 0:
        raise ValueError(f"expected a duration that is not negative, got {value!r}")
    if seconds > MAX_DURATION:
        raise ValueError(f"expected a duration of at most 3650d (ten years), got {value!r}")
    return seconds


def check_max_events(value: Any) -> int | None:
    """``max_events`` of a run: None, or a whole number of records, at least 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a whole number of records, at least 0, got {value!r}")
    return value


def check_run_duration(value: Any) -> float | None:
    """``duration`` of a run: None, or seconds (a number or a duration such as ``10m``),
    finite, not negative and at most :data:`MAX_DURATION`."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            try:
                return parse_duration(value)
            except ValueError:
                raise ValueError(f"expected a number of seconds or a duration such as 10m, got {value!r}") from None
    else:
        raise ValueError(f"expected a number of seconds, got {value!r}")
    if not 0 <= seconds <= MAX_DURATION:  # also NaN
        raise ValueError(f"expected a number of seconds from 0 to {MAX_DURATION:.0f} (3650d), got {value!r}")
    return seconds


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
    if kind in (int, float) and isinstance(value, bool):
        raise ValueError(f"expected {_type_name(kind)}, got {value!r}")
    if kind is float and isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = math.inf
        if not math.isfinite(number):  # NaN passes every min/max comparison; inf overflows later
            raise ValueError(f"expected a finite number, got {value!r}")
        return number
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
