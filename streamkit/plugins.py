"""The plugin manager, built once on first use: built-ins and third-party plugins
both come from the ``streamkit`` entry-point group; modules named under a
pipeline's ``plugins:`` key are added when that pipeline loads.

``STREAMKIT_PLUGINS`` limits what loads: unset loads every entry point; a comma
list loads only those entry-point names (or distribution names); empty loads none.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
import threading
import weakref
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any, Callable

import pluggy

from . import hookspecs
from .components import Aggregator, DeadLetterDestination, Sink, Source
from .errors import PluginError
from .options import closest

GROUP = "streamkit"
_pm: pluggy.PluginManager | None = None
_lock = threading.Lock()


def get_plugin_manager(*, entry_points: bool = True) -> pluggy.PluginManager:
    """The process-wide plugin manager; ``entry_points=False`` builds a fresh one without any."""
    global _pm
    if not entry_points:
        return _new_plugin_manager()
    with _lock:
        if _pm is None:
            pm = _new_plugin_manager()
            _load_entry_points(pm)
            pm.check_pending()
            _pm = pm
        return _pm


def _new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    kinds = dict(KINDS)
    _kinds[pm] = kinds

    def register_kind(kind: str, spec: Callable, base: type) -> None:
        name = getattr(spec, "__name__", "")
        if not isinstance(kind, str) or not kind or not hasattr(spec, f"{GROUP}_spec") or not isinstance(base, type):
            raise PluginError(f"register_kinds: expected (kind name, a function marked with streamkit.hookspec, "
                              f"a base class), got ({kind!r}, {spec!r}, {base!r})")
        if kind in kinds or kind == "section":
            raise PluginError(f"the kind {kind!r} of plugin types is defined twice")
        pm.add_hookspecs(SimpleNamespace(**{name: spec}))
        kinds[kind] = (name, base)

    pm.hook.register_kinds.call_historic(kwargs={"register": register_kind})
    return pm


def kinds(pm: pluggy.PluginManager) -> dict[str, tuple[str, type]]:
    """Every kind of plugin type ``pm`` knows: the core's, then those plugins defined
    (``register_kinds``), as kind -> (name of its register hook, base class)."""
    return dict(_kinds.get(pm, KINDS))


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    wanted = os.environ.get("STREAMKIT_PLUGINS")
    allow = None if wanted is None else {w.strip() for w in wanted.split(",") if w.strip()}
    # a distribution's metadata is parsed anew on every access: once per distribution here
    # (streamkit's own, with the README in it, costs milliseconds each time)
    dists: dict[Any, tuple[str, str]] = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        if ep.dist is not None and ep.dist not in dists:
            meta = ep.dist.metadata
            dists[ep.dist] = (meta["Name"], meta["Version"])
        dist, dist_version = dists[ep.dist] if ep.dist is not None else ("", "")
        if allow is not None and ep.name not in allow and dist not in allow:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin must name itself
            raise PluginError(f"plugin {ep.name!r} ({dist}) failed to load: {type(exc).__name__}: {exc}") from None
        try:
            pm.register(module, name=ep.name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {ep.name!r} ({dist}) is not a valid plugin: {_one_line(exc)}") from None
        _check_hooks(pm, module, f"plugin {ep.name!r} ({dist})")
        _PROVENANCE[ep.name] = (dist, dist_version)


_PROVENANCE: dict[str, tuple[str, str]] = {}


def load_module_plugin(pm: pluggy.PluginManager, name: str, search: str | None = None) -> ModuleType:
    """Import and register a module named under a pipeline's ``plugins:`` key (idempotent).

    ``search`` (the pipeline file's folder) is tried after the normal import path. Any
    failure — not found, an error or a syntax error while importing, a misspelled hook —
    is a :class:`PluginError` of one line naming the module (and its file and line).
    """
    existing = pm.get_plugin(name)
    if existing is not None:
        return existing
    try:
        module = _import(name, search)
    except SyntaxError as exc:
        raise PluginError(f"cannot import plugin module {name!r}: {exc.filename}:{exc.lineno}: "
                          f"syntax error: {exc.msg}") from None
    except ModuleNotFoundError as exc:
        if exc.name != name.split(".")[0] and exc.name != name:  # the module itself imports something missing
            raise PluginError(f"cannot import plugin module {name!r}: {exc}{_where(exc)}") from None
        raise PluginError(f"cannot import plugin module {name!r}: {exc}") from None
    except Exception as exc:
        raise PluginError(f"cannot import plugin module {name!r}: {type(exc).__name__}: {exc}{_where(exc)}") from None
    try:
        pm.register(module, name=name)
    except pluggy.PluginValidationError as exc:  # a known hook with arguments its spec does not offer
        raise PluginError(f"plugin module {name!r} is not a valid plugin: {_one_line(exc)}") from None
    try:
        _check_hooks(pm, module, f"plugin module {name!r}")
    except PluginError:
        pm.unregister(module)
        raise
    version = getattr(module, "__version__", "")
    _PROVENANCE.setdefault(name, (f"module {name}", version))
    return module


def _import(name: str, search: str | None) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if search is None or exc.name != name.split(".")[0]:
            raise
    sys.path.append(search)
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(search)


def _one_line(exc: BaseException) -> str:
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _where(exc: BaseException) -> str:
    """`` (at file:line)`` of the innermost frame that raised ``exc``."""
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f" (at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})"


def _check_hooks(pm: pluggy.PluginManager, plugin: Any, label: str) -> None:
    """pluggy's ``check_pending`` for one plugin, with a message naming the hook and the closest known one."""
    known = sorted(n for n in vars(pm.hook) if not n.startswith("_") and getattr(pm.hook, n).has_spec())
    for hook_name in sorted(vars(pm.hook)):
        caller = getattr(pm.hook, hook_name)
        if hook_name.startswith("_") or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and not impl.optionalhook:
                code = getattr(impl.function, "__code__", None)
                where = f" ({code.co_filename}:{code.co_firstlineno})" if code else ""
                raise PluginError(f"{label}{where}: unknown hook {hook_name!r}"
                                  f"{closest(hook_name, known) or '; known hooks: ' + ', '.join(known)}")


@dataclass
class Registered:
    name: str
    cls: Any
    plugin: str
    package: str
    version: str

    def describe(self) -> dict:
        opts = getattr(self.cls, "options", {}) or {}
        return {"name": self.name, "plugin": self.plugin, "package": self.package,
                "version": self.version, "description": getattr(self.cls, "description", "") or
                (self.cls.__doc__ or "").strip().split("\n")[0],
                "options": {k: o.describe() for k, o in opts.items()}}


#: the kinds of plugin types the core defines: kind -> (name of its register hook, base class)
KINDS = {
    "source": ("register_sources", Source),
    "aggregator": ("register_aggregators", Aggregator),
    "sink": ("register_sinks", Sink),
    "dead_letter": ("register_dead_letters", DeadLetterDestination),
}
_kinds: "weakref.WeakKeyDictionary[pluggy.PluginManager, dict]" = weakref.WeakKeyDictionary()


@dataclass
class Registry:
    """Every type contributed by the plugins of one plugin manager, by kind and name."""

    types: dict[str, dict[str, Registered]] = field(default_factory=dict)
    sections: dict[str, Registered] = field(default_factory=dict)

    def known(self, kind: str) -> list[str]:
        return sorted(self.types.get(kind, {}))

    def get(self, kind: str, name: str) -> Registered | None:
        return self.types.get(kind, {}).get(name)


def _plugin_info(pm: pluggy.PluginManager, impl_plugin: Any) -> tuple[str, str, str]:
    name = pm.get_name(impl_plugin) or getattr(impl_plugin, "__name__", repr(impl_plugin))
    package, version = _PROVENANCE.get(name, (name, ""))
    return name, package, version


def build_registry(pm: pluggy.PluginManager) -> Registry:
    """Call every ``register_*`` hook; duplicate names fail naming both plugins."""
    reg = Registry()
    for kind, (hook_name, base) in kinds(pm).items():
        table: dict[str, Registered] = {}
        reg.types[kind] = table
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            plugin, package, version = _plugin_info(pm, impl.plugin)

            def register(name: str, cls: Any, _p=plugin, _pkg=package, _v=version, _t=table,
                         _kind=kind, _base=base) -> None:
                if not isinstance(name, str) or not name:
                    raise PluginError(f"plugin {_p!r} registered a {_kind} type without a name")
                if not (isinstance(cls, type) and issubclass(cls, _base)):
                    raise PluginError(f"plugin {_p!r}: {_kind} type {name!r} must be a subclass of "
                                      f"streamkit.{_base.__name__}")
                if name in _t:
                    raise PluginError(f"{_kind} type {name!r} is registered twice: by plugin "
                                      f"{_t[name].plugin!r} and by plugin {_p!r}")
                _t[name] = Registered(name, cls, _p, _pkg, _v)

            impl.function(register=register)
    for impl in pm.hook.register_sections.get_hookimpls():
        plugin, package, version = _plugin_info(pm, impl.plugin)

        def register_section(name: str, options: dict, _p=plugin, _pkg=package, _v=version) -> None:
            if name in reg.sections:
                raise PluginError(f"pipeline section {name!r} is claimed twice: by plugin "
                                  f"{reg.sections[name].plugin!r} and by plugin {_p!r}")
            holder = type(f"Section_{name}", (), {"options": options, "description": ""})
            reg.sections[name] = Registered(name, holder, _p, _pkg, _v)

        impl.function(register=register_section)
    return reg
