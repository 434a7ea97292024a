"""The command line: ``scripts/fit.py`` runs :func:`fit_main`, ``scripts/predict.py`` runs :func:`predict_main`.

Only the standard library is imported at the top: ``--help`` and flag errors answer at once, before torch
and Lightning take their seconds to load. Bad input gets one line ``error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import shlex
import signal
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    import lightning as L
    import torch

    from lr_lightning.core.data.datamodules import RegressionDataModule
    from lr_lightning.core.regression_module import RegressionModule


class UsageError(ValueError):
    """Bad input found by the CLI itself (a flag, a file, the machine): reported as one line, exit status 2."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in --help, except where the help text states its own (``default: ...``) or there is none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line ``error: ...`` (no usage dump) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def entry_point(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """``fit.py | head`` closes the pipe early: that is the reader's choice, not a crash to show a traceback for."""

    @functools.wraps(main)
    def run(argv: list[str] | None = None) -> int:
        # SIGTERM before or after training ends the command like Ctrl-C does, with one line (during training,
        # reliability.StopOnSignal takes it over and saves a resumable checkpoint first).
        previous = _take_sigterm()
        try:
            code = main(argv)
            sys.stdout.flush()  # a closed pipe surfaces here, not in the interpreter's final flush
            return code
        except (KeyboardInterrupt, Terminated) as e:  # outside training, which stops at a step end with a checkpoint
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


# ---------------------------------------------------------------------------------------------- flags
def fit_parser() -> Parser:
    p = Parser(prog="fit.py", description="Train linear regression with PyTorch Lightning. With no arguments: "
               "the classic tutorial (x = 1, 2, 3, 4; y = 2x) on the best available device.",
               formatter_class=HelpFormatter)
    p.add_argument("--config", type=Path, help="YAML file with the same keys as the flags (max_epochs: 50 or "
                   "max-epochs: 50); flags given on the command line override it")
    d = p.add_argument_group("data")
    d.add_argument("--data", default="tutorial", help="tutorial | synthetic | a .csv file | a .npy file or a "
                   "directory of .npy shards (memory-mapped, read block by block; see scripts/make_data.py)")
    d.add_argument("--target", help="target column: a CSV column name or a .npy column index (default: the last)")
    d.add_argument("--in-memory", action="store_true", help="load .npy data into memory (on the GPU with "
                   "--accelerator gpu) instead of memory-mapping it: faster when it fits")
    d.add_argument("--n-samples", type=int, help="synthetic data: number of samples (default: 1000)")
    d.add_argument("--n-features", type=int, help="synthetic data: number of features (default: 1)")
    d.add_argument("--noise", type=float, help="synthetic data: standard deviation of the noise (default: 0.1)")
    d.add_argument("--val-fraction", type=float, help="fraction held out for validation "
                   "(default: 0.2; 0 for the 4-point tutorial data)")
    d.add_argument("--test-fraction", type=float, default=0.0, help="fraction held out for a final test")
    d.add_argument("--batch-size", type=int, help="per device (DDP: each step trains on batch size × devices × "
                   "nodes samples); default: 32; the whole set (full batch) for the tutorial data and for lbfgs")
    d.add_argument("--standardize", action="store_true", help="centre and scale features and targets with "
                   "training-split statistics; predictions and checkpoints stay in original units")
    d.add_argument("--polynomial-degree", type=int, metavar="D", help="expand each input column into its powers "
                   "up to D (a well-conditioned basis of them); the model stays linear")
    m = p.add_argument_group("model")
    m.add_argument("--model", default="linear", help="linear | mlp | package.module.ClassName (any nn.Module; "
                   "in_features/out_features are filled in from the data; other init arguments go in the config "
                   "as model: {class_path: ..., init_args: {...}})")
    m.add_argument("--hidden", type=int, nargs="+", metavar="WIDTH", help="--model mlp: hidden layer widths "
                   "(default: 64 64)")
    m.add_argument("--activation", default="relu", choices=["relu", "tanh", "gelu", "silu"], help="--model mlp")
    m.add_argument("--compile", action="store_true", help="run the network through torch.compile")
    t = p.add_argument_group("training")
    t.add_argument("--bias", action=argparse.BooleanOptionalAction, help="fit an intercept "
                   "(default: yes; no for the tutorial data, whose model is y = w·x)")
    t.add_argument("--max-epochs", type=int, default=100)
    t.add_argument("--lr", type=float, help="learning rate (default: 0.01; 1.0 for lbfgs)")
    t.add_argument("--optimizer", default="sgd", choices=["sgd", "adam", "lbfgs"],
                   help="lbfgs: full batch, strong-Wolfe line search, for float64 accuracy")
    t.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--scheduler", choices=["cosine", "step", "plateau"], help="learning-rate schedule, stepped "
                   "each epoch: cosine to 0 over --max-epochs, step ×0.1 every third of them, plateau ×0.5 after 5 "
                   "epochs without a better val/loss")
    t.add_argument("--seed", type=int, default=0, help="seeds the split, the shuffle and the initial weights")
    t.add_argument("--stop-below", type=float, metavar="LOSS", help="stop once the epoch's train loss is below LOSS")
    h = p.add_argument_group("hardware")
    h.add_argument("--accelerator", default="auto", help="auto | cpu | gpu | cuda | mps | ...")
    h.add_argument("--devices", default="auto", help="number of devices (per node), a list like 0,1, or auto")
    h.add_argument("--strategy", default="auto", help="auto | ddp (one process per device; on CPU each device is a "
                   "process) | ddp_spawn | ...")
    h.add_argument("--num-nodes", type=int, default=1, help="machines training together (with torchrun or SLURM)")
    h.add_argument("--precision", default="32-true", help="32-true | 64-true (float64) | 16-mixed | bf16-mixed")
    o = p.add_argument_group("output")
    o.add_argument("--log-dir", default="lightning_logs", help="TensorBoard logs and checkpoints go under here")
    o.add_argument("--checkpoint-every", type=int, metavar="N", help="also write last.ckpt every N training steps, "
                   "so an interrupted run loses little (default: about four times an epoch)")
    o.add_argument("--resume", nargs="?", const="last", metavar="PATH", help="continue the newest run under "
                   "--log-dir from its last.ckpt, or from the checkpoint PATH (same flags as the first run)")
    o.add_argument("--figures", type=int, default=5, metavar="N", help="log figures (predictions, the fit) and "
                   "weight histograms to TensorBoard at N evenly spaced epochs; 0: none")
    o.add_argument("--plot", type=Path, metavar="PNG", help="also draw the loss curves and the fit into this PNG "
                   "(needs matplotlib: pip install lr-lightning[plots])")
    o.add_argument("--progress-bar", action=argparse.BooleanOptionalAction,
                   help="show a progress bar (default: when the output is a terminal, not in log files)")
    return p


