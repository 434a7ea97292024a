"""One ``fit.py`` run: its parts, run folder, logger, callbacks and Trainer (:func:`build_run`), and the fit with its
summary (:class:`Run`). Bad input raises before any training and gives back the run folder it claimed."""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import shlex
import shutil
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lr_lightning.core import solvers
from lr_lightning.core.commands import Parser, UsageError, command, show
from lr_lightning.core.flag_checks import check_flags, check_solver_data, check_trusted
from lr_lightning.core.parts import build_parts, instantiate

if TYPE_CHECKING:
    import lightning as L
    from jsonargparse import Namespace

    from lr_lightning.core.data import RegressionDataModule
    from lr_lightning.core.regression_module import RegressionModule

RUN_VERSION = "LR_LIGHTNING_RUN_VERSION"  # the run folder rank 0 claimed, for the DDP processes it starts
# The Trainer arguments that are top-level flags; the rest are --trainer.<name>, except those the run sets itself.
ESSENTIALS = {"accelerator": "auto", "devices": "auto", "strategy": "auto", "num_nodes": 1, "precision": "32-true",
              "max_epochs": 100}
SET_BY_THE_RUN = {"logger", "enable_progress_bar", "default_root_dir", "enable_checkpointing"}


class Run:
    """One run: the instantiated parts, and the fit with its summary."""

    def __init__(self, cfg: Namespace, dm: RegressionDataModule, module: RegressionModule, trainer: L.Trainer,
                 resume: Path | None, reference: dict[str, Any] | None, created: bool = False) -> None:
        self.cfg, self.dm, self.module, self.trainer = cfg, dm, module, trainer
        self.resume, self.reference = resume, reference
        self.resumed_at: tuple[int, int] | None = None  # --resume's checkpoint: (epoch from 0, step), for the summary
        self.created = created  # whether the run created --log_dir (given back with the run folder on bad input)
        self.solver = solvers.solver(cfg.get("solver", solvers.GRADIENT))  # None: training by gradient

    def fit(self, argv: list[str] | None) -> int:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        from lr_lightning.core.callbacks import DivergenceError, SaveLast, StopOnSignal
        from lr_lightning.core.runs import Interrupted
        from lr_lightning.core.summary import example_input, predict_one, print_summary

        trainer, module, dm = self.trainer, self.module, self.dm
        solver = self.solver
        before = predict_one(module, example_input(dm)) if dm.n_inputs == 1 and solver is None else None
        stop = next(c for c in trainer.callbacks if isinstance(c, StopOnSignal))
        saver = next(c for c in trainer.callbacks if isinstance(c, SaveLast))
        stop.install()  # from here to the summary; during training it waits for the step in flight to end
        start = time.perf_counter()
        try:
            # weights_only: resuming from a checkpoint must not run code hidden in it.
            trainer.fit(module, datamodule=dm, ckpt_path=self.resume, weights_only=True)
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}  # trainer.test replaces them
            if dm.n_test:
                # fast_dev_run saves no best.ckpt: it tests the weights it has.
                best = None if solver is not None or trainer.fast_dev_run else "best"
                metrics |= trainer.test(module, datamodule=dm, ckpt_path=best, verbose=False)[0]
        except ValueError as e:
            if solver is None:
                raise
            # A solver's ValueError is what only a pass finds (non-finite values in streamed data, too few epochs for
            # the refinements this data needs, max_time running out): bad input, and an unsolved run's folder is
            # nothing to keep.
            if trainer.is_global_zero:
                print(f"error: {_setting_error(self.cfg, e)}", file=sys.stderr)
            _give_back(Path(trainer.logger.log_dir), self.cfg, self.created, written=True)
            return 2
        except DivergenceError as e:
            last = show(saver.path) if saver.path.is_file() else ""
            print(f"error: {e}" + (f" (last finite weights: {last})" if last else ""), file=sys.stderr)
            return 1
        except (Interrupted, SIGTERMException) as e:
            if not isinstance(e, Interrupted):  # Lightning's own, raised where ours could not be: SIGTERM off-step
                e = stop.interrupted(signal.SIGTERM)
            if trainer.is_global_zero:
                print(f"error: {_interrupted(e, argv)}", file=sys.stderr)
            return e.exit_status
        finally:
            stop.restore()
        seconds = time.perf_counter() - start
        if not trainer.is_global_zero:  # under DDP every process gets here; one summary is enough
            return 0
        if solver is not None:
            solver.report(self, seconds, metrics)
        else:
            print_summary(self, seconds, before, metrics)
        if self.cfg.plot is not None:
            from lr_lightning.core.callbacks import LossHistory
            from lr_lightning.core.figures import save_png

            history = next(c for c in trainer.callbacks if isinstance(c, LossHistory))
            title = solver.plot_title(module) if solver is not None else None
            print(f"Plot: {show(save_png(self.cfg.plot, history, module, dm, title))}")
        return 0


