"""``lr-lightning``: one command, with the scripts as subcommands (``lr-lightning fit --max_epochs 2``), and
``python -m lr_lightning`` the same.

The core's own subcommands are listed here; an optional package under ``lr_lightning/`` adds its own by a
``COMMANDS`` table in its ``subcommands.py`` (found as :mod:`lr_lightning.core.solvers` finds ``plugin.py``: by
looking for the file), so deleting such a folder deletes its subcommands and nothing else. A file of its own, so that
a run imports no optional package it does not use.

>>> " ".join(list(commands())[:4])
'fit evaluate predict export'
>>> main(["--version"])  # doctest: +ELLIPSIS
lr-lightning ...
0
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path

import lr_lightning
from lr_lightning.core.commands import Parser

# name: ("module:function", one line of help). The function takes argv (a list, or None for sys.argv[1:]).
CORE_COMMANDS = {
    "fit": ("lr_lightning.core.cli:fit_main", "train a model (or solve it: --solver) on a dataset"),
    "evaluate": ("lr_lightning.core.evaluate:evaluate_main", "validate, test or predict with a checkpoint"),
    "predict": ("lr_lightning.core.predict:predict_main", "predict with a checkpoint (--ckpt) or an ONNX file"),
    "export": ("lr_lightning.core.export:export_main", "export a checkpoint to ONNX (.onnx) or torch.export (.pt2)"),
}


def commands() -> dict[str, tuple[str, str]]:
    """The subcommands: the core's, then each optional package's (its ``subcommands.py``'s ``COMMANDS``)."""
    found = dict(CORE_COMMANDS)
    for info in pkgutil.iter_modules(lr_lightning.__path__):
        here = Path(info.module_finder.path) / info.name
        if info.ispkg and info.name != "core" and (here / "subcommands.py").is_file():
            room = importlib.import_module(f"{lr_lightning.__name__}.{info.name}.subcommands")
            found.update(getattr(room, "COMMANDS", {}))
    return found


def usage(table: dict[str, tuple[str, str]]) -> str:
    width = max(map(len, table))
    lines = [f"  {name:<{width}}  {text}" for name, (_, text) in table.items()]
    return ("usage: lr-lightning COMMAND [FLAGS]   (or python -m lr_lightning COMMAND [FLAGS])\n\n"
            "Linear regression with PyTorch Lightning.\n\ncommands:\n" + "\n".join(lines)
            + "\n\n`lr-lightning COMMAND --help` lists a command's flags; `lr-lightning --version` prints the version.")


def main(argv: list[str] | None = None) -> int:
    """Run ``lr-lightning COMMAND FLAGS...`` (``argv`` None: from ``sys.argv``); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    table = commands()
    if not args or args[0] in ("-h", "--help"):
        try:
            print(usage(table), file=sys.stdout if args else sys.stderr, flush=True)
        except BrokenPipeError:  # `lr-lightning --help | head -3`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0 if args else 2
    if args[0] == "--version":
        print(f"lr-lightning {lr_lightning.__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in table:
        print(f"error: {name!r} is not an installed command (installed: {', '.join(table)}; an optional package's "
              "commands come with its folder under lr_lightning/) (see lr-lightning --help)", file=sys.stderr)
        return 2
    module, _, function = table[name][0].partition(":")
    run = getattr(importlib.import_module(module), function)
    Parser.command = f"lr-lightning {name}"  # its --help and errors say the command, not the script
    try:
        if argv is None:  # from the command line: the subcommand reads sys.argv, as its script would
            sys.argv = [Parser.command, *rest]
            return run(None)
        return run(rest)
    finally:
        Parser.command = None


if __name__ == "__main__":
    sys.exit(main())
