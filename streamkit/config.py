"""YAML -> validated :class:`PipelineSpec`. Validation is complete before anything starts."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from .aggregation import AggregationSpec
from .errors import ConfigError, PluginError
from .options import REQUIRED, Duration, ListOf, Option, OneOf, check_options, closest
from .plugins import Registry, build_registry, get_plugin_manager, load_module_plugin
from .records import MAX_KEY_BYTES
from .windows import parse_window
from .yamlfile import Located, key_path

TOP_LEVEL = ["name", "source", "aggregations", "sinks", "flush", "dead_letter", "plugins", "delivery", "workers",
             "lateness", "late", "idle_timeout"]
WORKERS = Option(int, 1, "processes `streamkit run` starts (see --workers)", min=1, max=1024)

FLUSH_OPTIONS = {
    "interval": Option(Duration, 1.0, "flush at least this often"),
    "max_records": Option(int, 100_000, "flush after this many records", min=1),
}
AGGREGATION_KEYS = {"name", "type", "group_by", "field", "window", "time_field", "max_key_bytes",
                    "lateness", "late", "retention"}
KEY_BYTES = Option(int, MAX_KEY_BYTES, "longest group-by value in bytes of UTF-8 (longer: a dead letter)",
                   min=1, max=1_048_576)
#: how windows close: per aggregation, or at the top level for every windowed aggregation
WINDOW_OPTIONS = {
    "lateness": Option(Duration, None, "close a window once every partition's event time is this far past "
                                       "its end (default: windows never close)"),
    "late": Option(OneOf("drop_counted", "dead_letter"), "drop_counted",
                   "a record too late for all its windows: counted and dropped, or a dead letter"),
}
RETENTION = Option(Duration, None, "drop a closed window once the latest event is this far past its end, or this long "
                                     "after it closed (default: keep it)")
#: what every aggregation takes besides its type's own options (listed by ``streamkit plugins``)
AGGREGATION_OPTIONS = {
    "name": Option(str, REQUIRED, "the aggregation field of its documents"),
    "group_by": Option(ListOf(str), None, "fields to group by (none: one group)"),
    "field": Option(str, None, "the field read (all types but count)"),
    "window": Option(object, None, "all-time (default), tumbling (1m) or hopping ({size: 5m, hop: 1m})"),
    "time_field": Option(str, "timestamp", "event time: epoch seconds or ISO-8601"),
    "max_key_bytes": KEY_BYTES,
    **WINDOW_OPTIONS,
    "retention": RETENTION,
}
PIPELINE_WINDOW_OPTIONS = {
    **WINDOW_OPTIONS,
    "idle_timeout": Option(Duration, 30.0, "a partition with no record for this long (wall clock) stops "
                                           "holding windows open"),
}


@dataclass
class TypeSpec:
    kind: str
    type: str
    cls: Any
    options: dict
    path: str  # "sinks[0]"


@dataclass
class PipelineSpec:
    name: str
    source: TypeSpec
    aggregations: list[AggregationSpec]
    sinks: list[TypeSpec]
    dead_letter: TypeSpec
    flush_interval: float
    flush_max_records: int
    delivery: str
    plugins: list[str]
    workers: int = 1
    sections: dict[str, dict | None] = field(default_factory=dict)
    idle_timeout: float = 30.0
    file: str | None = None
    registry: Registry | None = None
    located: Located | None = None  # the lines of every key, for errors found after loading


def _typed_block(loc: Located, registry: Registry, kind: str, value: Any, path: tuple,
                 default_type: str | None = None) -> TypeSpec:
    if value is None and default_type is not None:
        value = {"type": default_type}
    if not isinstance(value, dict):
        raise loc.error(path, f"expected a mapping with a type (known {kind} types: "
                              f"{', '.join(registry.known(kind))})")
    type_name = value.get("type", default_type)
    if type_name is None:
        raise loc.error(path + ("type",), f"missing required option (known {kind} types: "
                                          f"{', '.join(registry.known(kind))})")
    reg = registry.get(kind, type_name) if isinstance(type_name, str) else None
    if reg is None:
        known = registry.known(kind)
        hint = closest(str(type_name), known)
        raise loc.error(path + ("type",), f"unknown {kind} type {type_name!r}{hint}; known {kind} types: "
                                          f"{', '.join(known) or 'none (no plugin loaded)'}")
    opts = {k: v for k, v in value.items() if k != "type"}
    checked = check_options(reg.cls.options, opts, loc.error, path)
    return TypeSpec(kind, type_name, reg.cls, checked, key_path(path))


def _str_list(loc: Located, value: Any, path: tuple) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise loc.error(path + ((i,) if isinstance(value, list) else ()),
                            f"expected a field name (a string), got {item!r}")
    return list(items)


def _aggregation(loc: Located, registry: Registry, value: Any, path: tuple,
                 defaults: dict | None = None) -> AggregationSpec:
    if not isinstance(value, dict):
        raise loc.error(path, "expected a mapping with name and type")
    if "name" not in value:
        raise loc.error(path + ("name",), "missing required option (the aggregation's name)")
    name = value["name"]
    if not isinstance(name, str) or not name:
        raise loc.error(path + ("name",), f"expected a string, got {name!r}")
    type_name = value.get("type")
    if type_name is None:
        raise loc.error(path + ("type",), f"missing required option (known aggregator types: "
                                          f"{', '.join(registry.known('aggregator'))})")
    reg = registry.get("aggregator", type_name) if isinstance(type_name, str) else None
    if reg is None:
        known = registry.known("aggregator")
        raise loc.error(path + ("type",), f"unknown aggregator type {type_name!r}"
                        f"{closest(str(type_name), known)}; known aggregator types: {', '.join(known)}")
    cls = reg.cls
    own = {k: v for k, v in value.items() if k not in AGGREGATION_KEYS}
    allowed = sorted(AGGREGATION_KEYS | set(cls.options))
    for k in own:
        if k not in cls.options:
            raise loc.error(path + (k,), f"unknown option{closest(str(k), allowed) or '; known options: ' + ', '.join(allowed)}")
    options = check_options(cls.options, own, loc.error, path)
    group_by = _str_list(loc, value.get("group_by"), path + ("group_by",))
    fld = value.get("field")
    if cls.needs_field:
        if fld is None:
            raise loc.error(path + ("field",), f"missing required option (the field a {type_name} aggregation reads)")
        if not isinstance(fld, str) or not fld:
            raise loc.error(path + ("field",), f"expected a field name (a string), got {fld!r}")
    elif fld is not None:
        raise loc.error(path + ("field",), f"a {type_name} aggregation reads no field; remove this key")
    try:
        window = parse_window(value.get("window"))
    except ValueError as exc:
        raise loc.error(path + ("window",), str(exc)) from None
    time_field = value.get("time_field", "timestamp")
    if not isinstance(time_field, str) or not time_field:
        raise loc.error(path + ("time_field",), f"expected a field name (a string), got {time_field!r}")
    own_limit = {k: v for k, v in value.items() if k == "max_key_bytes"}
    key_bytes = check_options({"max_key_bytes": KEY_BYTES}, own_limit, loc.error, path)["max_key_bytes"]
    closing = _closing(loc, value, path, window, defaults or {})
    try:
        aggregator = cls(options)
    except ValueError as exc:
        raise loc.error(path, str(exc)) from None
    return AggregationSpec(name=name, type=type_name, aggregator=aggregator, group_by=group_by,
                           field=fld, window=window, time_field=time_field, options=options,
                           max_key_bytes=key_bytes, **closing)


def _closing(loc: Located, value: dict, path: tuple, window: Any, defaults: dict) -> dict:
    """``lateness``, ``late`` and ``retention`` of one aggregation (its own or the top level's)."""
    own = {k: value[k] for k in ("lateness", "late", "retention") if k in value}
    if own and window.size is None:
        k = sorted(own)[0]
        raise loc.error(path + (k,), "an all-time aggregation has no windows to close; remove this key "
                                     "or give the aggregation a window")
    if window.size is None:
        return {}
    out = check_options({**WINDOW_OPTIONS, "retention": RETENTION}, own, loc.error, path)
    for k in WINDOW_OPTIONS:
        if k not in own and defaults.get(k) is not None:
            out[k] = defaults[k]
    if out["retention"] is not None:
        if out["lateness"] is None:
            raise loc.error(path + ("retention",), "retention drops closed windows, and these never close: "
                                                   "set lateness (here or at the top level)")
        if out["retention"] < window.size:
            raise loc.error(path + ("retention",), f"retention ({out['retention']:g}s) is shorter than the "
                                                   f"window ({window.size:g}s): a window would be dropped "
                                                   f"before it could be read whole")
    return out


def build_spec(loc: Located, *, plugin_manager=None) -> PipelineSpec:
    """Validate a loaded pipeline file into a spec, loading its ``plugins:`` modules."""
    data = loc.data
    if data is None:
        raise ConfigError("the pipeline file is empty; it needs at least source and sinks", file=loc.file)
    if not isinstance(data, dict):
        raise loc.error((), "expected a mapping at the top level (source, aggregations, sinks, ...)")
    pm = plugin_manager or get_plugin_manager()
    module_names = _str_list(loc, data.get("plugins"), ("plugins",))
    # a module named in the file may sit next to it, as a script's helpers do
    base = os.path.dirname(os.path.abspath(loc.file)) if loc.file and not loc.file.startswith("<") else None
    for i, mod in enumerate(module_names):
        try:
            load_module_plugin(pm, mod, search=base)
        except PluginError as exc:  # not found, raised or bad syntax on import, a misspelled hook
            raise loc.error(("plugins", i), str(exc)) from None
    registry = build_registry(pm)
    known_top = TOP_LEVEL + sorted(registry.sections)
    for key in data:
        if key not in known_top:
            hint = closest(str(key), known_top) or f"; known keys: {', '.join(known_top)}"
            raise loc.error((key,), f"unknown top-level key{hint}")
    default_name = "pipeline"
    if loc.file and not loc.file.startswith("<"):
        default_name = os.path.splitext(os.path.basename(loc.file))[0]
    name = data.get("name", default_name)
    if not isinstance(name, str):
        raise loc.error(("name",), f"expected a string, got {name!r}")
    if "source" not in data:
        raise loc.error(("source",), f"missing required key (known source types: {', '.join(registry.known('source'))})")
    source = _typed_block(loc, registry, "source", data["source"], ("source",))

    closing = check_options(PIPELINE_WINDOW_OPTIONS, {k: data[k] for k in PIPELINE_WINDOW_OPTIONS if k in data},
                            loc.error, ())
    aggs_raw = data.get("aggregations") or []
    if not isinstance(aggs_raw, list):
        raise loc.error(("aggregations",), "expected a list of aggregations")
    aggregations = []
    seen: dict[str, int] = {}
    for i, a in enumerate(aggs_raw):
        spec = _aggregation(loc, registry, a, ("aggregations", i), closing)
        if spec.name in seen:
            raise loc.error(("aggregations", i, "name"), f"duplicate aggregation name {spec.name!r} "
                                                         f"(also aggregations[{seen[spec.name]}])")
        seen[spec.name] = i
        aggregations.append(spec)

    if "sinks" not in data:
        raise loc.error(("sinks",), f"missing required key (known sink types: {', '.join(registry.known('sink'))})")
    sinks_raw = data["sinks"]
    if not isinstance(sinks_raw, list) or not sinks_raw:
        raise loc.error(("sinks",), "expected a list with at least one sink")
    sinks = [_typed_block(loc, registry, "sink", s, ("sinks", i)) for i, s in enumerate(sinks_raw)]
    if not aggregations and not any(s.cls.takes_records(s.options) for s in sinks):
        raise loc.error(("aggregations",), "no aggregations and no sink that takes records: nothing would be written")

    flush_raw = data.get("flush") or {}
    if not isinstance(flush_raw, dict):
        raise loc.error(("flush",), "expected a mapping (interval, max_records)")
    flush = check_options(FLUSH_OPTIONS, flush_raw, loc.error, ("flush",))
    dead_letter = _typed_block(loc, registry, "dead_letter", data.get("dead_letter"), ("dead_letter",),
                               default_type="log")
    delivery = data.get("delivery", "exactly_once")
    try:
        delivery = OneOf("exactly_once", "at_least_once").convert(delivery)
    except ValueError as exc:
        raise loc.error(("delivery",), str(exc)) from None

    workers = check_options({"workers": WORKERS}, {k: v for k, v in data.items() if k == "workers"},
                            loc.error)["workers"]

    sections: dict[str, dict | None] = {}
    for sec_name, reg in registry.sections.items():
        raw = data.get(sec_name)
        if raw is None:
            sections[sec_name] = None
            continue
        if raw is True:
            raw = {}
        if not isinstance(raw, dict):
            raise loc.error((sec_name,), "expected a mapping of options")
        sections[sec_name] = check_options(reg.cls.options, raw, loc.error, (sec_name,))

    _check_emit(loc, sinks, aggregations)
    return PipelineSpec(name=name, source=source, aggregations=aggregations, sinks=sinks,
                        dead_letter=dead_letter, flush_interval=flush["interval"],
                        flush_max_records=flush["max_records"], delivery=delivery,
                        idle_timeout=closing["idle_timeout"],
                        plugins=module_names, workers=workers, sections=sections, file=loc.file, registry=registry,
                        located=loc)


def _check_emit(loc: Located, sinks: list[TypeSpec], aggregations: list[AggregationSpec]) -> None:
    """A sink that emits closed windows needs windows that close, and a sink that keeps them."""
    for i, s in enumerate(sinks):
        if not s.cls.emits_final(s.options):
            continue
        if not any(a.closes for a in aggregations):
            why = ("no aggregation here has windows that close (give a windowed aggregation a lateness, "
                   "here or at the top level); an all-time aggregation never has a final value")
            raise loc.error(("sinks", i, "emit"), f"emit: final writes each closed window once, but {why}")
        if not any(t.cls.stores_windows for t in sinks):
            raise loc.error(("sinks", i, "emit"), "emit: final reads each closed window's final values from a "
                                                  "sink that keeps windows (a database sink); add one under sinks")