def build_run(parser: Parser, cfg: Namespace) -> Run:
    """Data, module and Trainer from the config; every bad flag or file raises here, before any training."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, TQDMProgressBar

    from lr_lightning.core.callbacks import (
        DivergenceGuard,
        LossHistory,
        ProgressLines,
        SaveLast,
        StopOnSignal,
        TensorBoardFigures,
    )
    from lr_lightning.core.figures import have_matplotlib

    check_flags(cfg)
    check_trusted(cfg)
    if cfg.plot is not None and not have_matplotlib():
        raise UsageError(f"--plot {cfg.plot}: needs matplotlib; pip install -e '.[plots]' in a clone "
                         "(pip install matplotlib elsewhere)")
    resume, checkpoint = _resume_checkpoint(cfg)
    L.seed_everything(cfg.seed, verbose=False)
    solver = solvers.solver(cfg.get("solver", solvers.GRADIENT))
    if solver is not None:
        solver.prepare(cfg)
    init = instantiate(parser, cfg)
    dm, module, reference = build_parts(cfg, init)
    if solver is not None:
        check_solver_data(cfg, solver, module, dm)  # before the run folder is claimed: bad data leaves nothing
    if checkpoint is not None:
        # Before any training, in the words of the setting that differs (not a size mismatch mid-restore).
        module.check_resumable(checkpoint, dm.feature_names)
        # A run resumed into its own folder finds its checkpoints there: that is the point, not a warning.
        warnings.filterwarnings("ignore", r"Checkpoint directory .* exists and is not empty")
    figures = TensorBoardFigures(times=cfg.figures)  # its checks before the run folder is claimed
    version, created = _run_version(cfg, resume)
    logger = make_logger(cfg, version)
    checkpoints = Path(logger.log_dir) / "checkpoints"
    if solver is not None:
        # A pass is no training state worth saving mid-way: last.ckpt at each pass's end, the final one solved.
        saver = SaveLast(checkpoints, every_n_steps=2**62)
        callbacks: list[L.Callback] = [saver, StopOnSignal(saver), figures, LossHistory()]
    else:
        saver = SaveLast(checkpoints, every_n_steps=cfg.checkpoint_every)
        plain_sgd = module.hparams.optimizer is not None and \
            module.hparams.optimizer["class_path"].endswith(".SGD") and \
            not (module.hparams.optimizer.get("init_args") or {}).get("momentum")
        callbacks = [
            ModelCheckpoint(checkpoints, monitor=module.hparams.monitor, mode="min", filename="best",
                            auto_insert_metric_name=False, enable_version_counter=False),
            # The guard runs before the saver and refuses to let broken weights into last.ckpt.
            DivergenceGuard(stable_lr=(lambda: dm.stable_lr(dm.bias)) if plain_sgd else None),
            saver,
            StopOnSignal(saver),  # after the saver: a signal's checkpoint is the step's own
            figures,
            LossHistory(),
        ]
    if cfg.lr_scheduler is not None:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))  # the schedule, as a curve
    if cfg.stop_below is not None:
        # EarlyStopping's threshold is the tutorial's `if loss < 0.001: break`; patience is not wanted here.
        callbacks.append(EarlyStopping("train/loss", mode="min", stopping_threshold=cfg.stop_below,
                                       patience=sys.maxsize, check_on_train_epoch_end=True))
    progress_bar = sys.stderr.isatty() if cfg.progress_bar is None else cfg.progress_bar
    # A redraw formats the metrics (on a GPU it also waits for them): redraw when they change.
    callbacks.append(TQDMProgressBar(refresh_rate=cfg.trainer.log_every_n_steps or 50) if progress_bar
                     else ProgressLines())
    trainer = make_trainer(cfg, init.trainer, logger, callbacks, progress_bar, created)
    if solver is not None:
        try:
            solver.check_trainer(module, trainer, dm)
        except ValueError as e:  # nothing ran: give back the run folder
            _give_back(Path(logger.log_dir), cfg, created)
            raise UsageError(_setting_error(cfg, e)) from None
    else:
        _check_steps_per_call(cfg, module, trainer, dm, resume, checkpoint, created)
    if trainer.is_global_zero:
        # The run, repeatable from its folder: fit.py --config lightning_logs/version_N/config.yaml
        parser.save(cfg, Path(logger.log_dir) / "config.yaml", overwrite=True, skip_validation=True)
    run = Run(cfg, dm, module, trainer, resume, reference, created)
    run.resumed_at = (checkpoint["epoch"], checkpoint["global_step"]) if checkpoint else None
    return run


def _check_steps_per_call(cfg: Namespace, module: RegressionModule, trainer: L.Trainer, dm: RegressionDataModule,
                          resume: Path | None, checkpoint: dict[str, Any] | None, created: bool) -> None:
    """``--steps_per_call K`` that this run cannot honour (LBFGS, gradient clipping, a resumed checkpoint's other K):
    one line now, before the run folder fills, not a traceback from inside the fit."""
    from lr_lightning.core.steps_per_call import StepsPerCallModule, check_steps_per_call, saved_steps_per_call

    if not isinstance(module, StepsPerCallModule):  # Lightning's own loop: nothing to check
        return
    requested = None
    try:
        # `auto` resumes with the checkpoint's K (the position in the epoch is restored in calls).
        requested = saved_steps_per_call(checkpoint) if checkpoint is not None and cfg.steps_per_call == "auto" \
            else None
        steps, _ = module.steps_per_call_for(trainer, dm, requested=requested)
        if checkpoint is not None:
            check_steps_per_call(checkpoint, steps == 1, cfg.steps_per_call)
    except ValueError as e:  # nothing ran: give back the run folder
        _give_back(Path(trainer.logger.log_dir), cfg, created)
        if requested is not None:  # `auto` took the checkpoint's K, which this run's settings cannot honour
            raise UsageError(f"--resume {resume}: the checkpoint was trained with steps_per_call {requested}, and "
                             f"{str(e).partition(': ')[2]}") from None
        raise UsageError(re.sub(r"\bsteps_per_call=(\w+)", r"--steps_per_call \1", str(e))) from None


def _resume_checkpoint(cfg: Namespace) -> tuple[Path | None, dict[str, Any] | None]:
    """``--resume``'s checkpoint file and its contents (read once, checked here and by the run's set-up), or Nones."""
    from lr_lightning.core.checkpoints import read_checkpoint
    from lr_lightning.core.runs import find_last_checkpoint

    if cfg.resume is None:
        return None, None
    found = find_last_checkpoint(cfg.log_dir) if cfg.resume == "last" else Path(cfg.resume)
    if found is None or not found.is_file():
        where = f"no last.ckpt under --log_dir {cfg.log_dir}" if cfg.resume == "last" else "no such file"
        raise UsageError(f"--resume {cfg.resume}: {where}")
    try:  # refuse what is not one of our checkpoints (or would run code when unpickled) before training
        state = read_checkpoint(found)
        if not isinstance(state, dict) or "loops" not in state:
            raise ValueError("it holds no training state (was it saved with weights only?)")
    except ValueError as e:
        raise UsageError(f"--resume {found}: not a checkpoint written by fit.py ({e})") from None
    if problem := solvers.resume_problem(state):  # a solver's fit, not training
        raise UsageError(f"--resume {found}: {problem}")
    return found, state


def make_logger(cfg: Namespace, version: int | str) -> Any:
    """``--trainer.logger`` (default: TensorBoard) writing into the run's folder, ``--log_dir``/version_N."""
    import inspect

    given = cfg.trainer.get("logger")
    if given is None:
        from lr_lightning.core.runs import RunLogger  # no placeholder hp_metric, the loss cards first

        return RunLogger(cfg.log_dir, name="", version=version)
    path = given if isinstance(given, str) else given["class_path"]
    module, _, name = (path if "." in path else f"lightning.pytorch.loggers.{path}").rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise UsageError(f"--trainer.logger {path}: {e}") from None
    accepted = inspect.signature(cls).parameters
    run = {"save_dir": cfg.log_dir, "name": "", "version": version, "default_hp_metric": False}
    kwargs = {**{k: v for k, v in run.items() if k in accepted},
              **({} if isinstance(given, str) else dict(given.get("init_args") or {}))}
    try:
        return cls(**kwargs)
    except Exception as e:  # a logger's own complaint (a missing package, a bad argument): one line
        raise UsageError(f"--trainer.logger {path}: {str(e).splitlines()[0]}") from None