def parse_fit_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags over the ``--config`` YAML over the defaults."""
    parser = fit_parser()
    pre_parser = argparse.ArgumentParser(add_help=False)  # reads --config alone; errors come from `parser`
    pre_parser.add_argument("--config", type=Path)
    pre, _ = pre_parser.parse_known_args(argv)
    if pre.config is not None:
        parser.set_defaults(**load_config(pre.config, parser))
    return parser.parse_args(argv)


def load_config(path: Path, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The YAML file as flag defaults; keys are the flags' names, with ``-`` or ``_``."""
    import yaml  # small; only needed with --config

    if not path.is_file():
        parser.error(f"--config {path}: no such file")
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        parser.error(f"--config {path}: not valid YAML" + (f" (line {where.line + 1})" if where else ""))
    if not isinstance(config, dict):
        parser.error(f"--config {path}: expected a mapping of flag names to values, got {type(config).__name__}")
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    values = {}
    for key, value in config.items():
        dest = str(key).lstrip("-").replace("-", "_")
        if dest not in actions:
            parser.error(f"--config {path}: unknown key {key!r}; keys are the flags' names, e.g. max_epochs")
        try:
            values[dest] = _config_value(actions[dest], value)
        except (TypeError, ValueError) as e:
            parser.error(f"--config {path}: {key}: {e}")
    return values


def _config_value(action: argparse.Action, value: Any) -> Any:
    """A config value checked and converted as the flag's own parser would (a default is never parsed again)."""
    if action.dest == "model" and isinstance(value, dict):
        return value  # {class_path, init_args}: checked where the network is built
    if value is None:
        return None
    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    many = action.nargs in ("+", "*")
    items = value if many and isinstance(value, list) else [value]
    if many and not isinstance(value, list):
        raise ValueError(f"expected a list, e.g. [{value!r}], got {value!r}")
    out = []
    for item in items:
        if isinstance(item, (list, dict)) or isinstance(item, bool) and action.type in (int, float):
            raise ValueError(f"expected {_kind(action)}, got {item!r}")
        try:
            converted = action.type(str(item)) if action.type is not None else str(item)
        except ValueError:
            raise ValueError(f"expected {_kind(action)}, got {item!r}") from None
        if action.choices is not None and converted not in action.choices:
            raise ValueError(f"expected one of {', '.join(map(str, action.choices))}, got {item!r}")
        out.append(converted)
    return out if many else out[0]


def _kind(action: argparse.Action) -> str:
    return {int: "a whole number", float: "a number"}.get(action.type, "a single value")


# ------------------------------------------------------------------------------------------------ fit
@entry_point
def fit_main(argv: list[str] | None = None) -> int:
    args = parse_fit_args(argv)
    quiet()
    try:
        dm, module, trainer = build_fit(args)
    except (UsageError, ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import torch

    x5 = torch.tensor([[5.0]])
    before = predict_one(module, x5) if dm.n_inputs == 1 else None
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from lr_lightning.core.callbacks import DivergenceError, Interrupted, StopOnSignal

    stop = next(c for c in trainer.callbacks if isinstance(c, StopOnSignal))
    stop.install()  # from here to the summary; during training it waits for the step in flight to end
    start = time.perf_counter()
    try:
        # weights_only: resuming from a checkpoint must not run code hidden in it.
        trainer.fit(module, datamodule=dm, ckpt_path=args.resume_path, weights_only=True)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}  # trainer.test replaces them
        if dm.n_test:
            metrics |= trainer.test(module, datamodule=dm, ckpt_path="best", verbose=False)[0]
    except DivergenceError as e:
        last = _last_checkpoint(trainer)
        print(f"error: {e}" + (f" (last finite weights: {_show(last)})" if last else ""), file=sys.stderr)
        return 1
    except (Interrupted, SIGTERMException) as e:
        if not isinstance(e, Interrupted):  # Lightning's own, raised where ours could not be: SIGTERM outside a step
            e = stop.interrupted(signal.SIGTERM)
        if trainer.is_global_zero:
            print(f"error: {_interrupted(e, argv)}", file=sys.stderr)
        return e.exit_status
    finally:
        stop.restore()
    seconds = time.perf_counter() - start
    if trainer.is_global_zero:  # under DDP every process gets here; one summary is enough
        print_summary(args, dm, module, trainer, seconds, before, metrics)
        if args.plot is not None:
            from lr_lightning.core.figures import LossHistory, save_png

            history = next(c for c in trainer.callbacks if isinstance(c, LossHistory))
            print(f"Plot: {_show(save_png(args.plot, history, module, dm))}")
    return 0


def _interrupted(e: Any, argv: list[str] | None) -> str:
    """One line: what stopped the run, where its resumable checkpoint is, and the command that continues it."""
    if e.checkpoint is None:
        return f"{e}; stopped before anything was saved, so there is nothing to resume"
    args = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(args):  # drop an earlier --resume [PATH]: the new one names the checkpoint
        if arg == "--resume" or arg.startswith("--resume="):
            has_path = arg == "--resume" and i + 1 < len(args) and not args[i + 1].startswith("--")
            del args[i:i + 1 + has_path]
            break
    script = _show(sys.argv[0]) if argv is None else "scripts/fit.py"  # as the user ran it (argv: from Python)
    command = shlex.join(["python", script, *args, "--resume", _show(e.checkpoint)])
    return f"{e}; saved {_show(e.checkpoint)}; continue with: {command}"


def build_network(args: argparse.Namespace, n_features: int, n_outputs: int, bias: bool) -> torch.nn.Module:
    """The network named by ``--model`` (or the config's ``model: {class_path, init_args}``), sized to the data."""
    import inspect

    from lr_lightning.core.networks import LinearRegression, MLPRegressor

    spec = args.model
    if spec == "mlp":
        return _construct(MLPRegressor, {"in_features": n_features, "hidden": args.hidden or [64, 64],
                                         "out_features": n_outputs, "activation": args.activation}, "--model mlp")
    if args.hidden:
        raise UsageError(f"--hidden applies to --model mlp; give {spec}'s own arguments as init_args in --config")
    if spec == "linear":
        return _construct(LinearRegression, {"in_features": n_features, "out_features": n_outputs, "bias": bias},
                          "--model linear")
    if isinstance(spec, dict):
        if set(spec) - {"class_path", "init_args"} or not isinstance(spec.get("init_args", {}), dict):
            raise UsageError(f"model: expected {{class_path: package.module.Class, init_args: {{...}}}}, got {spec}")
        class_path, init_args = spec.get("class_path", ""), dict(spec.get("init_args") or {})
    else:
        class_path, init_args = str(spec), {}
    if "." not in class_path.strip("."):
        raise UsageError(f"--model {class_path}: expected linear, mlp or package.module.ClassName")
    cls = _import_class(class_path, "--model")
    parameters = inspect.signature(cls).parameters
    # The data decides the sizes (LightningCLI's link_arguments, done by hand): unless the config says otherwise.
    for key, value in (("in_features", n_features), ("out_features", n_outputs)):
        if key in parameters:
            init_args.setdefault(key, value)
    return _construct(cls, init_args, f"--model {class_path}")


def _construct(cls: Any, init_args: dict[str, Any], label: str) -> torch.nn.Module:
    """``cls(**init_args)`` (:func:`construct_network`: a network too large is refused)."""
    from lr_lightning.core.regression_module import construct_network

    try:
        return construct_network(cls, init_args)
    except ValueError as e:
        raise UsageError(f"{label}: {e}") from None


