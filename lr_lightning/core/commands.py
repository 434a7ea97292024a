"""What every command line of the package shares: one-line errors with exit status 2, signals, quiet output.

The parsers are jsonargparse's, generated from typed signatures; this module only changes how they fail. jsonargparse
(like argparse) answers a bad flag with the usage text and, for a nested class, a message over several indented lines;
here that is one line naming the flag, ``error: --data.batch_size: expected int, got 'x' (see --help)``.
"""

from __future__ import annotations

import functools
import gc
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import jsonargparse
import yaml


class UsageError(ValueError):
    """Bad input found by a command itself (a flag, a file, the machine): reported as one line, exit status 2."""


class YAMLAliasError(yaml.YAMLError):
    """A YAML alias in a config or value: refused (see :func:`load_yaml`)."""


_JSONARGPARSE_YAML = jsonargparse.get_loader("yaml")  # jsonargparse's own (its number and date rules), wrapped below


def refuse_aliases(text: str) -> None:
    """Raise :class:`YAMLAliasError` if ``text`` uses a YAML alias (``*name``).

    An alias is a reference: one that refers to itself (``a: &a [*a]``) is a structure without end (RecursionError
    wherever it is walked), and nine nested levels of ten references each (the "billion laughs") stand for 10⁹ values
    in a few hundred bytes, which every copy or walk of the config then expands (minutes, then the memory). A config
    has no need of them: the values can be written out. Found from the parser's events, before anything is built.
    """
    if "*" not in text:  # no alias without its "*": the common case costs nothing
        return
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            raise YAMLAliasError(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not accepted "
                                 "(one can refer to itself, or expand a few lines into billions of values); write the "
                                 "value out")


def load_yaml(text: str) -> Any:
    """jsonargparse's YAML loader, for configs and values alike, refusing aliases (:func:`refuse_aliases`)."""
    if isinstance(text, str):
        refuse_aliases(text)
    return _JSONARGPARSE_YAML(text)


