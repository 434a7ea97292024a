"""The summary ``fit.py`` prints at the end: what was trained on what, the fitted equation, the metrics, how far from
the least-squares optimum, and where the checkpoints and logs are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lr_lightning.core.commands import show


def predict_one(module: Any, x: Any) -> list[float]:
    """The module's prediction for one input row, wherever the module now lives."""
    import torch

    p = next(module.parameters())
    with torch.no_grad():
        return module(x.to(device=p.device, dtype=p.dtype)).flatten().tolist()


def example_input(dm: Any) -> Any:
    """The summary's example input, a (1, 1) float64 tensor: the datamodule's own ``example_x`` where it names one
    (the tutorial's ``x = 5``, its classic ``f(5)``), else the largest value of the one input column over the training
    rows (the first 2000 of streamed data), so the example prediction is made inside the data, not extrapolated.

    >>> from lr_lightning.core.data import SyntheticDataModule
    >>> dm = SyntheticDataModule(n_samples=100)
    >>> dm.setup("fit")
    >>> float(example_input(dm)) == float(dm.raw_split("train")[0].max())
    True
    """
    import numpy as np
    import torch

    if getattr(dm, "example_x", None) is not None:
        return torch.tensor([[float(dm.example_x)]], dtype=torch.float64)
    if dm.table.streamed:
        rows = np.concatenate([np.arange(a, b) for a, b in dm.ranges["train"]])[:2000]
        x = torch.from_numpy(np.asarray(dm.table.read(rows)[0], dtype=np.float64))
    else:
        x = dm.raw_split("train")[0]
    return x[:, :1].max(dim=0).values[None].cpu().double()


def _equation(weight: Any, bias: float | None, names: list[str], shown: int = 8) -> str:
    """``+0.5·x0 -1.2·x1 … (24 more) +0.3``: the first ``shown`` terms of a fitted linear model."""
    terms = " ".join(f"{w:+.6g}·{name}" for w, name in zip(weight[:shown], names[:shown], strict=True))
    more = f" … ({len(names) - shown} more)" if len(names) > shown else ""
    return terms + more + (f" {bias:+.6g}" if bias is not None else "")