def build_fit(args: argparse.Namespace) -> tuple[RegressionDataModule, RegressionModule, L.Trainer]:
    """Data, model and Trainer from the flags; every bad flag or file raises here, before any training."""
    import lightning as L
    import torch
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
    from lightning.pytorch.loggers import TensorBoardLogger

    from lr_lightning.core.callbacks import (
        AtomicCheckpointIO,
        DivergenceGuard,
        ProgressLines,
        SaveLast,
        StopOnSignal,
        find_last_checkpoint,
    )
    from lr_lightning.core.data.datamodules import (
        CSVDataModule,
        SyntheticDataModule,
        TutorialDataModule,
        datamodule_for_path,
    )
    from lr_lightning.core.figures import LossHistory, TensorBoardFigures, have_matplotlib
    from lr_lightning.core.regression_module import RegressionModule, read_checkpoint, single_linear
    from lr_lightning.exact.solver import RankDeficientWarning

    if args.plot is not None and not have_matplotlib():
        raise UsageError(f"--plot {args.plot}: needs matplotlib; pip install 'lr-lightning[plots]'")
    if args.plot is not None and (args.plot.is_dir() or any(p.exists() and not p.is_dir() for p in
                                                            args.plot.parents)):
        raise UsageError(f"--plot {args.plot}: is a directory or lies under a file; name a .png file to write")
    if args.stop_below is not None and not (math.isfinite(args.stop_below) and args.stop_below > 0):
        raise UsageError(f"--stop-below {args.stop_below}: must be a finite loss > 0 (a loss is never below 0)")
    if args.activation != "relu" and args.model != "mlp":
        raise UsageError(f"--activation applies to --model mlp; give {args.model}'s own arguments in --config")
    for flag, value in (("--n-samples", args.n_samples), ("--n-features", args.n_features), ("--noise", args.noise)):
        if value is not None and args.data != "synthetic":  # it would be ignored without a word
            raise UsageError(f"{flag} applies to --data synthetic, not to {args.data}")
    if args.target is not None and args.data in ("tutorial", "synthetic"):
        raise UsageError(f"--target applies to data from a file; {args.data} data has one target")
    args.resume_path = None
    if args.resume is not None:
        found = find_last_checkpoint(args.log_dir) if args.resume == "last" else Path(args.resume)
        if found is None or not found.is_file():
            where = f"no last.ckpt under --log-dir {args.log_dir}" if args.resume == "last" else "no such file"
            raise UsageError(f"--resume {args.resume}: {where}")
        try:  # refuse what is not one of our checkpoints (or would run code when unpickled) before training
            resume_state = read_checkpoint(found)
            if not isinstance(resume_state, dict) or "loops" not in resume_state:
                raise ValueError("it holds no training state (was it saved with weights only?)")
        except ValueError as e:
            raise UsageError(f"--resume {found}: not a checkpoint written by fit.py ({e})") from None
        args.resume_path = found
    has_gpu = torch.cuda.is_available() or torch.backends.mps.is_available()
    if args.accelerator in ("gpu", "cuda") and not has_gpu:
        raise UsageError(f"--accelerator {args.accelerator}: no GPU is visible to torch on this machine; "
                         "use --accelerator cpu (or auto)")
    from lightning.pytorch.accelerators import AcceleratorRegistry

    known = sorted(AcceleratorRegistry.available_accelerators())
    if args.accelerator not in ("auto", "gpu", *known):
        raise UsageError(f"--accelerator {args.accelerator}: unknown; choose auto, gpu or one of {', '.join(known)}")
    if args.accelerator in known and not AcceleratorRegistry[args.accelerator]["accelerator"].is_available():
        raise UsageError(f"--accelerator {args.accelerator}: not available on this machine; use --accelerator cpu "
                         "(or auto)")
    devices = _devices(args.devices)
    if isinstance(devices, int):
        on_gpu = args.accelerator in ("gpu", "cuda") or (args.accelerator == "auto" and torch.cuda.is_available())
        available = torch.cuda.device_count() if on_gpu else os.cpu_count() or 1
        if not 1 <= devices <= available:
            kind = "GPUs" if on_gpu else "CPU cores"
            raise UsageError(f"--devices {devices}: this machine has {available} {kind}; use at most {available}")
    if args.num_nodes < 1:
        raise UsageError(f"--num-nodes must be >= 1, got {args.num_nodes}")
    if args.num_nodes > 1 and not any(v in os.environ for v in CLUSTER_VARIABLES):
        # Without a launcher, the first process would wait for the other machines forever.
        raise UsageError(f"--num-nodes {args.num_nodes}: no cluster launcher found; run the same command on each "
                         "machine under torchrun or SLURM (README: Several devices, several machines)")
    if args.max_epochs < -1:
        raise UsageError(f"--max-epochs must be >= 0 (or -1 for no limit), got {args.max_epochs}")
    from lr_lightning.core.data.datamodules import SEED_MAX

    if not 0 <= args.seed <= SEED_MAX:
        raise UsageError(f"--seed {args.seed}: must be a whole number from 0 to {SEED_MAX}")
    L.seed_everything(args.seed, verbose=False)
    dtype = torch.float64 if str(args.precision).startswith("64") else torch.float32
    data_kwargs: dict[str, Any] = {"seed": args.seed, "dtype": dtype, "test_fraction": args.test_fraction}
    if args.val_fraction is not None:
        data_kwargs["val_fraction"] = args.val_fraction
    if args.batch_size is not None:
        data_kwargs["batch_size"] = args.batch_size
    bias = args.data != "tutorial" if args.bias is None else args.bias
    data_kwargs |= {"standardize": args.standardize, "polynomial_degree": args.polynomial_degree, "bias": bias}
    if args.data == "tutorial":
        dm = TutorialDataModule(**data_kwargs)
    elif args.data == "synthetic":
        synthetic = {"n_samples": args.n_samples, "n_features": args.n_features, "noise": args.noise}
        dm = SyntheticDataModule(**{k: v for k, v in synthetic.items() if v is not None}, **data_kwargs)
    else:
        cls = datamodule_for_path(args.data)
        if cls is not CSVDataModule:  # a CSV is always read into memory
            data_kwargs["in_memory"] = args.in_memory
        dm = cls(args.data, args.target, **data_kwargs)
    if args.optimizer == "lbfgs" and args.batch_size is None:
        # LBFGS's line search needs the same (full-batch) loss at every evaluation; hparams record what ran.
        dm.batch_size = dm.hparams["batch_size"] = dm.n_samples
    lr = args.lr if args.lr is not None else (1.0 if args.optimizer == "lbfgs" else 0.01)

    dm.setup("fit")  # fits the feature map (if any) on the training split, so the module has it from the start
    normalization = dm.feature_map.spec if dm.feature_map is not None else None
    model = build_network(args, dm.n_features, dm.n_outputs, bias)
    module = RegressionModule(model, normalization=normalization, lr=lr, optimizer=args.optimizer,
                              momentum=args.momentum, weight_decay=args.weight_decay, scheduler=args.scheduler,
                              compile=args.compile)
    monitor = "val/loss" if dm.n_val else "train/loss"
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every must be >= 1, got {args.checkpoint_every}")
    every = args.checkpoint_every or 1  # set below, from the steps per epoch, once the number of processes is known
    plain_sgd = args.optimizer == "sgd" and not args.momentum
    if not dm.table.streamed and (dm.n_val or single_linear(model) is not None):
        # The least-squares reference (val/excess_mse, the summary's "least squares" line) is computed here, once
        # (it is cached): whatever it cannot solve is reported now as bad input, not after training, and a rank
        # warning comes once per run, from the first process only.
        from lightning.fabric.utilities.rank_zero import _get_rank

        with warnings.catch_warnings():
            if _get_rank() or 0:
                warnings.simplefilter("ignore", RankDeficientWarning)
            try:
                _optimum(dm)
            except ValueError as e:
                raise UsageError(f"{args.data}: the least-squares reference on the training split: {e}") from None
    if args.resume_path is not None:
        # Before any training, in the words of the setting that differs (not a size mismatch mid-restore).
        module.check_resumable(resume_state, dm)
        # A run resumed into its own folder finds its checkpoints there: that is the point, not a warning.
        warnings.filterwarnings("ignore", r"Checkpoint directory .* exists and is not empty")
    figures = TensorBoardFigures(times=args.figures)  # its checks before the run folder is claimed
    logger = TensorBoardLogger(args.log_dir, name="", version=_run_version(args))
    checkpoints = Path(logger.log_dir) / "checkpoints"
    saver = SaveLast(checkpoints, every_n_steps=every)
    callbacks: list[L.Callback] = [
        ModelCheckpoint(checkpoints, monitor=monitor, mode="min", filename="best", auto_insert_metric_name=False,
                        enable_version_counter=False),
        # last.ckpt every `every` steps and at each epoch's end, so that a killed run resumes close to where it
        # stopped; the guard runs first and refuses to let broken weights into it.
        DivergenceGuard(stable_lr=functools.partial(dm.stable_lr, bias) if plain_sgd else None),
        saver,
        StopOnSignal(saver),  # after the saver: a signal's checkpoint is the step's own
        figures,
        LossHistory(),
    ]
    if args.scheduler is not None:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))  # the schedule, as a curve: lr-SGD
    if args.stop_below is not None:
        # EarlyStopping's threshold is the tutorial's `if loss < 0.001: break`; patience is not wanted here.
        callbacks.append(EarlyStopping("train/loss", mode="min", stopping_threshold=args.stop_below,
                                       patience=sys.maxsize, check_on_train_epoch_end=True))
    progress_bar = sys.stderr.isatty() if args.progress_bar is None else args.progress_bar
    if progress_bar:
        # Redraw when the numbers it shows change (every log_every_n_steps), not every step: a redraw formats
        # the metrics, which on a GPU also waits for them.
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, min(50, math.ceil(dm.n_train / dm.batch_size)))))
    else:
        callbacks.append(ProgressLines())
    try:
        trainer = L.Trainer(
            accelerator=args.accelerator, devices=devices, num_nodes=args.num_nodes, strategy=args.strategy,
            precision=args.precision, max_epochs=args.max_epochs, logger=logger, callbacks=callbacks,
            plugins=[AtomicCheckpointIO()], enable_progress_bar=progress_bar, enable_model_summary=False,
        )
    except (MisconfigurationException, ValueError, RuntimeError, ImportError) as e:
        with contextlib.suppress(OSError):  # nothing ran: give back the run folder (and --log-dir, if it was new)
            Path(logger.log_dir).rmdir()
            if args.created_log_dir:
                Path(args.log_dir).rmdir()
        raise UsageError(f"--accelerator {args.accelerator} --devices {args.devices} --strategy {args.strategy} "
                         f"--num-nodes {args.num_nodes} --precision {args.precision}: "
                         f"{str(e).splitlines()[0]}") from None
    # Steps per epoch shrink with the number of processes, and log_every_n_steps and the checkpoint interval too.
    trainer.log_every_n_steps = max(1, min(50, math.ceil(dm.n_train / (dm.batch_size * trainer.world_size))))
    if args.checkpoint_every is None:
        steps = math.ceil(dm.n_train / (dm.batch_size * trainer.world_size))
        saver.every_n_steps = max(1, steps // 4)
    return dm, module, trainer


@functools.lru_cache(maxsize=2)
def _optimum(dm: RegressionDataModule) -> dict[str, Any]:
    """The least-squares fit on the training split (raw inputs, the same model) and its MSE on each split, computed
    once per datamodule (a rank-deficient split warns once). It was ``RegressionDataModule.optimum``; the datamodule
    no longer solves anything (#13), and this stays here until the command line takes it from lr_lightning.exact."""

    from lr_lightning.core.basis import polynomial_features
    from lr_lightning.exact.solver import least_squares

    x, y = (t.numpy() for t in dm.raw_split("train"))  # views: least_squares widens chunk by chunk
    fit = least_squares(x, y, bias=dm.bias, polynomial_degree=dm.polynomial_degree, names=dm.feature_names)
    weight, bias = fit
    mse = {}
    for name in ("test", "val", "train"):
        xs, ys = dm.raw_split(name)
        if len(xs):  # in chunks: no float64 copy of a whole split
            sse = sum(float(((polynomial_features(xs[i:i + 65536].double().numpy(), dm.polynomial_degree) @ weight.T
                              + (bias if bias is not None else 0) - ys[i:i + 65536].double().numpy()) ** 2).sum())
                      for i in range(0, len(xs), 65536))
            mse[name] = sse / (len(xs) * ys.shape[1])
    return {"weight": weight, "bias": bias, "mse": mse, "rank": fit.rank, "n_coefficients": fit.n_coefficients,
            "dependent": fit.dependent}


# Set by the launchers Lightning works with on several machines: torchrun, SLURM, LSF, MPI, or by hand.
CLUSTER_VARIABLES = ("WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "SLURM_NTASKS", "LSB_JOBID", "OMPI_COMM_WORLD_SIZE")
RUN_VERSION = "LR_LIGHTNING_RUN_VERSION"  # the run folder rank 0 claimed, for the DDP processes it starts


def _run_version(args: argparse.Namespace) -> int | str:
    """The run's folder under ``--log-dir``: the resumed run's own (its curves continue there), or a new one,
    claimed atomically by rank 0 (two runs started together must not share one) and passed on to the processes
    it starts for DDP."""
    from lightning.fabric.utilities.rank_zero import _get_rank

    from lr_lightning.core.callbacks import claim_version

    path = args.resume_path
    log_dir = Path(args.log_dir)
    args.created_log_dir = False
    if path is not None and path.parent.name == "checkpoints" and path.resolve().parent.parent.parent == \
            log_dir.resolve():
        return path.parent.parent.name
    if (_get_rank() or 0) != 0:  # DDP: rank 0 has claimed it (torchrun on another node: rank 0 of the job writes)
        return os.environ.get(RUN_VERSION, "version_unclaimed")
    args.created_log_dir = not log_dir.exists()
    try:
        version = claim_version(log_dir)
    except ValueError as e:
        raise UsageError(f"--log-dir {e}") from None
    os.environ[RUN_VERSION] = f"version_{version}"
    return version


def _equation(weight: Any, bias: float | None, names: list[str], shown: int = 8) -> str:
    """``+0.5·x0 -1.2·x1 … (24 more) +0.3``: the first ``shown`` terms of a fitted linear model."""
    terms = " ".join(f"{w:+.6g}·{name}" for w, name in zip(weight[:shown], names[:shown], strict=True))
    more = f" … ({len(names) - shown} more)" if len(names) > shown else ""
    return terms + more + (f" {bias:+.6g}" if bias is not None else "")


def _show(path: str | Path) -> str:
    """A path as short as it can be said: relative to the working directory when it is below it."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _last_checkpoint(trainer: L.Trainer) -> str:
    from lr_lightning.core.callbacks import SaveLast

    saver = next((c for c in trainer.callbacks if isinstance(c, SaveLast)), None)
    return str(saver.path) if saver is not None and saver.path.is_file() else ""


def _devices(value: Any) -> Any:
    """``--devices`` as Lightning takes it: ``auto``, a count, or a list ``0,1``."""
    text = str(value)
    if text == "auto":
        return text
    try:
        devices = [int(v) for v in text.split(",") if v] if "," in text else int(text)
    except ValueError:
        raise UsageError(f"--devices {value}: expected auto, a number or a list like 0,1") from None
    if isinstance(devices, list) and (not devices or len(set(devices)) < len(devices) or min(devices) < 0):
        raise UsageError(f"--devices {value}: a list names each device once, by its index (0, 1, ...)")
    return devices


def predict_one(module: torch.nn.Module, x: torch.Tensor) -> list[float]:
    """The module's prediction for one input row, wherever the module now lives."""
    import torch

    p = next(module.parameters())
    with torch.no_grad():
        return module(x.to(device=p.device, dtype=p.dtype)).flatten().tolist()


def print_summary(args: argparse.Namespace, dm: RegressionDataModule, module: RegressionModule, trainer: L.Trainer,
                  seconds: float, before: list[float] | None, metrics: dict[str, float]) -> None:
    import torch

    source = args.data if args.data in ("tutorial", "synthetic") else Path(args.data).name
    device = trainer.strategy.root_device
    print(f"\nTrained {type(module.model).__name__} on {source} data ({dm.n_train} train, {dm.n_val} val, "
          f"{dm.n_test} test samples) for {trainer.current_epoch} epochs on {device.type} in {seconds:.1f} s")
    if trainer.world_size > 1:
        print(f"  {trainer.world_size} processes ({trainer.num_nodes} node(s) × {trainer.num_devices} devices, "
              f"{trainer.strategy.__class__.__name__}): batch size {dm.batch_size} per device, "
              f"{dm.batch_size * trainer.world_size} per step")
    if trainer.early_stopping_callback is not None and trainer.early_stopping_callback.stopped_epoch:
        print(f"  stopped early: train/loss fell below {args.stop_below}")
    try:
        w, b = module.coefficients()  # in raw units and raw powers, whatever the feature map
    except ValueError:
        w = b = None
    names = [f"{name}^{p}" if p > 1 else name for name in dm.feature_names for p in range(1, (dm.polynomial_degree
                                                                                              or 1) + 1)]
    if w is not None:
        for j, target in enumerate(dm.target_names):
            print(f"  {target} = {_equation(w[j], b[j] if b is not None else None, names)}"
                  + ("   (no bias: --bias fits one)" if b is None else ""))
        if hasattr(dm, "true_weight"):
            true = " ".join(f"{v:+.4f}" for v in dm.true_weight[0, :8].tolist())
            more = " …" if dm.true_weight.shape[1] > 8 else ""
            print(f"  true weights {true}{more}, true bias {dm.true_bias.item():+.4f}")
    shown = ["train/loss", "val/loss", "val/mae", "val/r2", "test/loss", "test/mae", "test/r2"]
    if any(k in metrics for k in shown):  # none after --max-epochs 0
        print("  " + ", ".join(f"{k} {metrics[k]:.6g}" for k in shown if k in metrics))
    if w is not None and not dm.table.streamed:
        # The best linear fit on the same training rows: how far did training get?
        opt = _optimum(dm)
        split = "val" if "val" in opt["mse"] else "train"
        ours = metrics.get("val/loss", metrics.get("train/loss"))
        if split == "train" and dm.feature_map is not None:
            ours = None  # train/loss is in standardized units then: no gap in original units to show
        equation = _equation(opt["weight"][0], opt["bias"][0] if opt["bias"] is not None else None, names)
        # With dependent columns many fits are equally good; the one shown is the minimum-norm one (say so).
        deficient = f" (rank {opt['rank']} of {opt['n_coefficients']}: minimum norm)" if opt["dependent"] else ""
        print(f"  least squares: {dm.target_names[0]} = {equation}{deficient}, {split} MSE {opt['mse'][split]:.6g}"
              + (f"; gap {ours - opt['mse'][split]:+.3g}" if ours is not None else ""))
    if before is not None:
        after = predict_one(module, torch.tensor([[5.0]]))
        print(f"  prediction for x = 5: {before[0]:.4f} before training, {after[0]:.4f} after")
    ckpt, last = trainer.checkpoint_callback, _last_checkpoint(trainer)
    if last:
        best = f", best ({ckpt.monitor}) {_show(ckpt.best_model_path)}" if ckpt and ckpt.best_model_path else ""
        print(f"Checkpoints: last {_show(last)}{best}")
    if trainer.logger is not None:
        print(f"Logs: {trainer.logger.log_dir}")
        print(f"View the curves: tensorboard --logdir {args.log_dir}")


# -------------------------------------------------------------------------------------------- predict
def predict_parser() -> Parser:
    p = Parser(prog="predict.py", description="Predict with a checkpoint written by fit.py. Prints CSV: the inputs "
               "and one predicted_<target> column per output.")
    p.add_argument("--ckpt", type=Path, required=True, help="a .ckpt file (e.g. .../checkpoints/last.ckpt)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--x", nargs="+", metavar="V", help="input values, row after row, in the checkpoint's feature "
                     "order; finite numbers")
    src.add_argument("--csv", type=Path, help="a CSV with a header row naming the feature columns: matched by name, "
                     "in any order; other columns are ignored; lines starting with # are comments")
    p.add_argument("--no-header", action="store_true", help="--csv has no header row: its columns are the "
                   "checkpoint's features, in the checkpoint's order (a first row of numbers is refused without it)")
    p.add_argument("--trust", action="append", default=[], metavar="package.module.ClassName",
                   help="a network class of yours that the checkpoint may rebuild (repeatable). Only this package's "
                   "networks are trusted otherwise; importing your module runs its code, so name only your own")
    return p


@entry_point
def predict_main(argv: list[str] | None = None) -> int:
    args = predict_parser().parse_args(argv)
    quiet()
    try:
        if args.no_header and args.csv is None:
            raise UsageError("--no-header applies to --csv (a CSV file without a header row)")
        trusted = [_import_class(name, "--trust") for name in args.trust]
        module, features, targets = load_for_prediction(args.ckpt, trusted)
        x = _predict_inputs(args, features, next(module.parameters()).dtype)
        preds = _predictions(module, x)
    except (UsageError, ValueError, FileNotFoundError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(",".join(features + [f"predicted_{t}" for t in targets]))
    for row, pred in zip(x.tolist(), preds.tolist(), strict=True):
        print(",".join(f"{v:.6g}" for v in row + pred))
    return 0


def _import_class(path: str, flag: str) -> type:
    """The ``nn.Module`` class ``package.module.ClassName`` that the user named on the command line.

    Importing it runs the module's code, which is the user's decision when they name it. As with ``python -m``, the
    directory the command runs from is importable.
    """
    import importlib

    from torch import nn

    module_name, _, name = path.rpartition(".")
    if not module_name or not name:
        raise UsageError(f"{flag} {path}: expected package.module.ClassName")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"{flag} {path}: cannot import it ({e})") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise UsageError(f"{flag} {path}: not an nn.Module class")
    return cls


def load_for_prediction(path: Path, trusted: list[type] | None = None) -> tuple[RegressionModule, list[str], list[str]]:
    """The module from a checkpoint, and the feature and target names of the data it was trained on.

    Everything read from the file is checked before it is used, with one line naming what is wrong: the network's
    class must be trusted (this package's networks, or ``trusted``), the weights must fit it and be finite, and the
    names must be unique strings, as many as the network has inputs and outputs.

    Args:
        path: the checkpoint.
        trusted: further network classes the checkpoint may rebuild (``--trust``).
    """

    import torch

    from lr_lightning.core.regression_module import RegressionModule, read_checkpoint, unknown_hyperparameters

    if not path.is_file():
        what = "is a directory" if path.is_dir() else "not a regular file" if path.exists() else "no such file"
        raise FileNotFoundError(f"--ckpt {path}: {what}")
    try:
        ckpt = read_checkpoint(path)  # weights_only: a checkpoint from someone else must not run code
    except ValueError as e:
        raise UsageError(f"--ckpt {path}: not a checkpoint written by fit.py ({e})") from None
    if not (isinstance(ckpt, dict) and isinstance(ckpt.get("hyper_parameters"), dict)
            and isinstance(ckpt.get("state_dict"), dict)):
        raise UsageError(f"--ckpt {path}: not a checkpoint written by fit.py (no hyper_parameters and state_dict)")
    hparams = ckpt["hyper_parameters"]
    unknown = unknown_hyperparameters(hparams)
    if unknown:
        raise UsageError(f"--ckpt {path}: not a checkpoint written by fit.py (unknown hyperparameters "
                         f"{', '.join(unknown)})")
    try:
        module = RegressionModule(**hparams, trusted=trusted or ())
        module.load_state_dict(ckpt["state_dict"])
    except (ValueError, TypeError) as e:
        raise UsageError(f"--ckpt {path}: {e}") from None
    for key, value in ckpt["state_dict"].items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise UsageError(f"--ckpt {path}: {key!r} holds non-finite values (nan or inf); the run that wrote it "
                             "diverged")
    module.eval()
    data = ckpt.get("datamodule_hyper_parameters", {})
    if not isinstance(data, dict):
        raise UsageError(f"--ckpt {path}: datamodule_hyper_parameters is a {type(data).__name__}, not a mapping")
    n_in = _network_inputs(module)
    features = _checkpoint_names(path, data.get("feature_names"), "feature_names", n_in, "input(s)")
    n_in = len(features) if features is not None else n_in
    if n_in is None:
        raise UsageError(f"--ckpt {path}: cannot tell how many inputs the network {type(module.model).__name__} "
                         "takes (no feature_names, no in_features)")
    n_out = _network_outputs(path, module, n_in)
    targets = _checkpoint_names(path, data.get("target_names"), "target_names", n_out, "output(s)")
    features = features or [f"x{i}" for i in range(n_in)]
    targets = targets or (["y"] if n_out == 1 else [f"y{i}" for i in range(n_out)])
    return module, features, targets


def _network_inputs(module: RegressionModule) -> int | None:
    """How many raw input columns the module takes, as far as it says: the feature map's, or ``in_features``."""
    if module.feature_map is not None:
        return len(module.feature_map.spec["centre"])
    n = getattr(module.model, "in_features", None)
    if isinstance(n, int) and not isinstance(n, bool):
        return n
    first = next(module.model.parameters(), None)  # the first layer's (out, in) weight, for other networks
    return first.shape[-1] if first is not None and first.ndim == 2 else None


def _network_outputs(path: Path, module: RegressionModule, n_in: int) -> int:
    """Run the module on one row of zeros: it must take ``n_in`` columns and return ``(1, n_outputs)``."""
    import torch

    try:
        with torch.no_grad():
            out = module(torch.zeros(1, n_in, dtype=next(module.parameters()).dtype))
    except Exception as e:  # a network that does not take n_in columns: torch says so in a multi-line error
        raise UsageError(f"--ckpt {path}: the network {type(module.model).__name__} fails on one row of {n_in} "
                         f"input(s) ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UsageError(f"--ckpt {path}: the network returns {shape} for one row of inputs; expected (1, outputs)")
    return out.shape[1]


def _checkpoint_names(path: Path, names: Any, key: str, n: int | None, what: str) -> list[str] | None:
    """``names`` from the checkpoint, checked: None, or ``n`` unique non-empty strings."""
    if names is None:
        return None
    if not isinstance(names, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in names):
        raise UsageError(f"--ckpt {path}: {key} must be a list of non-empty strings, got {names!r:.80}")
    if len(set(names)) != len(names):
        twice = next(v for v in names if names.count(v) > 1)
        raise UsageError(f"--ckpt {path}: {key} names {twice!r} twice")
    if n is not None and len(names) != n:
        raise UsageError(f"--ckpt {path}: {key} has {len(names)} name(s) ({', '.join(names)}), but the network has "
                         f"{n} {what}")
    return list(names)


def _predict_inputs(args: argparse.Namespace, features: list[str], dtype: torch.dtype) -> Any:
    """The input rows, columns in the checkpoint's feature order; every value finite in the model's dtype."""
    import numpy as np
    import torch

    from lr_lightning.core.data.tables import MissingHeaderError, parse_number, read_csv_table

    # A value beyond the dtype's range becomes inf when cast to it: refused as inf is.
    max_abs = float(torch.finfo(dtype).max)
    if args.csv is not None:
        try:
            _, data = read_csv_table(args.csv, features, header=not args.no_header, max_abs=max_abs)
        except MissingHeaderError as e:
            raise UsageError(f"{e}, or pass --no-header to take its columns as the checkpoint's features in order "
                             f"({', '.join(features)})") from None
        return data
    n = len(features)
    values = []
    for i, text in enumerate(args.x):
        where = f"--x value {i + 1} ({text!r}"
        where += f", row {i // n + 1}, feature {features[i % n]!r})" if n > 1 else ")"
        try:
            v = parse_number(text)
        except ValueError:
            raise UsageError(f"{where}: not a number") from None
        if not math.isfinite(v):
            raise UsageError(f"{where}: not a finite number")
        if abs(v) > max_abs:
            raise UsageError(f"{where}: beyond ±{max_abs:.6g}, the range of the model's {str(dtype).split('.')[-1]}")
        values.append(v)
    if len(values) % n:
        raise UsageError(f"--x: {len(values)} values do not make rows of {n} features ({', '.join(features)})")
    return np.asarray(values, dtype=np.float64).reshape(-1, n)


def _predictions(module: RegressionModule, x: Any) -> Any:
    """The module's predictions for ``x``; refused if one is not finite (finite inputs can still overflow)."""
    import torch

    with torch.no_grad():
        preds = module(torch.as_tensor(x, dtype=next(module.parameters()).dtype))
    bad = (~torch.isfinite(preds)).nonzero()
    if len(bad):
        row, col = bad[0].tolist()
        raise UsageError(f"the prediction for input row {row + 1} is {preds[row, col].item()}: the inputs are beyond "
                         f"what the model's {str(preds.dtype).split('.')[-1]} arithmetic holds")
    return preds


# --------------------------------------------------------------------------------------- from scratch
def from_scratch_parser() -> Parser:
    p = Parser(prog="from_scratch.py", description="The tutorial's stages, from numpy by hand to Lightning, on the "
               "same data: one table of w and loss per epoch, and a check that all stages agree.",
               formatter_class=HelpFormatter)
    p.add_argument("--x", type=float, nargs="+", default=[1.0, 2.0, 3.0, 4.0], metavar="V", help="input values")
    p.add_argument("--true-w", type=float, default=2.0, help="the data is y = true_w·x + true_b")
    p.add_argument("--true-b", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=0.01, help="learning rate")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--print-every", type=int, help="print every N-th epoch (default: about 10 rows)")
    p.add_argument("--bias", action="store_true", help="fit y = w·x + b instead of y = w·x")
    p.add_argument("--stop-below", type=float, metavar="LOSS", help="stop every stage once the loss is below LOSS")
    p.add_argument("--buggy-gradient", action="store_true", help="add a column for the tutorial video's "
                   "np.dot(2*x, y_pred - y).mean(), which is n times too large")
    p.add_argument("--predict-at", type=float, default=5.0, help="x to predict before and after training")
    return p


@entry_point
def from_scratch_main(argv: list[str] | None = None) -> int:
    args = from_scratch_parser().parse_args(argv)
    problems = [f"--lr must be > 0, got {args.lr}" if not args.lr > 0 else "",
                f"--epochs must be >= 1, got {args.epochs}" if args.epochs < 1 else "",
                f"--print-every must be >= 1, got {args.print_every}" if (args.print_every or 1) < 1 else ""]
    if any(problems):
        print(f"error: {next(p for p in problems if p)}", file=sys.stderr)
        return 2
    quiet()
    from lr_lightning.tutorial.from_scratch import STAGES, first_disagreement, numpy_stage, run_stages

    x = args.x
    y = [args.true_w * v + args.true_b for v in x]
    runs = run_stages(x, y, lr=args.lr, epochs=args.epochs, bias=args.bias, stop_below=args.stop_below)
    columns = dict(runs)
    if args.buggy_gradient:
        columns["numpy, buggy gradient"] = numpy_stage(x, y, lr=args.lr, epochs=args.epochs, bias=args.bias,
                                                       stop_below=args.stop_below, buggy_gradient=True)
    model = "y = w·x + b" if args.bias else "y = w·x"
    print(f"Fitting {model} to x = {' '.join(f'{v:g}' for v in x)}, y = {args.true_w:g}·x"
          + (f" {args.true_b:+g}" if args.true_b else "") + f"; lr {args.lr:g}, full batch, float32, from w = 0\n")
    print("epoch | " + " | ".join(f"{name:^21}" for name in columns))
    print("      | " + " | ".join(f"{'w':>9} {'loss':>11}" for _ in columns))
    n = max(len(steps) for steps in columns.values())
    every = args.print_every or max(1, n // 10)
    for epoch in range(1, n + 1):
        if epoch % every and epoch != n and epoch != 1:
            continue
        cells = [f"{s[epoch - 1].w:9.5f} {s[epoch - 1].loss:11.6g}" if epoch <= len(s) else f"{'(stopped)':^21}"
                 for s in columns.values()]
        print(f"{epoch:5d} | " + " | ".join(cells))

    final = runs["numpy"][-1]
    print(f"\nPrediction for x = {args.predict_at:g}: 0.000 before training (w = 0), "
          f"{final.w * args.predict_at + final.b:.3f} after (w = {final.w:.6g}" +
          (f", b = {final.b:.6g})" if args.bias else ")"))
    if args.buggy_gradient:
        buggy, right = columns["numpy, buggy gradient"][0].w, runs["numpy"][0].w
        print(f"Buggy gradient: np.dot(2*x, y_pred - y) already sums over the {len(x)} samples, so .mean() averages "
              f"one number; the step is {len(x)}x too large: w = {buggy:.3f} after epoch 1, not {right:.3f}.")
    problem = first_disagreement(runs, rtol=1e-5)
    if problem:
        print(f"error: the stages disagree by more than 1e-5 (relative) at {problem}", file=sys.stderr)
        return 1
    print(f"All {len(STAGES)} stages agree to 1e-5 (relative) at every epoch.")
    return 0


# ------------------------------------------------------------------------------------------ benchmark
def benchmark_parser() -> Parser:
    p = Parser(prog="benchmark.py", description="Seconds per epoch of (a) a hand-written slicing loop, "
               "(b) Lightning over DataLoader(TensorDataset), (c) this package, on the same data, in one process.",
               formatter_class=HelpFormatter)
    p.add_argument("--n-samples", type=int, default=1_000_000)
    p.add_argument("--n-features", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=3, help="per path; the first is a warm-up, the median of the rest "
                   "counts")
    p.add_argument("--repeats", type=int, default=3, help="rounds through all paths, interleaved so that a machine "
                   "that speeds up or slows down meanwhile affects every path alike")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--paths", nargs="+", default=["loop", "dataloader", "package"],
                   choices=["loop", "dataloader", "package", "barebones"],
                   help="barebones: Lightning's floor, a minimal module under Trainer(barebones=True)")
    p.add_argument("--files", nargs=2, metavar=("SMALL", "BIG"), help="instead: .npy data (scripts/make_data.py) "
                   "in memory vs memory-mapped on SMALL, then memory-mapped on BIG; samples/s and peak RSS")
    p.add_argument("--one-run", nargs=2, metavar=("PATH", "MODE"), help=argparse.SUPPRESS)  # a child of --files
    return p


@entry_point
def benchmark_main(argv: list[str] | None = None) -> int:
    args = benchmark_parser().parse_args(argv)
    quiet()
    import torch

    from lr_lightning.benchmark import speed as benchmark

    if args.accelerator == "gpu" and not torch.cuda.is_available():
        print("error: --accelerator gpu: no CUDA GPU is visible to torch on this machine", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.accelerator == "gpu" else "cpu"
    if args.one_run:
        path, mode = args.one_run
        result, peak = benchmark.run_files(path, in_memory=mode == "in-memory", batch_size=args.batch_size,
                                           epochs=args.epochs, lr=args.lr, accelerator=args.accelerator)
        print(json.dumps({"times": result.epoch_seconds, "loss": result.final_loss, "peak": peak}))
        return 0
    if args.files:
        return _benchmark_files(args, device)
    x, y = benchmark.make_data(args.n_samples, args.n_features)
    common = {"batch_size": args.batch_size, "lr": args.lr}
    runners = {
        "loop": lambda: benchmark.run_loop(x, y, epochs=args.epochs, device=device, **common),
        "dataloader": lambda: benchmark.run_dataloader(x, y, epochs=args.epochs, accelerator=args.accelerator,
                                                       **common),
        "package": lambda: benchmark.run_package(x, y, epochs=args.epochs, accelerator=args.accelerator, **common),
        "barebones": lambda: benchmark.run_barebones(x, y, epochs=args.epochs, accelerator=args.accelerator,
                                                     **common),
    }
    import lightning

    print(f"{args.n_samples:,} samples x {args.n_features} features, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, {benchmark.machine_name(device)}, torch {torch.__version__}, "
          f"lightning {lightning.__version__}")
    runs: dict[str, list] = {path: [] for path in args.paths}
    for round_ in range(1, args.repeats + 1):
        for path in args.paths:
            runs[path].append(runners[path]())
            print(f"  round {round_}, {path}: {runs[path][-1].seconds:.3f} s/epoch", file=sys.stderr)
    print(benchmark.format_table([benchmark.merge(r) for r in runs.values()], args.n_samples))
    return 0


def _benchmark_files(args: argparse.Namespace, device: str) -> int:
    import subprocess

    import lightning
    import torch

    from lr_lightning.benchmark import speed as benchmark
    from lr_lightning.core.data.tables import NpyTable

    small, big = (Path(p) for p in args.files)
    try:
        sizes = {p: (NpyTable(p).n_rows, sum(f.stat().st_size for f in ([p] if p.is_file() else p.glob("*.npy"))))
                 for p in (small, big)}
    except (ValueError, FileNotFoundError) as e:
        print(f"error: --files: {e}", file=sys.stderr)
        return 2
    print(f"batch {args.batch_size}, {args.epochs} epochs per run (the first a warm-up), no validation split, "
          f"{torch.get_num_threads()} threads, {benchmark.machine_name(device)}, torch {torch.__version__}, "
          f"lightning {lightning.__version__}")
    rows = []
    for path, mode in ((small, "in-memory"), (small, "memory-mapped"), (big, "memory-mapped")):
        flags = ["--one-run", str(path), mode, "--batch-size", str(args.batch_size), "--epochs", str(args.epochs),
                 "--lr", str(args.lr), "--accelerator", args.accelerator]
        done = subprocess.run([sys.executable, "-m", "lr_lightning.core.cli", "benchmark", *flags], capture_output=True,
                              text=True)
        if done.returncode != 0:
            print(f"error: the {mode} run on {path} failed:\n{done.stderr[-2000:]}", file=sys.stderr)
            return 1
        out = json.loads(done.stdout.strip().splitlines()[-1])
        result = benchmark.Result(mode, out["times"], out["loss"])
        print(f"  {mode} on {path}: {result.seconds:.2f} s/epoch, peak RSS {out['peak'] / 1e9:.2f} GB",
              file=sys.stderr)
        rows.append((mode, sizes[path][0], sizes[path][1] / 1e9, result, out["peak"]))
    print(benchmark.format_files_table(rows))
    return 0


# ----------------------------------------------------------------------------------------------- nist
def nist_parser() -> Parser:
    default = Path(__file__).resolve().parents[3] / "shared" / "nist-strd"
    p = Parser(prog="nist.py", description="LRE (correct significant digits) of this package on NIST's linear "
               "least-squares reference datasets, NIST-style, with numpy.linalg.lstsq as the well-known reference.",
               formatter_class=HelpFormatter)
    p.add_argument("--data-dir", type=Path, default=default, help="folder of the NIST .dat files")
    p.add_argument("--lbfgs-epochs", type=int, default=50)
    p.add_argument("--sgd-epochs", type=int, default=500)
    return p


@entry_point
def nist_main(argv: list[str] | None = None) -> int:
    args = nist_parser().parse_args(argv)
    if not args.data_dir.is_dir():
        print(f"error: --data-dir {args.data_dir}: no such folder (the NIST StRD .dat files)", file=sys.stderr)
        return 2
    quiet()
    import numpy as np

    from lr_lightning.exact import nist
    from lr_lightning.exact.solver import fit_statistics, least_squares, polynomial_features

    print(f"{'dataset':<9} {'difficulty':<10} {'lstsq raw':>9} {'least_sq':>9} {'resid SD':>9} {'R²':>6} "
          f"{'lbfgs f64':>9} {'sgd f32':>8}")
    for d in nist.load_all(args.data_dir):
        design = polynomial_features(d.x, d.polynomial_degree)
        design = np.column_stack([np.ones(len(design)), design]) if d.bias else design
        reference = np.linalg.lstsq(design, d.y, rcond=None)[0]
        weight, bias = least_squares(d.x, d.y, bias=d.bias, polynomial_degree=d.polynomial_degree)
        ours = nist.in_nist_order(weight, bias)
        sd, r2 = fit_statistics(d.x, d.y, weight, bias, d.polynomial_degree)
        lbfgs = nist.train(d, optimizer="lbfgs", precision="64-true", epochs=args.lbfgs_epochs, lr=1.0)
        sgd = nist.train(d, optimizer="sgd", precision="32-true", epochs=args.sgd_epochs, lr=0.1)
        print(f"{d.name:<9} {d.difficulty:<10} {nist.min_lre(reference, d.certified):9.1f} "
              f"{nist.min_lre(ours, d.certified):9.1f} {nist.lre(sd[0], d.residual_sd):9.1f} "
              f"{nist.lre(r2[0], d.r_squared):6.1f} {nist.min_lre(lbfgs, d.certified):9.1f} "
              f"{nist.min_lre(sgd, d.certified):8.1f}")
    print("LRE: the smallest number of correct significant digits over all certified parameters (15 = all).\n"
          "lstsq raw: numpy.linalg.lstsq on the raw design; least_sq: lr_lightning.least_squares (resid SD, R²: its "
          "residual standard deviation and R²);\nlbfgs f64 / sgd f32: RegressionModule trained with --standardize, "
          "full batch, in float64 with lbfgs / float32 with sgd (lr 0.1).")
    return 0


if __name__ == "__main__":  # `python -m lr_lightning.core.cli benchmark ...`: how --files starts its runs
    sys.exit({"benchmark": benchmark_main}[sys.argv.pop(1)]())