def make_trainer(cfg: Namespace, trainer_args: Namespace, logger: Any, callbacks: list, progress_bar: bool,
                 created: bool) -> L.Trainer:
    """The Trainer: the flat essentials, ``--trainer.*`` (with the user's callbacks), and the run's own parts."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    kwargs = {k: v for k, v in vars(trainer_args).items() if k not in ("callbacks", "logger")}
    callbacks = [*(trainer_args.callbacks or []), *callbacks]
    try:
        # No ModelCheckpoint of Lightning's own choosing (epoch=N-step=M.ckpt): the run's are given here.
        return L.Trainer(**{k: cfg[k] for k in ESSENTIALS}, logger=logger, enable_progress_bar=progress_bar,
                         callbacks=callbacks, **kwargs,
                         enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks))
    except Exception as e:  # Lightning's MisconfigurationException, ValueError, RuntimeError, ImportError, ...
        _give_back(Path(logger.log_dir), cfg, created)
        flags = " ".join(f"--{k} {cfg[k]}" for k in ESSENTIALS if cfg[k] != ESSENTIALS[k] and k != "max_epochs")
        # An object Lightning quotes is said by its class: `logger=TensorBoardLogger`, not `<... object at 0x7f...>`.
        message = re.sub(r"<(?:[\w.]+\.)?(\w+) object at 0x[0-9a-fA-F]+>", r"\1", str(e).splitlines()[0])
        raise UsageError(f"{flags or 'Trainer'}: {message}") from None


def _give_back(run_dir: Path, cfg: Namespace, created: bool, *, written: bool = False) -> None:
    """Remove the run folder this run claimed (and ``--log_dir``, if the run created it): bad input leaves no
    version_N behind. ``written``: the folder may hold what a failed run wrote (a solver's fit stopped mid-way: an
    unsolved last.ckpt, its logs), all of it this run's own; otherwise it must be empty."""

    from lightning.pytorch.utilities import rank_zero_only

    if rank_zero_only.rank or run_dir.parent.resolve() != Path(cfg.log_dir).resolve() or \
            not re.fullmatch(r"version_\d+", run_dir.name):
        return  # only rank 0 claimed it, and only a version_N folder directly under --log_dir is the run's
    with contextlib.suppress(OSError):
        if written:
            shutil.rmtree(run_dir)
        else:
            run_dir.rmdir()
        if created:
            Path(cfg.log_dir).rmdir()


