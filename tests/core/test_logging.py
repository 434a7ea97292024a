"""TensorBoard logs and checkpoints, as fit.py configures them."""

import itertools
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lr_lightning import RegressionModule
from lr_lightning.core.cli import parse
from lr_lightning.core.run import build_run


def _fit(tmp_path, *flags):
    """The parts fit.py builds from these flags, trained (without its summary)."""
    run = build_run(*parse("fit", ["--log_dir", str(tmp_path / "logs"), "--progress_bar", "false", *flags]))
    run.trainer.fit(run.module, datamodule=run.dm)
    return run.dm, run.module, run.trainer


def _scalars(log_dir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_has_falling_loss_curves(tmp_path):
    _, _, trainer = _fit(tmp_path, "--data", "synthetic", "--data.n_samples", "500", "--max_epochs", "8",
                         "--data.batch_size", "50", "--trainer.log_every_n_steps", "7")
    scalars = _scalars(Path(trainer.logger.log_dir))
    assert {"train/loss_step", "train/loss", "val/loss", "val/mae", "val/r2"} <= set(scalars)
    per_step, per_epoch = scalars["train/loss_step"], scalars["train/loss"]
    # 400 training samples in batches of 50: 8 steps an epoch; a step's loss every 7 steps (--trainer.*).
    assert len(per_epoch) == 8 and len(per_step) == 64 // 7
    # Measured: the epoch loss falls 7.2-fold, the step loss 8.0-fold.
    assert all(a > b for a, b in itertools.pairwise(per_epoch)) and per_epoch[-1] < per_epoch[0] / 5
    assert per_step[-1] < per_step[0] / 5
    assert len(scalars["val/loss"]) == 8 and scalars["val/loss"][-1] < scalars["val/loss"][0]


def test_hparams_of_module_and_data_reach_tensorboard(tmp_path):
    _, _, trainer = _fit(tmp_path, "--max_epochs", "2", "--optimizer.lr", "0.02")
    text = (Path(trainer.logger.log_dir) / "hparams.yaml").read_text()
    assert "lr: 0.02" in text and "class_path: lr_lightning.core.networks.LinearRegression" in text
    assert "class_path: torch.optim.SGD" in text and "val_fraction" in text


def test_checkpoints_last_and_best_by_val_loss(tmp_path):
    dm, module, trainer = _fit(tmp_path, "--data", "synthetic", "--data.n_samples", "300", "--max_epochs", "4")
    ckpt = trainer.checkpoint_callback
    assert ckpt.monitor == "val/loss"
    last = Path(trainer.logger.log_dir) / "checkpoints" / "last.ckpt"
    assert Path(ckpt.best_model_path).name == "best.ckpt" and Path(ckpt.best_model_path).is_file()
    # last.ckpt is the newest state, whether or not val/loss improved in the last epoch.
    assert torch.load(last, weights_only=True)["global_step"] == trainer.global_step
    assert ckpt.best_model_score == pytest.approx(min(trainer.callback_metrics["val/loss"].item(),
                                                      ckpt.best_model_score.item()))
    loaded = RegressionModule.load_from_checkpoint(last)
    x = torch.randn(6, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), module(x))


def test_without_validation_best_is_by_train_loss(tmp_path):
    _, _, trainer = _fit(tmp_path, "--max_epochs", "3")
    assert trainer.checkpoint_callback.monitor == "train/loss"
    assert Path(trainer.checkpoint_callback.best_model_path).is_file()
