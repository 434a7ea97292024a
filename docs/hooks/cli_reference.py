"""MkDocs hook: the command-line reference is generated from the parsers at build time, so it cannot drift.

A page holding the line ``<!-- lr-lightning commands -->`` gets, in its place, ``lr-lightning --help`` and each
subcommand's ``--help`` (run in-process, as ``lr-lightning COMMAND --help`` prints them).
"""

from __future__ import annotations

import contextlib
import io

MARKER = "<!-- lr-lightning commands -->"


def _help(argv: list[str]) -> str:
    from lr_lightning.core.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(argv)
    return out.getvalue().rstrip()


def reference() -> str:
    from lr_lightning.core.main import commands

    parts = ["## lr-lightning\n", "```text\n" + _help(["--help"]) + "\n```\n"]
    for name in commands():
        parts += [f"## lr-lightning {name}\n", "```text\n" + _help([name, "--help"]) + "\n```\n"]
    return "\n".join(parts)


def on_page_markdown(markdown: str, **kwargs: object) -> str:
    return markdown.replace(MARKER, reference()) if MARKER in markdown else markdown