jsonargparse.set_loader("yaml", load_yaml, (yaml.YAMLError,))


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
    command: str | None = None  # set by `lr-lightning COMMAND`: the name its usage shows instead of "fit.py"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        if Parser.command and str(kwargs.get("prog", "")).endswith(".py"):
            kwargs["prog"] = Parser.command
        # A class path is code to import and call: jsonargparse's denylist (subprocess, os, eval, pickle, ...) refuses
        # those before importing them. jsonargparse 4.x only warns unless the list is set; set, it is enforced.
        try:
            from jsonargparse._common import default_import_path_denylist
        except ImportError:  # a jsonargparse before the denylist: nothing to enforce
            pass
        else:
            jsonargparse.set_parsing_settings(import_path_denylist=list(default_import_path_denylist))
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        message = Parser.hint(message) if Parser.hint is not None else message
        # jsonargparse names a missing required flag by its destination ("required: ckpt, out"): say the flags.
        if m := re.fullmatch(r"the following arguments are required: ([\w, ]+)", message):
            names = m.group(1).split(", ")
            if all(f"--{name}" in self._option_string_actions for name in names):
                message = f"{', '.join(f'--{name}' for name in names)} {'is' if len(names) == 1 else 'are'} required"
        print(f"error: {one_line(message)} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def one_line(message: str) -> str:
    r"""A jsonargparse message as one line: nested ``Parser key "a": ... Parser key "b": ...`` becomes ``--a.b: ...``,
    its type reports (a Union's list of subtypes and errors, a restricted type, a Literal, a yes/no switch) become
    ``expected ..., got ...``, and of a union's alternatives (``Optional[X]`` is one) a class that cannot be found or
    built, or a constructor's own complaint, is said as such.

    >>> one_line('Parser key "data":\n  Problem with given class_path \'x.DM\':\n    Parser key "batch_size":\n'
    ...          '      Expected a <class \'int\'>. Got value: x')
    "--data.batch_size: expected int, got 'x'"
    >>> one_line('Parser key "optimizer":\n  Does not validate against any of the Union subtypes\n  Subtypes: [...]\n'
    ...          '  Errors:\n    - Expected a dot import path string: Nope\n    - Expected a <class \'NoneType\'>\n'
    ...          '  Given value type: <class \'str\'>\n  Given value: Nope')
    "--optimizer: unknown class 'Nope' (a class name --help lists, or an import path like package.module.Class)"
    >>> one_line('Parser key "stop_below":\n  Does not validate against any of the Union subtypes\n'
    ...          "  Subtypes: [<class 'float'>, <class 'NoneType'>]\n  Errors:\n    - Expected a <class 'float'>\n"
    ...          "    - Expected a <class 'NoneType'>\n  Given value type: <class 'str'>\n  Given value: x")
    "--stop_below: expected float or null, got 'x'"
    >>> one_line('Parser key "lr":\n  Not of type PositiveFloat: 0 does not conform to restriction v>0')
    "--lr: expected a number > 0, got '0'"
    >>> one_line('Parser key "epochs":\n  Not of type PositiveInt: invalid literal for int() with base 10: \'x\'')
    "--epochs: expected a whole number > 0, got 'x'"
    >>> one_line('Parser key "module":\n  - Expected a path but my.TabMLP either not accessible or invalid\n'
    ...          '  - Does not validate against any of the Union subtypes\n  Subtypes: [...]\n  Errors:\n'
    ...          '    - Import path does not correspond to a subclass of RegressionModule\n'
    ...          "    - Expected a <class 'NoneType'>\n  Given value type: <class 'str'>\n  Given value: my.TabMLP")
    "--module: 'my.TabMLP' is not a RegressionModule subclass"
    >>> one_line("argument --bias/--no_bias: invalid _boolean_type value: 'maybe'")
    "--bias: expected true or false, got 'maybe'"
    """
    # jsonargparse's advice for a denied import path is how to allow it: not ours to give.
    message = str(message).replace(" Add the import path to import_path_allowlist in set_parsing_settings to allow it.",
                                   "")
    # 'Parser key "config": File does not exist' on one line is two: the key, then what is wrong with it.
    message = re.sub(r'^(\s*Parser key "[^"]+":) (\S)', r"\1\n\2", str(message), flags=re.M)
    lines = [line.strip() for line in message.splitlines() if line.strip()
             and not re.match(r"- Expected a path but .* either not accessible or invalid$", line.strip())]
    lines = [line.removeprefix("- ") if line.startswith("- Does not validate") else line for line in lines]
    keys = [m.group(1) for line in lines if (m := re.fullmatch(r'Parser key "([^"]+)":', line))]
    rest = [line for line in lines if not re.fullmatch(r'Parser key "[^"]+":', line)
            and not line.startswith("Problem with given class_path")]
    if rest and rest[0].startswith("Does not validate against any of the Union subtypes"):
        text = _class_error(rest) or _union(rest)
    else:
        text = _expected(" ".join(rest) or " ".join(lines))
    if m := re.fullmatch(r"argument (--[\w.]+)(?:/--[\w.]+)?: invalid _boolean_type value: (.*)", text):
        return f"{m.group(1)}: expected true or false, got {m.group(2)}"
    return (f"--{'.'.join(keys)}: " if keys else "") + text


def _class_error(lines: list[str]) -> str | None:
    """A union's report about a class (``Optional[SomeBase]``): one that cannot be found or imported, or the complaint
    its constructor made; None when the report is about a value's type (:func:`_union` says those)."""
    errors = [i for i, line in enumerate(lines) if line.startswith("- ") and "NoneType" not in line]
    if not errors:
        return None
    first = lines[errors[0]][2:]
    given = next((line.partition(": ")[2] for line in lines if line.startswith("Given value: ")), "?")
    if first.startswith("Problem with given class_path") and errors[0] + 1 < len(lines):
        return f"cannot use {given!r} ({lines[errors[0] + 1].removeprefix('- ')})"
    if m := re.fullmatch(r"Import path does not correspond to a subclass of (\w+)", first):
        return f"{given!r} is not a {m.group(1)} subclass"
    if first.startswith("Expected a dot import path string"):
        return f"unknown class {given!r} (a class name --help lists, or an import path like package.module.Class)"
    if first.startswith(("Expected", "expected", "Not of type")):
        return None
    return first  # a constructor's own words, e.g. "batch_size must be a positive integer, got 0"


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
        if "NoneType" in error or error.startswith("Expected a dot import path string") and len(errors) > 1:
            continue  # (a number's alternative "a torch.Tensor class" is never what the user meant)
        if m := re.match(r"Not of type (\w+):", error):
            kinds.append(_RESTRICTED.get(m.group(1), m.group(1)))
        elif m := re.match(r"Expected a typing\.Literal\[(.*)\]", error):  # --steps_per_call's 'auto'
            kinds.append(m.group(1).replace("'", ""))
        elif m := re.fullmatch(r"Expected (?:a )?<class '(?:[\w.]+\.)?(\w+)'>", error):
            kinds.append("a list [a, b, ...]" if m.group(1) in ("list", "Sequence", "tuple") else m.group(1))
        else:  # "Expected a tuple with 2 elements", a Literal's report, ...
            kinds.append(re.sub(r"^[Ee]xpected ", "", _expected(error).split(", got ")[0]))
    if any("NoneType" in error for error in errors):
        kinds.append("null")
    kinds = list(dict.fromkeys(kinds))  # tuple[int, ...] | list[int] is one kind to a person
    return f"expected {' or '.join(kinds)}, got " + (f"'{given}'" if quoted else given)


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
            spare_the_collector(argv)  # the interpreter's exit collects too

    return run


def spare_the_collector(argv: list[str] | None) -> None:
    """On the command line (``argv`` None: the process ends with the command), take every object alive now out of
    the garbage collector's sight (:func:`gc.freeze`).

    Importing torch and Lightning leaves about 440,000 tracked objects, alive until the process ends; a full
    collection walks every one of them, and the interpreter runs full collections while it exits. On the 2-core
    AMD EPYC VM the tutorial run paid 0.18-0.21 s for the one full collection during training, and its exit took
    0.75-0.97 s, 0.11-0.13 s frozen (``scripts/benchmark.py --startup true``, five rounds each). Called from Python
    (``argv`` a list) the caller's process goes on, so its objects stay collectable.
    """
    if argv is None:
        gc.freeze()


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


def command(name: str) -> str:
    """The package's command ``name`` (``fit``, ``predict``, ``make_data``) as a hint tells the user to run it: the
    way they ran this one. ``lr-lightning predict`` under ``lr-lightning`` or ``python -m lr_lightning``
    (:attr:`Parser.command` is set), else ``python scripts/predict.py``.

    >>> command("predict")
    'python scripts/predict.py'
    >>> Parser.command = "lr-lightning export"
    >>> command("make_data")
    'lr-lightning make-data'
    >>> Parser.command = None
    """
    return f"lr-lightning {name.replace('_', '-')}" if Parser.command else f"python scripts/{name}.py"
