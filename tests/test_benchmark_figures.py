"""Every speed figure in docs/benchmarks.md and in the README's Speed section names the script in
benchmarks/ that prints it: a cheap guard against figures nobody can reproduce.

In docs/benchmarks.md a *figure line* is a table row with a numeric cell, or any other line
(outside code) with a number followed by a unit (records/s, ms, µs, s, %, ×, MB). It is covered by
the commands (``python benchmarks/<script>.py ...``, in a code block) that come before it in its
``###`` subsection, or, if that has none, in its ``##`` section. In the README's Speed section each
bullet with a figure names its script itself.
"""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
UNIT = re.compile(r"\d(?:[\d,.]*\d)?\s?(?:×|%|records/s|updates/s|events/s|ms\b|µs\b|s\b|MB\b)")
NUMERIC_CELL = re.compile(r"^\**[\d,.]+\**\s*(?:×|%|ms|s)?$")
SCRIPT = re.compile(r"benchmarks/([\w-]+\.py)")


def is_figure(line: str) -> bool:
    if line.lstrip().startswith("|"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if all(set(c) <= set("-: ") for c in cells):
            return False  # the separator row
        return any(NUMERIC_CELL.match(c) for c in cells)
    return bool(UNIT.search(line))


def orphan_figures(text: str) -> tuple[list[str], list[str], int]:
    """(figure lines no command covers, scripts named that do not exist, figure lines seen)."""
    orphans: list[str] = []
    section: list[str] = []
    sub: list[str] | None = None
    named: set[str] = set()
    seen = 0
    fenced = False
    previous_blank = True
    in_table_header = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        code = fenced or (line.startswith("    ") and previous_blank and not line.lstrip().startswith(("-", "|")))
        if code and not fenced:
            previous_blank = True  # an indented code block continues over its following lines
        elif not fenced:
            previous_blank = not line.strip()
        if line.startswith("## "):
            section, sub = [], None
            continue
        if line.startswith("### "):
            sub = []
            continue
        if code:
            scripts = SCRIPT.findall(line)
            named.update(scripts)
            (sub if sub is not None else section).extend(scripts)
            continue
        named.update(SCRIPT.findall(line))
        is_header = line.lstrip().startswith("|") and not in_table_header
        in_table_header = line.lstrip().startswith("|")
        if is_header or not is_figure(line):
            continue  # a table's first row is its header
        seen += 1
        if not (sub or section):
            orphans.append(f"line {n}: {line.strip()}")
    missing = sorted(s for s in named if not (ROOT / "benchmarks" / s).is_file())
    return orphans, missing, seen


def test_every_figure_in_docs_benchmarks_names_an_existing_script():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    orphans, missing, seen = orphan_figures(text)
    assert seen > 40, "found almost no figure lines: the figure rule no longer matches the document"
    assert not orphans, "figures with no benchmarks/ command before them:\n" + "\n".join(orphans)
    assert not missing, f"docs/benchmarks.md names scripts that do not exist: {missing}"


def test_every_benchmark_script_is_in_docs_benchmarks():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py")}
    assert scripts and scripts <= set(SCRIPT.findall(text))


def test_readme_speed_bullets_name_their_script():
    text = (ROOT / "README.md").read_text()
    speed = text.split("\n## Speed\n", 1)[1].split("\n## ", 1)[0]
    bullets = re.split(r"\n(?=- )", speed)
    with_figures = [b for b in bullets if b.startswith("- ") and UNIT.search(b)]
    assert len(with_figures) >= 3
    for b in with_figures:
        scripts = SCRIPT.findall(b)
        assert scripts, f"README Speed bullet names no benchmarks/ script: {b[:80]!r}"
        for s in scripts:
            assert (ROOT / "benchmarks" / s).is_file(), s


def test_the_rule_catches_an_orphan_figure():
    doc = ("# Benchmarks\n\nIntro.\n\n## Covered\n\n    python benchmarks/bench_core.py\n\n"
           "| contender | records/s |\n|---|---:|\n| a | 1,000 |\n\n- 2.0× faster.\n\n"
           "### Own script\n\n    python benchmarks/bench_fence.py\n\n- 0.12 ms per update.\n\n"
           "## Not covered\n\nIt took 107 s.\n\n| store | ms |\n|---|---:|\n| x | 3.5 |\n\n"
           "## Missing script\n\n    python benchmarks/bench_gone.py\n\n- 5 %.\n")
    orphans, missing, seen = orphan_figures(doc)
    assert seen == 6
    assert [o.split(":")[0] for o in orphans] == ["line 23", "line 27"]
    assert missing == ["bench_gone.py"]
