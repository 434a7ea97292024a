"""What every command line of the package shares: one-line errors with exit status 2, signals, quiet output.

The parsers are jsonargparse's, generated from typed signatures; this module only changes how they fail. jsonargparse
(like argparse) answers a bad flag with the usage text and, for a nested class, a message over several indented lines;
here that is one line naming the flag, ``error: --data.batch_size: expected int, got 'x' (see --help)``.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import jsonargparse


class UsageError(ValueError):
    """Bad input found by a command itself (a flag, a file, the machine): reported as one line, exit status 2."""


class HelpFormatter(jsonargparse.DefaultHelpFormatter):
    """jsonargparse's help, with each class flag's "known subclasses" cut to the ones a user means: ``--model``
    would otherwise list every ``nn.Module`` that torch, torchmetrics and Lightning define (about 800 lines)."""

    LIBRARIES = ("torch.", "torchmetrics.", "lightning.", "pytorch_lightning.", "lightning_fabric.", "tensorboard")

    def _get_help_string(self, action: Any) -> str:
        text = super()._get_help_string(action)
        head, sep, known = text.partition(", known subclasses: ")
        if not sep:
            return text
        names = [n.strip(" )") for n in known.split(",")]
        ours = [n for n in names if not n.startswith(self.LIBRARIES) or n.startswith("torch.optim.")
                and "swa_utils" not in n]
        shown = ", ".join(ours[:12]) + (f" and {len(ours) - 12} more" if len(ours) > 12 else "")
        return head + (", classes: " + shown if ours else "") + ")"


class Parser(jsonargparse.ArgumentParser):
    """jsonargparse's parser, with its errors as one line ``error: ...`` (no usage dump) and exit status 2."""

    hint: Callable[[str], str] | None = None  # a command's own rewording of messages it knows better

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        message = Parser.hint(message) if Parser.hint is not None else message
        print(f"error: {one_line(message)} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def one_line(message: str) -> str:
    r"""A jsonargparse message as one line: nested ``Parser key "a": ... Parser key "b": ...`` becomes ``--a.b: ...``,
    and of a union's alternatives (``Optional[X]`` is one) only the real complaint is kept.

    >>> one_line('Parser key "data":\n  Problem with given class_path \'x.DM\':\n    Parser key "batch_size":\n'
    ...          '      Expected a <class \'int\'>. Got value: x')
    "--data.batch_size: expected int, got 'x'"
    >>> one_line('Parser key "optimizer":\n  Does not validate against any of the Union subtypes\n  Subtypes: [...]\n'
    ...          '  Errors:\n    - Expected a dot import path string: Nope\n    - Expected a <class \'NoneType\'>\n'
    ...          '  Given value type: <class \'str\'>\n  Given value: Nope')
    "--optimizer: unknown class 'Nope' (a class name --help lists, or an import path like package.module.Class)"
    """
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    keys = [m.group(1) for line in lines if (m := re.fullmatch(r'Parser key "([^"]+)":', line))]
    if any("Does not validate against any of the Union subtypes" in line for line in lines):
        given = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Given value:")), "")
        errors = [i for i, line in enumerate(lines) if line.startswith("- ") and "NoneType" not in line]
        first = lines[errors[0]][2:] if errors else "not a valid value"
        if first.startswith("Problem with given class_path") and errors[0] + 1 < len(lines):
            first = f"cannot use {given!r} ({lines[errors[0] + 1].removeprefix('- ')})"
        elif first.startswith("Expected a dot import path string"):
            first = (f"unknown class {given!r} (a class name --help lists, or an import path like "
                     "package.module.Class)")
        elif m := re.fullmatch(r"Expected a <class '(\w+)'>", first):
            first = f"expected {m.group(1)}, got {given!r}"
        return (f"--{'.'.join(keys)}: " if keys else "") + first
    rest = [line for line in lines if not re.fullmatch(r'Parser key "[^"]+":', line)
            and not line.startswith("Problem with given class_path")]
    text = " ".join(rest) or " ".join(lines)
    text = re.sub(r"Expected a <class '(\w+)'>\. Got value: (.*)$", r"expected \1, got '\2'", text)
    return (f"--{'.'.join(keys)}: " if keys else "") + text


def entry_point(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """A command's ``main``, made polite: SIGTERM and Ctrl-C outside training end it with one line, and
    ``fit.py | head`` closing the pipe early is the reader's choice, not a crash to show a traceback for."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        # During training, callbacks.StopOnSignal takes SIGTERM over and saves a resumable checkpoint first.
        previous = _take_sigterm()
        try:
            try:
                code = main(argv)
            except SystemExit as e:  # the parser's --help (0) and its one-line errors (2): a return code here
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            sys.stdout.flush()  # a closed pipe surfaces here, not in the interpreter's final flush
            return code
        except (KeyboardInterrupt, Terminated) as e:
            name = "SIGTERM" if isinstance(e, Terminated) else "SIGINT"
            print(f"error: interrupted by {name}", file=sys.stderr)
            return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)
        except BrokenPipeError:
            # Python's documented remedy: point stdout at devnull so the interpreter's final flush stays quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return run


class Terminated(BaseException):
    """SIGTERM arrived outside training: a BaseException, like KeyboardInterrupt, so no ``except Exception`` eats it."""


def _take_sigterm() -> Any:
    """Make SIGTERM raise :class:`Terminated` (main thread only); returns the handler to put back, or None."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def terminated(signum: int, frame: Any) -> None:
        raise Terminated()

    return signal.signal(signal.SIGTERM, terminated)


def quiet() -> None:
    """A script's output: Lightning's chatter off, warnings one line each (:mod:`lr_lightning.core.quiet`)."""
    from lr_lightning.core.quiet import one_line_warnings, quiet_lightning

    quiet_lightning()
    one_line_warnings()


def show(path: str | Path) -> str:
    """A path as short as it can be said: relative to the working directory when it is below it."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)
