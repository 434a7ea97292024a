"""Every output the documentation claims is checked: README.md's and docs/**/*.md's fenced ``text`` or ``console``
blocks that begin with a ``$ command`` line are run, and what the commands print must match what the block shows.

The rules (docs/testing.md, "Documentation examples"):

- A page's blocks run in one empty temporary folder, in page order, so a later block reads what an earlier one wrote
  (``lightning_logs/version_0``, a CSV). ``scripts/``, ``configs/`` and ``tests/`` are linked into it.
- ``python scripts/NAME.py ARGS`` runs in this process through the script's ``main()`` (the one it imports);
  any other command runs in a new process (``python`` is this Python). A line ending in ``\\`` continues.
- Output is stdout and stderr together. Blank lines, trailing spaces and the progress lines a slow run prints every
  5 s (``epoch 50/100: step 1/1 (100%), ...``) do not count. Durations (``2.0 s``) are
  masked. Numbers agree to 1e-3 relative (the loss's last digits differ by machine); two numbers both below 1e-9 in
  size agree (rounding noise around zero). A line ``...`` matches any number of lines, and ``…`` inside a line any
  text: the doc writes them where it leaves output out.
- A block preceded by ``<!-- output not checked: REASON -->`` is not run (timings of one machine, hours of data).
Pycon (``>>>``) examples live in docstrings, which pytest's --doctest-modules runs.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
SKIP = re.compile(r"<!--\s*output not checked:\s*\S.*-->")
DURATION = re.compile(r"\b\d+(?:\.\d+)?(?:–\d+(?:\.\d+)?)? s\b")
PROGRESS = re.compile(r"^epoch \d+/\d+: step \d+/\d+ \(\d+%\)")  # callbacks.ProgressLines: every 5 s of training
NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


@dataclass
class Command:
    line: str  # as the doc writes it, without "$ "
    expected: list[str]


def blocks(page: Path) -> list[tuple[int, list[str]]]:
    """(line number, lines) of each checked block of ``page``: text/console, first line ``$ ...``, not skipped."""
    found, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or not m.group(2):
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):])
            i += 1
        i += 1
        skipped = start > 0 and SKIP.search(lines[start - 1])
        if lang in ("text", "console") and body and body[0].startswith("$ ") and not skipped:
            found.append((start + 1, body))
    return found


def commands(body: list[str]) -> list[Command]:
    out: list[Command] = []
    for line in body:
        if line.startswith("$ "):
            out.append(Command(line[2:], []))
        elif out and out[-1].line.endswith("\\") and not out[-1].expected:
            out[-1].line = out[-1].line[:-1] + "\n" + line
        else:
            out[-1].expected.append(line)
    return out


def run(line: str, cwd: Path) -> str:
    argv = shlex.split(line)
    if len(argv) >= 2 and argv[0] == "python" and re.fullmatch(r"scripts/\w+\.py", argv[1]):
        return run_in_process(script_main(argv[1]), argv[2:], cwd)
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300)
    return done.stdout


@functools.cache
def script_main(script: str):
    """The ``main`` a thin script calls: its ``from MODULE import NAME`` line."""
    module, name = re.search(r"^from ([\w.]+) import (\w+)$", (ROOT / script).read_text(), re.M).groups()
    return getattr(importlib.import_module(module), name)


def run_in_process(main, args: list[str], cwd: Path) -> str:
    out, previous = io.StringIO(), Path.cwd()
    os.chdir(cwd)
    try:
        # argparse's own refusals exit: their line is the output
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), contextlib.suppress(SystemExit):
            main(list(args))
    finally:
        os.chdir(previous)
    return out.getvalue()


def normalise(text: str | list[str]) -> list[str]:
    lines = text.splitlines() if isinstance(text, str) else text
    return [DURATION.sub("<time> s", line.rstrip()) for line in lines if line.strip() and not PROGRESS.match(line)]


def numbers_agree(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    return abs(x - y) <= 1e-3 * max(abs(x), abs(y)) or max(abs(x), abs(y)) < 1e-9


def line_matches(expected: str, actual: str) -> bool:
    """Text equal outside numbers (``…`` matching any text), numbers equal to 1e-3."""
    parts = [re.escape(p).replace("\0", ".*?") if i % 2 == 0 else NUMBER.pattern.join("()")
             for i, p in enumerate(_split(expected))]
    m = re.fullmatch("".join(parts), actual)
    if not m:
        return False
    return all(numbers_agree(e, a) for e, a in zip(_split(expected)[1::2], m.groups(), strict=True))


def _split(expected: str) -> list[str]:
    """``expected`` cut into text and number pieces, alternately (text first); ``…`` marked as ``\\0``."""
    pieces, last = [], 0
    for m in NUMBER.finditer(expected):
        pieces += [expected[last:m.start()].replace("…", "\0"), m.group()]
        last = m.end()
    return [*pieces, expected[last:].replace("…", "\0")]


def lines_match(expected: list[str], actual: list[str]) -> bool:
    """Line by line, a line ``...`` matching any run of lines (doctest's ELLIPSIS, by line)."""
    if not expected:
        return not actual
    if expected[0] == "...":
        return any(lines_match(expected[1:], actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and line_matches(expected[0], actual[0]) and lines_match(expected[1:], actual[1:])


def page_commands(page: Path) -> list[tuple[int, Command]]:
    return [(start, c) for start, body in blocks(page) for c in commands(body)]


_OUTPUTS: dict[tuple[str, ...], tuple[str, ...]] = {}


def run_page(cmds: tuple[str, ...], tmp: Path) -> tuple[str, ...]:
    """Each command's output, run in order in ``tmp``; kept, so pages showing the same commands (README's quick
    start and docs/getting-started.md) run them once."""
    if cmds not in _OUTPUTS:
        for name in ("scripts", "configs", "tests"):
            (tmp / name).symlink_to(ROOT / name)
        _OUTPUTS[cmds] = tuple(run(c, tmp) for c in cmds)
    return _OUTPUTS[cmds]


CHECKED = [p for p in PAGES if blocks(p)]
# Pages whose data is not made on the page yet (their owners make them runnable, then delete the entry here).
NOT_YET: dict[str, str] = {}


def test_the_docs_claim_outputs_and_the_rules_see_them():
    """The finder itself: if it found nothing (a fence's syntax changed), every test below would pass empty."""
    names = {p.relative_to(ROOT).as_posix() for p in CHECKED}
    assert {"README.md", "docs/getting-started.md", "docs/exact.md", "docs/tutorial.md"} <= names, names
    assert lines_match(normalise(["a 1.0001 b", "...", "c … 2.0 s"]), normalise(["a 1 b", "x", "", "c any 9.5 s"]))
    assert not lines_match(["a 1.01 b"], ["a 1 b"]) and not lines_match(["a 1 b"], ["a 1 b", "more"])
    assert not lines_match(["-1"], ["+1"])


# The pages show the whole repository's output (the summary's least-squares line comes from exact/, tutorial.md runs
# tutorial/); a copy without an optional package (.ci/deletable, a copier's) has other output.
@pytest.mark.skipif(not all((ROOT / "lr_lightning" / p).is_dir() for p in ("exact", "tutorial", "benchmark")),
                    reason="the docs show the full repository's output; an optional package is deleted here")
@pytest.mark.parametrize("page", CHECKED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_output_a_page_shows_is_what_its_commands_print(page, tmp_path_factory):
    if page.relative_to(ROOT).as_posix() in NOT_YET:
        pytest.skip(NOT_YET[page.relative_to(ROOT).as_posix()])
    cmds = page_commands(page)
    outputs = run_page(tuple(c.line for _, c in cmds), tmp_path_factory.mktemp(page.stem))
    for (start, cmd), output in zip(cmds, outputs, strict=True):
        expected, actual = normalise(cmd.expected), normalise(output)
        assert lines_match(expected, actual), (
            f"{page.relative_to(ROOT)}:{start}: $ {cmd.line}\n--- the doc shows\n" + "\n".join(expected)
            + "\n--- it prints\n" + "\n".join(actual))
