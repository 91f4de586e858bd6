"""streamkit: real-time stream aggregation from a YAML pipeline of pluggable parts.

Public API (what plugins may import)::

    from streamkit import Pipeline, hookimpl, Source, Sink, Aggregator, Option
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from .components import (Aggregator, Batch, Context, DeadLetter, DeadLetterDestination, Delta, Flush,
                         PartitionDelta, PluginType, Resume, Sink, Source, SourceHooks)
from .result import RunResult
from .errors import ConfigError, PluginError, SourceUnavailable, StreamkitError
from .hookspecs import hookimpl, hookspec
from .merging import (MERGE_KINDS, Expr, F, Frequent, Span, greatest, hll_estimate, quantile, sqrt, top_entries,
                      when_positive)
from .options import REQUIRED, Duration, ListOf, OneOf, Option, check_options, parse_duration
from .pipeline import Pipeline
from .progress import echo
from .records import tag_key, to_json
from .hashing import stable_hash
from . import estimates
from .windows import UTC, event_time, iso_time

try:
    __version__ = _version("streamkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "Pipeline", "RunResult", "hookimpl", "hookspec",
    "Source", "Sink", "Aggregator", "DeadLetterDestination", "PluginType", "SourceHooks", "Context",
    "Batch", "DeadLetter", "Delta", "Flush", "PartitionDelta", "Resume",
    "Option", "REQUIRED", "Duration", "ListOf", "OneOf", "parse_duration", "check_options",
    "event_time", "iso_time", "UTC", "echo", "to_json",
    "StreamkitError", "ConfigError", "PluginError", "SourceUnavailable", "__version__",
    "MERGE_KINDS", "Expr", "F", "greatest", "sqrt", "when_positive",
    "Span", "Frequent", "hll_estimate", "quantile", "top_entries", "stable_hash", "tag_key", "estimates",
]
