"""The plugin contract. Every hook is called by keyword, so a hookimpl may take fewer arguments.

Types are contributed through a ``register`` callback, so the host can reject a
duplicate name and remember which plugin gave what.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from pluggy import HookimplMarker, HookspecMarker

if TYPE_CHECKING:
    from .components import Flush
    from .result import RunResult
    from .pipeline import Pipeline

hookspec = HookspecMarker("streamkit")
hookimpl = HookimplMarker("streamkit")


@hookspec
def register_sources(register: Callable[[str, type], None]) -> None:
    """Register source types: ``register("kafka", KafkaSource)``.

    The class derives from :class:`streamkit.Source` and declares ``options``.
    """


@hookspec
def register_aggregators(register: Callable[[str, type], None]) -> None:
    """Register aggregator types: ``register("count", Count)``.

    The class derives from :class:`streamkit.Aggregator`: ``create``, ``add``,
    ``merge``, ``result`` and the MongoDB merge expressions.
    """


@hookspec
def register_sinks(register: Callable[[str, type], None]) -> None:
    """Register sink types: ``register("mongodb", MongoSink)``. Classes derive from :class:`streamkit.Sink`.

    A sink that stores positions with its data sets ``exactly_once = True`` and implements
    ``positions`` (a :class:`streamkit.Resume` per partition), ``keep_definition`` and ``reset``.
    """


@hookspec
def register_dead_letters(register: Callable[[str, type], None]) -> None:
    """Register dead-letter destination types: ``register("jsonl", JsonlDeadLetters)``.

    Classes derive from :class:`streamkit.DeadLetterDestination`.
    """


@hookspec(historic=True)
def register_kinds(register: Callable[[str, Callable, type], None]) -> None:
    """Define a new kind of plugin type: ``register("alert_destination", register_alert_destinations,
    AlertDestination)``.

    The second argument is a hook specification (a function marked with
    :data:`streamkit.hookspec`, taking ``register``) through which plugins register types of
    this kind; the third is the base class those types derive from. Called as the defining
    plugin is registered, so other plugins may implement the new hook. Types of the kind are
    listed by ``streamkit plugins`` and found with :meth:`streamkit.Pipeline.types`.
    """


@hookspec
def register_sections(register: Callable[[str, dict], None]) -> None:
    """Claim a top-level pipeline key and its options: ``register("dashboard", {"port": Option(int, 8080)})``.

    The validated section is ``pipeline.sections["dashboard"]`` (None when the file lacks it).
    """


@hookspec
def register_commands(subparsers: Any) -> None:
    """Add CLI commands: ``p = subparsers.add_parser("name", help=...)``, then
    ``p.set_defaults(func=callable)``; ``func(args)`` returns the exit code."""


@hookspec
def startup(pipeline: Pipeline) -> None:
    """The pipeline is about to read its first batch (sinks are open)."""


@hookspec
def flushed(pipeline: Pipeline, flush: Flush) -> None:
    """Every sink has made ``flush`` durable. Called from the writer thread; keep it quick."""


@hookspec
def shutdown(pipeline: Pipeline, result: RunResult) -> None:
    """The pipeline has stopped (after its final flush); ``result`` holds its counters."""


@hookspec
def reset(pipeline: Pipeline, dry_run: bool) -> dict[str, dict[str, int]] | None:
    """``streamkit reset`` removed the pipeline's positions and documents (``dry_run``: is about to).

    The source and every sink have done their part; ``pipeline.sinks`` are those sink instances,
    still connected. An observer that keeps state derived from the documents (counters) resets
    it too. Return ``{"where": {"what": count}}`` of what it removed, or None.
    """
