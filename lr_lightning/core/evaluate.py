"""``scripts/evaluate.py``: validate, test or predict with a checkpoint on the data of a run's ``config.yaml``,
through the same parser (:mod:`lr_lightning.core.cli`) and parts (:mod:`lr_lightning.core.parts`) as ``fit.py``."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from lr_lightning.core import solvers
from lr_lightning.core.cli import parse
from lr_lightning.core.commands import UsageError, command, entry_point, quiet, show
from lr_lightning.core.flag_checks import check_writable
from lr_lightning.core.loading import warn_if_rank_deficient
from lr_lightning.core.parts import build_parts, instantiate
from lr_lightning.core.predict import format_row
from lr_lightning.core.run import ESSENTIALS


@entry_point
def evaluate_main(argv: list[str] | None = None) -> int:
    """``evaluate.py``: a checkpoint on the data of a config, through the same parser and parts as ``fit.py``."""
    import lightning as L
    import torch

    try:
        parser, cfg = parse("evaluate", argv)
        quiet()
        L.seed_everything(cfg.seed, verbose=False)
        init = instantiate(parser, cfg)
        dm, module, _ = build_parts(cfg, init, with_reference=False)
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise FileNotFoundError(f"--ckpt_path {path}: no such file")
        from lr_lightning.core.checkpoints import read_checkpoint

        try:
            checkpoint = read_checkpoint(path)
        except ValueError as e:
            raise UsageError(f"--ckpt_path {path}: not a checkpoint written by fit.py ({e})") from None
        if problem := solvers.checkpoint_problem(checkpoint):
            raise UsageError(f"--ckpt_path {path}: {problem}")
        try:
            module.check_resumable(checkpoint, dm.feature_names)
        except ValueError as e:
            words = str(e).replace("cannot resume: ", "").replace("(resume with the settings of the first run)",
                                                                  "(evaluate with the run's own config.yaml)")
            raise UsageError(f"--ckpt_path {path}: {words}") from None
        if cfg.out is not None and (Path(cfg.out).is_dir() or not Path(cfg.out).parent.is_dir()):
            raise UsageError(f"--out {cfg.out}: " + ("is a directory; name a file" if Path(cfg.out).is_dir() else
                                                      "its folder does not exist"))
        if cfg.out is not None:
            check_writable("--out", cfg.out)
        trainer_args = {k: v for k, v in vars(init.trainer).items() if k not in ("callbacks", "logger")}
        # Evaluating needs none of the callbacks that wrote the checkpoint (Lightning asks for them, for resuming).
        warnings.filterwarnings("ignore", r"Be aware that when using `ckpt_path`, callbacks used to create")
        trainer = L.Trainer(**{k: cfg[k] for k in ESSENTIALS if k != "max_epochs"}, logger=False,
                            enable_progress_bar=bool(cfg.progress_bar), callbacks=init.trainer.callbacks,
                            **trainer_args)
    except (UsageError, ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run = {"validate": trainer.validate, "test": trainer.test, "predict": trainer.predict}[cfg.stage]
    if cfg.stage != "predict" and not (dm.n_val if cfg.stage == "validate" else dm.n_test):
        split = "val" if cfg.stage == "validate" else "test"
        print(f"error: --stage {cfg.stage}: the run's data has no {split} split; train with {command('fit')} "
              f"--data.{split}_fraction 0.2 to hold one out", file=sys.stderr)
        return 2
    results = run(module, datamodule=dm, ckpt_path=str(path), weights_only=True,
                  **({} if cfg.stage == "predict" else {"verbose": False}))
    if cfg.stage != "predict":
        print(", ".join(f"{k} {float(v):.6g}" for k, v in results[0].items()))
        return 0
    warn_if_rank_deficient(f"--ckpt_path {path}", solvers.aliased_columns(checkpoint))
    preds = torch.cat(results).cpu().numpy()  # in the model's dtype: printed with the digits it has (format_row)
    header = ",".join([*(f"predicted_{t}" for t in dm.target_names)])
    lines = [header, *(format_row(row) for row in preds)]
    if cfg.out is None:
        print("\n".join(lines))
    else:
        try:
            Path(cfg.out).write_text("\n".join(lines) + "\n")
        except OSError as e:
            print(f"error: --out {cfg.out}: {e.strerror}", file=sys.stderr)
            return 2
        print(f"{len(preds)} predictions in row order: {show(cfg.out)}")
    return 0
