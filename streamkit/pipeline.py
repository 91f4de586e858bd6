"""The public entry point: build a pipeline from YAML or a dict, then run it."""
from __future__ import annotations

import copy
import os
import signal
import threading
from typing import Any

from .components import Context
from .config import PipelineSpec, build_spec
from .engine import Engine
from .result import RunResult
from .errors import ConfigError, PluginError, StreamkitError
from .options import check_max_events, check_run_duration
from .plugins import get_plugin_manager
from .progress import Progress
from .yamlfile import Located, apply_overrides, key_path, load, load_file


class Pipeline:
    """A validated pipeline. ``run()`` may be called once."""

    def __init__(self, spec: PipelineSpec, plugin_manager: Any = None) -> None:
        self.spec = spec
        self.plugin_manager = plugin_manager or get_plugin_manager()
        self.hook = self.plugin_manager.hook
        self._stop = threading.Event()
        self.source: Any = None
        self.sinks: list = []
        self.dead_letter: Any = None
        self.engine: Engine | None = None
        #: (index, count) among the processes of ``streamkit run --workers``; see Context.worker
        self.worker: tuple[int, int] = (0, 1)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | os.PathLike, *, overrides: list[str] | None = None,
                  plugin_manager: Any = None) -> "Pipeline":
        """Load and validate a pipeline file. ``overrides`` are ``dotted.key=value`` strings."""
        located = load_file(os.fspath(path))
        if overrides:
            apply_overrides(located, overrides)
        return cls(build_spec(located, plugin_manager=plugin_manager), plugin_manager)

    @classmethod
    def from_dict(cls, config: dict, *, overrides: list[str] | None = None,
                  plugin_manager: Any = None) -> "Pipeline":
        """Validate a configuration given as Python data (same shape as the YAML file)."""
        located = Located(copy.deepcopy(config), "<dict>")
        if overrides:
            apply_overrides(located, overrides)
        return cls(build_spec(located, plugin_manager=plugin_manager), plugin_manager)

    @classmethod
    def from_string(cls, text: str, *, name: str = "<string>", plugin_manager: Any = None) -> "Pipeline":
        return cls(build_spec(load(text, name), plugin_manager=plugin_manager), plugin_manager)

    # -- state --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def sections(self) -> dict:
        return self.spec.sections

    @property
    def aggregations(self) -> list:
        return self.spec.aggregations

    @property
    def file(self) -> str | None:
        """The pipeline file as given (``<dict>`` / ``<string>`` when built from data); for messages."""
        return self.spec.file

    @property
    def delivery(self) -> str:
        """``exactly_once`` or ``at_least_once`` (the pipeline's ``delivery:``)."""
        return self.spec.delivery

    @property
    def flush_interval(self) -> float:
        """Seconds between flushes at most (``flush.interval``)."""
        return self.spec.flush_interval

    @property
    def source_type(self) -> str:
        """The type name of the pipeline's source (``kafka``)."""
        return self.spec.source.type

    @property
    def source_class(self) -> type:
        """The class of the pipeline's source type (a :class:`streamkit.Source`)."""
        return self.spec.source.cls

    @property
    def source_options(self) -> dict:
        """The source's options, validated and with defaults filled in."""
        return self.spec.source.options

    def types(self, kind: str) -> dict[str, type]:
        """The types the loaded plugins registered for ``kind`` (``"sink"``, ``"alert_destination"``,
        ...): name -> class."""
        registry = self.spec.registry
        return {name: r.cls for name, r in sorted(registry.types.get(kind, {}).items())} if registry else {}

    def config_error(self, path: tuple, message: str) -> ConfigError:
        """A :class:`ConfigError` for the key at ``path`` (``("alerts", "destinations", 0, "url")``):
        names the file, the line of that key (or of the nearest key above it) and the key. For
        plugins that check part of the pipeline file after it loaded; raise what it returns."""
        if self.spec.located is not None:
            return self.spec.located.error(path, message)
        return ConfigError(message, file=self.spec.file, key=key_path(path) or None)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def result(self) -> RunResult | None:
        """Live counters while running (read-only; for observers such as a dashboard)."""
        return self.engine.result if self.engine else None

    def stop(self) -> None:
        """Ask the pipeline to stop after a final flush (safe from any thread or a signal handler)."""
        self._stop.set()

    # -- running ------------------------------------------------------------------------
    def _instantiate(self, tspec: Any) -> Any:
        try:
            return tspec.cls(tspec.options, Context(self, tspec.path))
        except StreamkitError:
            raise
        except Exception as exc:
            raise PluginError(f"{tspec.path} ({tspec.kind} type {tspec.type!r}) failed to start: "
                              f"{type(exc).__name__}: {exc}") from exc

    def run(self, *, max_events: int | None = None, duration: float | None = None,
            progress: bool | Progress = False) -> RunResult:
        """Run until the source ends, ``max_events`` records were processed and flushed,
        ``duration`` seconds passed, or :meth:`stop` / SIGINT / SIGTERM. Always flushes last.

        A negative, fractional or non-number ``max_events``, or a negative, NaN or infinite
        ``duration``, raises :class:`ValueError` before anything starts."""
        try:
            max_events = check_max_events(max_events)
        except ValueError as exc:
            raise ValueError(f"max_events: {exc}") from None
        try:
            duration = check_run_duration(duration)
        except ValueError as exc:
            raise ValueError(f"duration: {exc}") from None
        spec = self.spec
        self.source = self._instantiate(spec.source)
        self.sinks = [self._instantiate(s) for s in spec.sinks]
        self.dead_letter = self._instantiate(spec.dead_letter)
        prog = progress if isinstance(progress, Progress) else Progress(enabled=None if progress else False)
        self.engine = Engine(self, max_events=max_events, duration=duration, progress=prog)
        opened: list = []
        restore = self._install_signals()
        result: RunResult | None = None
        try:
            for comp in [self.dead_letter, *self.sinks]:
                comp.open()
                opened.append(comp)
            with prog:
                result = self.engine.run()
            return result
        finally:
            for comp in [self.source, *reversed(opened)]:
                try:
                    comp.close()
                except Exception:  # closing must not hide the error that stopped the run
                    if result is not None:
                        raise
            restore()
            if result is not None:
                self.hook.shutdown(pipeline=self, result=result)

    def reset(self, *, dry_run: bool = False, force: bool = False) -> dict[str, dict[str, int]]:
        """Remove what the source, the sinks and observers keep of this pipeline's progress and
        results (``streamkit reset``): ``{"sinks[0] (mongodb)": {"documents in db.c": 8000, ...}}``.
        The source goes first, so a source that refuses (the pipeline still runs) leaves all in place."""
        spec = self.spec
        out: dict[str, dict[str, int]] = {}
        made: list = []
        try:
            for tspec in [spec.source, *spec.sinks]:
                comp = self._instantiate(tspec)
                made.append(comp)
                if tspec.kind == "source":
                    counts = comp.reset(dry_run=dry_run)
                else:
                    counts = comp.reset(dry_run=dry_run, force=force)
                    self.sinks.append(comp)
                out[f"{tspec.path} ({tspec.type})"] = dict(counts or {})
            for extra in self.hook.reset(pipeline=self, dry_run=dry_run):
                out.update(extra or {})
        finally:
            self.sinks = []
            for comp in made:
                comp.close()
        return out

    def _install_signals(self):
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {}

        def handler(signum, frame):
            if self._stop.is_set() and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops without waiting
            self.stop()

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)

        def restore() -> None:
            for sig, h in previous.items():
                signal.signal(sig, h)
        return restore
