"""``streamkit run | validate | plugins``, plus commands contributed by plugins."""
from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn, Sequence

from .errors import StreamkitError

BROKEN_PIPE = 141  # what a shell reports for a command ended by SIGPIPE


class UsageError(StreamkitError):
    """A command line argparse rejects: one line, exit code 2, like every bad input."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _max_events(text: str) -> int:
    from .options import check_max_events
    try:
        value = int(text)
    except ValueError:
        value = None
    try:
        if value is None:
            raise ValueError(f"expected a whole number of records, at least 0, got {text!r}")
        return check_max_events(value)  # type: ignore[return-value]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace(repr(value), repr(text))) from None


def _duration(text: str) -> float:
    from .options import check_run_duration
    try:
        return check_run_duration(text)  # type: ignore[return-value]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_run(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline
    pipeline = Pipeline.from_yaml(args.file, overrides=args.set)
    result = pipeline.run(max_events=args.max_events, duration=args.duration, progress=not args.quiet)
    if args.json:
        import json
        print(json.dumps(result.as_dict()))
    else:
        print(result)
    return 1 if result.stuck else 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline
    p = Pipeline.from_yaml(args.file, overrides=args.set)
    spec = p.spec
    print(f"{args.file}: ok — source {spec.source.type}, {len(spec.aggregations)} aggregations, "
          f"sinks {', '.join(s.type for s in spec.sinks)}")
    return 0


def _cmd_reset(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline
    pipeline = Pipeline.from_yaml(args.file, overrides=args.set)
    interactive = sys.stdin.isatty()
    if not args.yes and not interactive:
        raise StreamkitError(f"{args.file}: reset deletes data and stdin is not a terminal to confirm it; "
                             f"add --yes")
    planned = pipeline.reset(dry_run=True, force=args.force)
    if not args.yes:
        print(f"streamkit reset removes what pipeline {pipeline.name!r} stored, so that its next run starts over:")
        _print_counts(planned)
        try:
            answer = input("Remove it? [y/N] ").strip().lower()
        except EOFError:
            answer = ""
        if answer not in ("y", "yes"):
            print("nothing removed")
            return 1
    done = pipeline.reset(force=args.force)
    print(f"pipeline {pipeline.name!r} reset; removed:")
    _print_counts(done)
    return 0


def _print_counts(counts: dict[str, dict[str, int]]) -> None:
    for where, what in counts.items():
        text = ", ".join(f"{label}: {n:,}" for label, n in what.items()) or "nothing kept here"
        print(f"  {where}: {text}")


def _cmd_plugins(args: argparse.Namespace) -> int:
    from .config import AGGREGATION_OPTIONS, PIPELINE_WINDOW_OPTIONS
    from .plugins import build_registry, get_plugin_manager
    pm = get_plugin_manager()
    for mod in args.module or []:
        from .plugins import load_module_plugin
        load_module_plugin(pm, mod)
    registry = build_registry(pm)
    data: dict = {kind: [r.describe() for _, r in sorted(types.items())] for kind, types in registry.types.items()}
    data["section"] = [r.describe() for _, r in sorted(registry.sections.items())]
    data["aggregation_options"] = {k: o.describe() for k, o in AGGREGATION_OPTIONS.items()}
    data["pipeline_options"] = {k: o.describe() for k, o in PIPELINE_WINDOW_OPTIONS.items()}
    data["plugins"] = sorted(pm.get_name(p) or "" for p in pm.get_plugins())
    if args.json:
        import json
        print(json.dumps(data, indent=2, default=str))
        return 0
    for kind in [*registry.types, "section"]:
        print(f"{kind} types:" if kind != "section" else "pipeline sections:")
        if kind == "aggregator":
            print("  (every aggregation)")
            _print_options(data["aggregation_options"])
        for r in data[kind]:
            pkg = f"{r['package']} {r['version']}".strip()
            print(f"  {r['name']:<14} {pkg}  {r['description']}")
            _print_options(r["options"])
    print("pipeline options (top level; lateness and late are every windowed aggregation's default):")
    _print_options(data["pipeline_options"])
    return 0


def _print_options(options: dict) -> None:
    for oname, o in options.items():
        req = "required" if o["required"] else f"default {o['default']!r}"
        print(f"      {oname:<20} {o['type']:<18} {req}  {o['help']}")


#: the commands of the core; a command line naming one of them (or only --version) loads no plugin
CORE_COMMANDS = ("run", "validate", "reset", "plugins")


def build_parser(plugin_commands: bool = True) -> argparse.ArgumentParser:
    """The command-line parser; ``plugin_commands=False`` leaves out the commands plugins add,
    so that no plugin is imported."""
    from . import __version__
    parser = _Parser(prog="streamkit", description="Real-time stream aggregation pipelines.")
    parser.add_argument("--version", action="version", version=f"streamkit {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline")
    run.add_argument("file", help="pipeline YAML file")
    run.add_argument("--max-events", type=_max_events, metavar="N",
                     help="stop after exactly N source records were processed and flushed")
    run.add_argument("--duration", type=_duration, metavar="SECONDS",
                     help="stop after this many seconds (or a duration such as 10m)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override an option, e.g. --set source.rate=0 (repeatable)")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress line")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(func=_cmd_run)

    val = sub.add_parser("validate", help="check a pipeline file without running it")
    val.add_argument("file")
    val.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    val.set_defaults(func=_cmd_validate)

    reset = sub.add_parser("reset", help="remove a pipeline's positions, intents and documents to start over")
    reset.add_argument("file", help="pipeline YAML file")
    reset.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    reset.add_argument("--force", action="store_true",
                       help="also delete documents that hold other pipelines' counts")
    reset.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    reset.set_defaults(func=_cmd_reset)

    plug = sub.add_parser("plugins", help="list every source, aggregator and sink type")
    plug.add_argument("--json", action="store_true")
    plug.add_argument("--module", action="append", metavar="MODULE", help="also load this plugin module")
    plug.set_defaults(func=_cmd_plugins)

    if plugin_commands:
        from .plugins import get_plugin_manager
        get_plugin_manager().hook.register_commands(subparsers=sub)
    return parser


def _needs_plugin_commands(argv: Sequence[str]) -> bool:
    """Whether parsing ``argv`` can involve a command a plugin adds: not when it names a core
    command, nor for ``--version`` alone (the top-level options take no values)."""
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is None:
        return "--version" not in argv or any(a in ("-h", "--help") for a in argv)
    return command not in CORE_COMMANDS


def main(argv: Sequence[str] | None = None) -> int:
    verbose = False
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(plugin_commands=_needs_plugin_commands(argv))
        args = parser.parse_args(argv)
        verbose = args.verbose > 0
        import logging
        level = logging.WARNING - 10 * min(args.verbose, 2)
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except StreamkitError as exc:
        if verbose:
            import traceback
            traceback.print_exc()
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"streamkit: error: {message}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`streamkit plugins | head`): stop quietly, as other tools do.
        # Later writes to stdout (the interpreter flushes it at exit) go nowhere.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return BROKEN_PIPE
    except KeyboardInterrupt:
        print("streamkit: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
