"""The refusals of flags before training: what the types alone cannot say (``--seed``, ``--devices``, torchrun's
world), untrusted callbacks and loggers, a network that cannot take the data's sizes, a solver's flags and data. Each
is one line naming the flag (a :class:`~lr_lightning.core.commands.UsageError`), raised before any run folder."""

from __future__ import annotations

import contextlib
import importlib
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lr_lightning.core import solvers
from lr_lightning.core.commands import UsageError

if TYPE_CHECKING:
    from jsonargparse import Namespace

    from lr_lightning.core.data import RegressionDataModule

# Set by the launchers Lightning works with on several machines: torchrun, SLURM, LSF, MPI, or by hand.
CLUSTER_VARIABLES = ("WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "SLURM_NTASKS", "LSB_JOBID", "OMPI_COMM_WORLD_SIZE")


def network_sizes_problem(cls: type) -> str | None:
    """Why ``--model cls`` cannot take the data's sizes, or None: the CLI passes them as ``in_features`` and
    ``out_features`` (see LINKED), so a network's ``__init__`` must take ``in_features`` by that name.

    >>> from torch import nn
    >>> class Net(nn.Module):
    ...     def __init__(self, n_inputs: int = 1): super().__init__()
    >>> network_sizes_problem(Net)  # doctest: +ELLIPSIS
    "Net's __init__ takes no in_features (it takes n_inputs): the CLI passes the data's sizes as in_features and ..."
    """
    import inspect

    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return None
    if "in_features" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return None
    takes = ", ".join(parameters) or "nothing"
    return (f"{cls.__name__}'s __init__ takes no in_features (it takes {takes}): the CLI passes the data's sizes as "
            "in_features and out_features; name its arguments so")


def check_network(cfg: Namespace) -> None:
    """A ``--model`` class that cannot take the data's sizes: one line now, before any run folder (it would fail
    mid-way, or silently keep its own default size)."""
    model = cfg.get("model")
    if model is None or not isinstance(model.get("class_path"), str):
        return
    module, _, name = model.class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return  # (the parser has resolved it: not reached)
    if problem := network_sizes_problem(cls):
        raise UsageError(f"--model {model.class_path}: {problem}")


def check_solver(cfg: Namespace, argv: list[str]) -> None:
    """``--solver NAME`` is registered, and every solver accepts the flags given (a solver other than gradient
    refuses training's flags; its own flags need it)."""
    try:
        solvers.solver(cfg.solver)
    except ValueError as e:
        raise UsageError(f"--solver: {e}") from None
    for solver in solvers.registered():
        solver.check_flags(cfg, argv)


def check_flags(cfg: Namespace) -> None:
    """What the types alone cannot say, in one line naming the flag."""
    import torch

    if cfg.stop_below is not None and not (math.isfinite(cfg.stop_below) and cfg.stop_below > 0):
        raise UsageError(f"--stop_below {cfg.stop_below}: must be a finite loss > 0 (a loss is never below 0)")
    if cfg.plot is not None:
        plot = Path(cfg.plot)
        if plot.is_dir() or any(p.exists() and not p.is_dir() for p in plot.parents):
            raise UsageError(f"--plot {cfg.plot}: is a directory or lies under a file; name a .png file to write")
        check_writable("--plot", plot)  # now, not after the whole run has trained
    if not 0 <= cfg.seed <= 2**32 - 1:
        raise UsageError(f"--seed {cfg.seed}: must be a whole number from 0 to {2**32 - 1}")
    if cfg.checkpoint_every is not None and cfg.checkpoint_every < 1:
        raise UsageError(f"--checkpoint_every must be a whole number >= 1, got {cfg.checkpoint_every}")
    if cfg.trainer.get("barebones"):
        # Lightning would refuse it later, quoting the logger object the run passes (an address, not a setting).
        raise UsageError("--trainer.barebones true: turns off what a fit.py run is made of (the TensorBoard logs, "
                         "last.ckpt, the progress lines); for speed, --figures 0 --progress_bar false, or the Python "
                         "API with Trainer(barebones=True)")
    steps = cfg.get("steps_per_call", "auto")
    if steps != "auto" and steps < 1:
        raise UsageError(f"--steps_per_call must be auto or a whole number >= 1, got {steps}")
    if cfg.max_epochs < -1:
        raise UsageError(f"--max_epochs must be >= 0 (or -1 for no limit), got {cfg.max_epochs}")
    if cfg.num_nodes < 1:
        raise UsageError(f"--num_nodes must be >= 1, got {cfg.num_nodes}")
    if cfg.num_nodes > 1 and not any(v in os.environ for v in CLUSTER_VARIABLES):
        # Without a launcher, the first process would wait for the other machines forever.
        raise UsageError(f"--num_nodes {cfg.num_nodes}: no cluster launcher found; run the same command on each "
                         "machine under torchrun or SLURM (README: Several devices, several machines)")
    if cfg.accelerator in ("gpu", "cuda") and not (torch.cuda.is_available() or torch.backends.mps.is_available()):
        raise UsageError(f"--accelerator {cfg.accelerator}: no GPU is visible to torch on this machine; "
                         "use --accelerator cpu (or auto)")
    on_gpu = cfg.accelerator in ("gpu", "cuda") or (cfg.accelerator == "auto" and torch.cuda.is_available())
    _check_torchrun(cfg, on_gpu)
    if isinstance(cfg.devices, int) and not on_gpu and not 1 <= cfg.devices <= (os.cpu_count() or 1):
        # Lightning would start that many processes on the CPU.
        raise UsageError(f"--devices {cfg.devices}: on the CPU, a number of processes from 1 to {os.cpu_count()} "
                         f"(this machine's cores)")


def check_writable(flag: str, path: str | Path) -> None:
    """Raise a one-line UsageError naming ``flag`` unless a file can be written at ``path`` (its missing folders
    created); the probe leaves nothing behind. Checked before the work, so a bad output path costs no run.

    >>> check_writable("--plot", "/proc/nope/p.png")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lr_lightning.core.commands.UsageError: --plot /proc/nope/p.png: cannot write there (...)
    """
    import tempfile

    path = Path(path)
    missing = [p for p in reversed(path.parents) if not p.exists()]
    made: list[Path] = []
    try:
        for folder in missing:
            folder.mkdir()
            made.append(folder)
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as e:
        raise UsageError(f"{flag} {path}: cannot write there ({e.strerror})") from None
    finally:
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()


def _check_torchrun(cfg: Namespace, on_gpu: bool) -> None:
    """Under torchrun, the Trainer's ``--devices`` x ``--num_nodes`` must be torchrun's world, or Lightning stops
    every process with a traceback once the fit starts (and the other machines wait for the missing ones)."""
    import torch

    env = os.environ
    if "TORCHELASTIC_RUN_ID" not in env or not {"WORLD_SIZE", "LOCAL_WORLD_SIZE"} <= env.keys():
        return
    world, local = int(env["WORLD_SIZE"]), int(env["LOCAL_WORLD_SIZE"])
    nodes = world // local  # torchrun's --nnodes (every node runs --nproc-per-node processes)
    if cfg.num_nodes != nodes:
        raise UsageError(f"--num_nodes {cfg.num_nodes}: torchrun started {nodes} node(s) (--nnodes {nodes}); give "
                         "--num_nodes the same number")
    # What Lightning makes of --devices auto: every visible GPU, or one process on the CPU.
    devices = (torch.cuda.device_count() if on_gpu else 1) if cfg.devices == "auto" else cfg.devices
    if isinstance(devices, int) and devices != local:
        raise UsageError(f"--devices {cfg.devices}: torchrun started {local} process(es) on this node "
                         f"(--nproc-per-node {local}); give --devices the same number")


def check_trusted(cfg: Namespace) -> None:
    """A callback or logger from the config runs its code: Lightning's own, or a class named by ``--trust``."""
    named = [(f"--trainer.callbacks {c.class_path}", c.class_path) for c in cfg.trainer.get("callbacks") or []
             if hasattr(c, "class_path")]
    logger = cfg.trainer.get("logger")
    if logger is not None:
        path = logger if isinstance(logger, str) else logger.get("class_path")
        if not isinstance(path, str):
            raise UsageError(f"--trainer.logger {logger}: a logger class (CSVLogger) or {{class_path: ..., "
                             "init_args: ...}}")
        named.append((f"--trainer.logger {path}", path if "." in path else f"lightning.pytorch.loggers.{path}"))
    for flag, path in named:
        if not path.startswith("lightning.") and path not in (cfg.get("trust") or []):
            raise UsageError(f"{flag}: not one of Lightning's own; if you trust its code, add --trust {path}")


def check_solver_data(cfg: Namespace, solver: solvers.Solver, module: Any, dm: RegressionDataModule) -> None:
    """A solver's checks of the data (too few rows, constant columns, non-finite values, drop_last), as one line
    naming the file or flag."""
    try:
        solver.check_data(module, dm)
    except (ValueError, FileNotFoundError) as e:
        message = str(e)
        if message.startswith("drop_last"):
            raise UsageError(f"--data.drop_last true: {message}") from None
        path = getattr(getattr(dm, "table", None), "path", None)
        named = path is not None and (str(path) in message or Path(path).name in message)
        data = f"--data {path}" if path is not None else f"--data {cfg.data.class_path.rpartition('.')[2]}"
        raise UsageError(message if named else f"{data}: {message}") from None
