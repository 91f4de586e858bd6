"""Start-up time of the command line: ``streamkit --version``, ``validate`` and ``plugins``.

Each command is a whole process, timed from outside (start to exit, wall clock), the way a
user or a shell script meets it. The contenders run in turn, round after round (order rotating),
and ratios are taken within a round, so a machine whose speed drifts moves both sides alike:

    python benchmarks/bench_startup.py --rounds 30
    git archive <commit> | tar -x -C /tmp/before           # an earlier tree, to compare with
    python benchmarks/bench_startup.py --rounds 30 --before /tmp/before

``--before DIR`` runs the same commands from the source tree in DIR (on ``PYTHONPATH``, ahead of
the installed tree; the entry points are the installed ones, which name the same modules).
``python -c pass`` is the floor: the interpreter's own start-up.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

NEUTRAL = tempfile.gettempdir()
ROOT = pathlib.Path(__file__).resolve().parent.parent
COMMANDS = {
    "--version": ["--version"],
    "validate pipeline.yaml": ["validate", str(ROOT / "pipeline.yaml")],
    "validate kafka-to-mongo": ["validate", str(ROOT / "examples" / "kafka-to-mongo.yaml")],
    "plugins": ["plugins"],
}


def timed(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    # from a folder of no tree: `python -m` puts the working folder first on the path
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=NEUTRAL)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return elapsed


def contenders(before: str | None) -> dict[str, tuple[list[str], dict]]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    # as installed: compiled once, then loaded from __pycache__ (the warm-up run writes it)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out: dict[str, tuple[list[str], dict]] = {"python -c pass": ([sys.executable, "-c", "pass"], env)}
    script = shutil.which("streamkit", path=str(pathlib.Path(sys.executable).parent))
    if script:
        out["streamkit --version (console script)"] = ([script, "--version"], env)
    for name, args in COMMANDS.items():
        out[name] = ([sys.executable, "-m", "streamkit", *args], env)
        if before:
            old = {**env, "PYTHONPATH": f"{before}{os.pathsep}{before}/plugins"}
            out[f"{name} (before)"] = ([sys.executable, "-m", "streamkit", *args], old)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--before", metavar="DIR", help="an earlier source tree to run side by side")
    args = ap.parse_args()
    runs = contenders(args.before)
    names = list(runs)
    for argv, env in runs.values():  # warm the file cache and the bytecode of each tree
        timed(argv, env)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            times[n].append(timed(*runs[n]))
        print(f"\rround {r + 1}/{args.rounds}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    try:
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    print(f"{args.rounds} rounds, {os.cpu_count()} cores, load average {load}, Python {sys.version.split()[0]}")
    print(f"{'command':<40} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for n in names:
        t = times[n]
        print(f"{n:<40} {statistics.median(t) * 1000:>10.0f} {min(t) * 1000:>8.0f} {max(t) * 1000:>8.0f}")
    if args.before:
        print("\nratio now / before, per round (median, range):")
        for name in COMMANDS:
            ratios = [a / b for a, b in zip(times[name], times[f"{name} (before)"])]
            print(f"  {name:<38} {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}x)")


if __name__ == "__main__":
    main()
