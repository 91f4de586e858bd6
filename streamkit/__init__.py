"""streamkit: real-time stream aggregation from a YAML pipeline of pluggable parts.

Public API (what plugins may import)::

    from streamkit import Pipeline, hookimpl, Source, Sink, Aggregator, Option

Each name is imported from its module on first use, so ``streamkit --version`` and
commands that need only part of the library do not pay for the rest.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> the module (under streamkit) that defines it
_PUBLIC = {
    **dict.fromkeys(["Aggregator", "Batch", "Context", "DeadLetter", "DeadLetterDestination", "Delta", "Flush",
                     "PartitionDelta", "PluginType", "Resume", "Sink", "Source", "SourceHooks", "WindowResult",
                     "EMIT_OPTION"], "components"),
    "RunResult": "result",
    **dict.fromkeys(["ConfigError", "PluginError", "SourceUnavailable", "StreamkitError"], "errors"),
    **dict.fromkeys(["hookimpl", "hookspec"], "hookspecs"),
    **dict.fromkeys(["MERGE_KINDS", "Expr", "F", "Frequent", "Span", "greatest", "hll_estimate", "quantile", "sqrt",
                     "top_entries", "when_positive"], "merging"),
    **dict.fromkeys(["REQUIRED", "Duration", "ListOf", "OneOf", "Option", "check_options", "parse_duration"],
                    "options"),
    "Pipeline": "pipeline",
    "echo": "progress",
    **dict.fromkeys(["tag_key", "to_json"], "records"),
    "stable_hash": "hashing",
    **dict.fromkeys(["UTC", "event_time", "iso_time"], "windows"),
}

if TYPE_CHECKING:
    from .components import (EMIT_OPTION, Aggregator, Batch, Context, DeadLetter, DeadLetterDestination, Delta,
                             Flush, PartitionDelta, PluginType, Resume, Sink, Source, SourceHooks, WindowResult)
    from .errors import ConfigError, PluginError, SourceUnavailable, StreamkitError
    from .hookspecs import hookimpl, hookspec
    from . import estimates
    from .hashing import stable_hash
    from .merging import (MERGE_KINDS, Expr, F, Frequent, Span, greatest, hll_estimate, quantile, sqrt, top_entries,
                          when_positive)
    from .options import REQUIRED, Duration, ListOf, OneOf, Option, check_options, parse_duration
    from .pipeline import Pipeline
    from .progress import echo
    from .records import tag_key, to_json
    from .result import RunResult
    from .windows import UTC, event_time, iso_time


#: the one place the version is written (pyproject.toml reads it from here)
__version__ = "0.1.0"


#: public modules (``streamkit.estimates``)
_MODULES = ("estimates",)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = value
        return value
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "Pipeline", "RunResult", "hookimpl", "hookspec",
    "Source", "Sink", "Aggregator", "DeadLetterDestination", "PluginType", "SourceHooks", "Context",
    "Batch", "DeadLetter", "Delta", "Flush", "PartitionDelta", "Resume", "WindowResult", "EMIT_OPTION",
    "Option", "REQUIRED", "Duration", "ListOf", "OneOf", "parse_duration", "check_options",
    "event_time", "iso_time", "UTC", "echo", "to_json",
    "StreamkitError", "ConfigError", "PluginError", "SourceUnavailable", "__version__",
    "MERGE_KINDS", "Expr", "F", "greatest", "sqrt", "when_positive",
    "Span", "Frequent", "hll_estimate", "quantile", "top_entries", "stable_hash", "tag_key", "estimates",
]
