"""The solvers ``fit.py --solver NAME`` knows: ``gradient`` (training by gradient descent, the core's own) and every
solver an optional package of ``lr_lightning`` registers.

The extension point: a subpackage ``lr_lightning/<name>/`` with a module ``plugin.py`` is imported on first use (the
command line asks :func:`available`), and that module calls :func:`register` with a :class:`Solver`. The core names
no such package, so deleting one deletes its solver and nothing else: ``--solver`` then lists what is left. A solver
is a set of hooks the command line calls at its steps (the flags it refuses, the module it fits, the data and Trainer
checks, the summary); the defaults here do nothing. Checkpoint readers (predict.py, evaluate.py, export.py) ask every
registered solver about a checkpoint it may have written (:func:`checkpoint_problem`, :func:`aliased_columns`), and
training asks for the optimum to measure itself against (:func:`reference`).

>>> from lr_lightning.core.solvers import Solver, available, register, solver, unregister
>>> class Constant(Solver):
...     name = "constant"
...     help = "predicts the training mean"
>>> register(Constant())
>>> "constant" in available() and solver("constant").help
'predicts the training mean'
>>> unregister("constant")
>>> solver("gradient") is None  # the core's own: training, no hooks
True
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from typing import Any

GRADIENT = "gradient"  # the core's own solver: training with --optimizer
_REGISTERED: dict[str, Solver] = {}
_discovered = False


class Solver:
    """A ``--solver`` other than ``gradient``: override the hooks it needs (each default does nothing).

    ``name`` is the flag's value, ``help`` one line for ``fit.py --help``. A solver's run saves ``last.ckpt`` at the
    end (no best checkpoint: the fit is final) and its test metrics are those of its own module.
    """

    name = ""
    help = ""

    def add_arguments(self, parser: Any) -> None:
        """Add the solver's own flags to ``fit.py``'s (and ``evaluate.py``'s) parser."""

    def check_flags(self, cfg: Any, argv: list[str]) -> None:
        """Refuse (UsageError) what the parsed flags ask that this solver cannot do; called for every registered
        solver, chosen or not (its own flags without it are refused here)."""

    def prepare(self, cfg: Any) -> None:
        """Adjust the config before its objects are built (e.g. the data's dtype)."""

    def build_module(self, cfg: Any, dm: Any) -> Any:
        """The LightningModule that fits ``dm``."""
        raise NotImplementedError

    def check_data(self, module: Any, dm: Any) -> None:
        """Refuse (ValueError) data the solver cannot fit, before the run folder is claimed."""

    def check_trainer(self, module: Any, trainer: Any, dm: Any) -> None:
        """Refuse (ValueError, with ``.setting`` naming the Trainer argument) a Trainer it cannot run under."""

    def report(self, run: Any, seconds: float, metrics: dict[str, float]) -> None:
        """Print the summary of a finished run (``run``: :class:`~lr_lightning.core.run.Run`)."""

    def plot_title(self, module: Any) -> str | None:
        """The title of ``--plot``'s figure (None: the default)."""
        return None

    def resume_problem(self, checkpoint: Any) -> str:
        """Why ``--resume`` cannot continue from ``checkpoint`` (written by this solver), or ''."""
        return ""

    def checkpoint_problem(self, checkpoint: Any) -> str:
        """Why ``checkpoint`` holds no model to predict with (e.g. a fit stopped before its solve), or ''."""
        return ""

    def aliased_columns(self, checkpoint: Any) -> list[str]:
        """The columns a fit in ``checkpoint`` left aliased (not estimated), for the rank-deficient warning."""
        return []

    def reference(self, dm: Any) -> dict[str, Any] | None:
        """The best fit of the training split for training to be measured against (``val/excess_mse``, the summary's
        line): ``{"weight", "bias", "mse": {split: MSE}, "rank", "n_coefficients", "aliased"}``, or None."""
        return None


def register(solver: Solver) -> None:
    """Make ``solver`` a value of ``--solver`` (a plugin module calls this when imported)."""
    if not solver.name or solver.name == GRADIENT:
        raise ValueError(f"a solver needs a name other than {GRADIENT!r}, got {solver.name!r}")
    _REGISTERED[solver.name] = solver


def unregister(name: str) -> None:
    """Forget the solver ``name`` (tests, or a copy that replaces one)."""
    _REGISTERED.pop(name, None)


def discover() -> None:
    """Import ``plugin.py`` of every subpackage of ``lr_lightning`` that has one, once: each registers its solvers.
    The names are computed, so the core names none of the optional packages."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import lr_lightning

    # Looked for as files: a package without a plugin (the tutorial, the benchmark) is not imported at all.
    for info in pkgutil.iter_modules(lr_lightning.__path__):
        if info.ispkg and info.name != "core" and (Path(info.module_finder.path) / info.name / "plugin.py").is_file():
            importlib.import_module(f"{lr_lightning.__name__}.{info.name}.plugin")


def registered() -> list[Solver]:
    """The registered solvers (after :func:`discover`)."""
    discover()
    return list(_REGISTERED.values())


def available() -> list[str]:
    """The values ``--solver`` takes: ``gradient`` first, then the registered solvers."""
    return [GRADIENT, *(s.name for s in registered())]


def solver(name: str) -> Solver | None:
    """The registered solver ``name``; None for ``gradient``. An unknown name is a ValueError listing the known."""
    if name == GRADIENT:
        return None
    discover()
    if name not in _REGISTERED:
        raise ValueError(f"unknown solver {name!r} (available: {', '.join(available())})")
    return _REGISTERED[name]


def checkpoint_problem(checkpoint: Any) -> str:
    """Why ``checkpoint`` holds no model to predict with, as the solver that wrote it says ('' if it does)."""
    return next((p for s in registered() if (p := s.checkpoint_problem(checkpoint))), "")


def resume_problem(checkpoint: Any) -> str:
    """Why ``--resume`` cannot continue training from ``checkpoint`` ('' if it can, as far as the solvers know)."""
    return next((p for s in registered() if (p := s.resume_problem(checkpoint))), "")


def aliased_columns(checkpoint: Any) -> list[str]:
    """The columns a solver's fit in ``checkpoint`` left aliased (sorted; empty for a trained model)."""
    return sorted({c for s in registered() for c in s.aliased_columns(checkpoint)})


def reference(dm: Any) -> dict[str, Any] | None:
    """The first registered solver's best fit of ``dm``'s training split (see :meth:`Solver.reference`), or None
    when no solver offers one (a copy without the optional packages trains without ``val/excess_mse``)."""
    return next((r for s in registered() if (r := s.reference(dm)) is not None), None)