def _setting_error(cfg: Namespace, e: ValueError) -> str:
    """A Trainer setting a solver refuses, in the words of its flag: ``--trainer.gradient_clip_val 1: ...``."""
    setting, message = getattr(e, "setting", None), str(e).splitlines()[0]
    if setting is None:
        return message
    flag, value = (f"--{setting}", cfg[setting]) if setting in ESSENTIALS else \
        (f"--trainer.{setting}", cfg.trainer.get(setting))
    value = str(value).lower() if isinstance(value, bool) else value
    if m := re.match(rf"{setting}=\S*: ", message):  # "gradient_clip_val=1.0: ..." says the flag's own value
        message = message[m.end():]
    return f"{flag} {value}: {message}"


def _run_version(cfg: Namespace, resume: Path | None) -> tuple[int | str, bool]:
    """The run's folder under ``--log_dir``: the resumed run's own (its curves continue there), or a new one, claimed
    atomically by rank 0 (two runs started together must not share one) and passed on to the processes it starts
    for DDP. Also whether ``--log_dir`` was created for it."""
    from lightning.pytorch.utilities import rank_zero_only

    from lr_lightning.core.runs import claim_version

    log_dir = Path(cfg.log_dir)
    if resume is not None and resume.parent.name == "checkpoints" and \
            resume.resolve().parent.parent.parent == log_dir.resolve():
        return resume.parent.parent.name, False
    if rank_zero_only.rank:  # DDP: rank 0 has claimed it (torchrun on another node: rank 0 of the job writes)
        return os.environ.get(RUN_VERSION, "version_unclaimed"), False
    created = not log_dir.exists()
    try:
        version = claim_version(log_dir)
    except ValueError as e:
        raise UsageError(f"--log_dir {e}") from None
    os.environ[RUN_VERSION] = f"version_{version}"
    return version, created


def _interrupted(e: Any, argv: list[str] | None) -> str:
    """One line: what stopped the run, where its resumable checkpoint is, and the command that continues it."""
    if e.checkpoint is None:
        return f"{e}; stopped before anything was saved, so there is nothing to resume"
    args = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(args):  # drop an earlier --resume PATH: the new one names the checkpoint
        if arg == "--resume" or arg.startswith("--resume="):
            del args[i:i + 1 + (arg == "--resume" and i + 1 < len(args))]
            break
    # As the user ran it: the script by the path they typed, else lr-lightning fit (argv given: from Python).
    ran = f"python {shlex.quote(show(sys.argv[0]))}" if argv is None and not Parser.command else command("fit")
    again = shlex.join([*args, "--resume", show(e.checkpoint)])
    return f"{e}; saved {show(e.checkpoint)}; continue with: {ran} {again}"
