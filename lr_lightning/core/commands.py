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


class Parser(jsonargparse.ArgumentParser):
    """jsonargparse's parser, with its errors as one line ``error: ...`` (no usage dump) and exit status 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", jsonargparse.DefaultHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        print(f"error: {one_line(message)} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def one_line(message: str) -> str:
    """A jsonargparse message as one line: nested ``Parser key "a": ... Parser key "b": ...`` becomes ``--a.b: ...``,
    and its type reports (a Union's list of subtypes and errors, a restricted type, a Literal, a yes/no switch)
    become ``expected ..., got ...``.

    >>> one_line('Parser key "data":\\n  Problem with given class_path \\'x.DM\\':\\n    Parser key "batch_size":\\n'
    ...          '      Expected a <class \\'int\\'>. Got value: x')
    "--data.batch_size: expected int, got 'x'"
    >>> one_line('Parser key "stop_below":\\n  Does not validate against any of the Union subtypes\\n'
    ...          "  Subtypes: [<class 'float'>, <class 'NoneType'>]\\n  Errors:\\n    - Expected a <class 'float'>\\n"
    ...          "    - Expected a <class 'NoneType'>\\n  Given value type: <class 'str'>\\n  Given value: x")
    "--stop_below: expected float or null, got 'x'"
    >>> one_line('Parser key "lr":\\n  Not of type PositiveFloat: 0 does not conform to restriction v>0')
    "--lr: expected a number > 0, got '0'"
    >>> one_line('Parser key "epochs":\\n  Not of type PositiveInt: invalid literal for int() with base 10: \\'x\\'')
    "--epochs: expected a whole number > 0, got 'x'"
    >>> one_line("argument --bias/--no_bias: invalid _boolean_type value: 'maybe'")
    "--bias: expected true or false, got 'maybe'"
    """
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    keys = [m.group(1) for line in lines if (m := re.fullmatch(r'Parser key "([^"]+)":', line))]
    rest = [line for line in lines if not re.fullmatch(r'Parser key "[^"]+":', line)
            and not line.startswith("Problem with given class_path")]
    if rest and rest[0].startswith("Does not validate against any of the Union subtypes"):
        text = _union(rest)
    else:
        text = _expected(" ".join(rest) or " ".join(lines))
    if m := re.fullmatch(r"argument (--[\w.]+)(?:/--[\w.]+)?: invalid _boolean_type value: (.*)", text):
        return f"{m.group(1)}: expected true or false, got {m.group(2)}"
    return (f"--{'.'.join(keys)}: " if keys else "") + text


# jsonargparse.typing's restricted numbers, as a person says them.
_RESTRICTED = {"PositiveInt": "a whole number > 0", "NonNegativeInt": "a whole number >= 0",
               "PositiveFloat": "a number > 0", "NonNegativeFloat": "a number >= 0",
               "ClosedUnitInterval": "a number in [0, 1]", "OpenUnitInterval": "a number in (0, 1)"}


def _expected(text: str) -> str:
    """One of jsonargparse's type reports as ``expected KIND, got 'VALUE'`` (unchanged when it is none of them)."""
    text = re.sub(r"Expected a <class '(?:[\w.]+\.)?(?:list|Sequence|tuple)'>\. Got value: (.*)$",
                  r"expected a list [a, b, ...], got '\1'", text)
    text = re.sub(r"Expected a <class '(?:[\w.]+\.)?(\w+)'>\. Got value: (.*)$", r"expected \1, got '\2'", text)
    text = re.sub(r"Expected a typing\.Literal\[(.*)\]\. Got value: (.*)$",
                  lambda m: f"expected one of {m.group(1).replace(chr(39), '')}, got '{m.group(2)}'", text)
    if m := re.fullmatch(r"Not of type (\w+): (.*)", text):  # a restricted type: out of range, or not a number
        kind, detail = _RESTRICTED.get(m.group(1), m.group(1)), m.group(2)
        if value := re.fullmatch(r"(.*) does not conform to restriction .*", detail) or re.search(r": '(.*)'$", detail):
            return f"expected {kind}, got '{value.group(1)}'"
        return f"expected {kind} ({detail})"
    return text


def _union(lines: list[str]) -> str:
    """A Union's report (``Optional[float]`` and the like): what each non-None member expected, then the value."""
    errors = [line[2:] for line in lines if line.startswith("- ")]
    given = next((line.partition(": ")[2] for line in lines if line.startswith("Given value: ")), "?")
    quoted = any(line == "Given value type: <class 'str'>" for line in lines)
    kinds = []
    for error in errors:
        if "NoneType" in error:
            continue
        if m := re.match(r"Not of type (\w+):", error):
            kinds.append(_RESTRICTED.get(m.group(1), m.group(1)))
        elif m := re.fullmatch(r"Expected (?:a )?<class '(?:[\w.]+\.)?(\w+)'>", error):
            kinds.append("a list [a, b, ...]" if m.group(1) in ("list", "Sequence", "tuple") else m.group(1))
        else:  # "Expected a tuple with 2 elements", a Literal's report, ...
            kinds.append(re.sub(r"^[Ee]xpected ", "", _expected(error).split(", got ")[0]))
    if len(kinds) < len(errors):
        kinds.append("null")
    return f"expected {' or '.join(kinds)}, got " + (f"'{given}'" if quoted else given)


def entry_point(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """A command's ``main``, made polite: SIGTERM and Ctrl-C outside training end it with one line, and
    ``fit.py | head`` closing the pipe early is the reader's choice, not a crash to show a traceback for."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        # During training, callbacks.StopOnSignal takes SIGTERM over and saves a resumable checkpoint first.
        previous = _take_sigterm()
        try:
            code = main(argv)
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