def print_summary(run: Any, seconds: float, before: list[float] | None, metrics: dict[str, float]) -> None:
    """The summary of a training run (``run``: a :class:`~lr_lightning.core.run.Run`, read for its ``cfg``, ``dm``,
    ``module``, ``trainer`` and ``reference``)."""
    dm, module, trainer = run.dm, run.module, run.trainer
    path = getattr(dm, "path", None)
    source = Path(path).name if path is not None else type(dm).__name__.removesuffix("DataModule").lower()
    print(f"\nTrained {type(module.model).__name__} on {source} data ({dm.n_train} train, {dm.n_val} val, "
          f"{dm.n_test} test samples) for {trainer.current_epoch} epochs on {trainer.strategy.root_device.type} in "
          f"{seconds:.1f} s")
    if run.resume is not None and run.resumed_at is not None:
        epoch, step = run.resumed_at  # the checkpoint's: epochs counted from 0, as Lightning saves them
        print(f"  resumed from {show(run.resume)}, written in epoch {epoch + 1} after step {step}")
    if trainer.world_size > 1:
        print(f"  {trainer.world_size} processes ({trainer.num_nodes} node(s) × {trainer.num_devices} devices, "
              f"{trainer.strategy.__class__.__name__}): batch size {dm.batch_size} per device, "
              f"{dm.batch_size * trainer.world_size} per step")
    if hasattr(module, "trained_steps_per_call"):  # the fast path (lr_lightning.core.steps_per_call)
        steps, why = module.trained_steps_per_call, module.steps_per_call_reason
        # Lightning's own work per call costs about a linear-regression step: say how often it was paid, and why at
        # every step when it was.
        print(f"  {steps} optimizer step{'s' if steps > 1 else ''} per call into Lightning (steps_per_call)"
              + (f": {why}" if steps == 1 and why else ""))
    if trainer.early_stopping_callback is not None and trainer.early_stopping_callback.stopped_epoch:
        print(f"  stopped early: train/loss fell below {run.cfg.stop_below}")
    try:  # a linear module's (lr_lightning.core.linear): in raw units and raw powers, whatever the feature map
        w, b = module.coefficients() if hasattr(module, "coefficients") else (None, None)
    except ValueError:
        w = b = None
    names = [f"{name}^{p}" if p > 1 else name for name in dm.feature_names
             for p in range(1, (dm.polynomial_degree or 1) + 1)]
    if w is not None:
        for j, target in enumerate(dm.target_names):
            print(f"  {target} = {_equation(w[j], b[j] if b is not None else None, names)}"
                  + ("   (no intercept: --data.bias true fits one)" if b is None else ""))
        if getattr(dm, "true_weight", None) is not None:
            true = " ".join(f"{v:+.4f}" for v in dm.true_weight[0, :8].tolist())
            more = " …" if dm.true_weight.shape[1] > 8 else ""
            print(f"  true weights {true}{more}, true bias {dm.true_bias.item():+.4f}")
    mse_loss = type(getattr(module, "loss_fn", None)).__name__ == "MSELoss"  # else val/mse is not val/loss
    shown = ["train/loss", "val/loss", *([] if mse_loss else ["val/mse"]), "val/mae", "val/r2", "test/loss",
             *([] if mse_loss else ["test/mse"]), "test/mae", "test/r2"]
    if any(k in metrics for k in shown):  # none after --max_epochs 0
        print("  " + ", ".join(f"{k} {metrics[k]:.6g}" for k in shown if k in metrics))
    opt = run.reference
    if w is not None and opt is not None:
        # The best linear fit on the same training rows: how far did training get?
        split = "val" if "val" in opt["mse"] else "train"
        weighted = mse_loss and getattr(dm, "weights", None) is not None  # val/loss: the weighted MSE, as the fit's
        ours = metrics.get("val/loss" if weighted else "val/mse", metrics.get("train/loss") if mse_loss else None)
        if split == "train" and dm.feature_map is not None:
            ours = None  # train/loss is in standardized units then: no gap in original units to show
        equation = _equation(opt["weight"][0], opt["bias"][0] if opt["bias"] is not None else None, names)
        # Aliased columns (constant, or combinations of earlier ones) are not estimable and left out (say which).
        deficient = f" ({', '.join(opt['aliased'])} aliased; rank {opt['rank']} of {opt['n_coefficients']})" \
            if opt["aliased"] else ""
        print(f"  least squares: {dm.target_names[0]} = {equation}{deficient}, {split} MSE {opt['mse'][split]:.6g}"
              + (f"; gap {ours - opt['mse'][split]:+.3g}" if ours is not None else ""))
    if before is not None:  # at the largest training input (fit(): summary.example_input)
        x = example_input(dm)
        after = predict_one(module, x)
        where = dm.example_why if getattr(dm, "example_x", None) is not None else "the largest in the training data"
        print(f"  prediction for {dm.feature_names[0]} = {float(x):.4g} ({where}): "
              f"{before[0]:.4f} before training, {after[0]:.4f} after")
    from lightning.pytorch.loggers import TensorBoardLogger

    from lr_lightning.core.callbacks import SaveLast

    saver = next(c for c in trainer.callbacks if isinstance(c, SaveLast))
    ckpt = trainer.checkpoint_callback
    if saver.path.is_file():
        best = f", best ({ckpt.monitor}) {show(ckpt.best_model_path)}" if ckpt and ckpt.best_model_path else ""
        print(f"Checkpoints: last {show(saver.path)}{best}")
    if trainer.logger is not None and trainer.logger.log_dir is not None:
        print(f"Logs: {trainer.logger.log_dir} (config.yaml repeats the run)")
        if isinstance(trainer.logger, TensorBoardLogger):
            print(f"View the curves: tensorboard --logdir {run.cfg.log_dir}")
