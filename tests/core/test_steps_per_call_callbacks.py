"""Issue #15's features attacked as a hostile user would (steps_per_call, export): the cases that failed, kept fixed.

Each compares against what one step per call (Lightning's own loop) does, bit for bit, or checks a one-line error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import (
    EMAWeightAveraging,
    GradientAccumulationScheduler,
    LearningRateMonitor,
    SpikeDetection,
)
from lightning.pytorch.loggers import CSVLogger

from lr_lightning import LinearRegression, RegressionDataModule, StepsPerCallModule
from tests.conftest import run_main


def _data(n: int = 100, batch_size: int = 8) -> RegressionDataModule:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(n, 1, generator=g)
    return RegressionDataModule(x, y, batch_size=batch_size, val_fraction=0.2)


def _fit(steps: int | str, tmp_path: Path, cls: type[StepsPerCallModule] = StepsPerCallModule,
         **trainer: Any) -> tuple[StepsPerCallModule, L.Trainer, str]:
    dm = _data()
    torch.manual_seed(0)
    module = cls(LinearRegression(3), steps_per_call=steps, **dm.module_inputs())
    logger = CSVLogger(tmp_path, name=f"k{steps}")
    fit = L.Trainer(max_epochs=trainer.pop("max_epochs", 3), logger=logger, log_every_n_steps=1,
                    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, **trainer)
    fit.fit(module, datamodule=dm)
    return module, fit, (Path(logger.log_dir) / "metrics.csv").read_text()


def _same_weights(a: StepsPerCallModule, b: StepsPerCallModule) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True))


class StepIntervalScheduler(StepsPerCallModule):
    """A subclass with a per-step schedule, as Lightning's docs show one: Lightning steps it after every batch whose
    position in the epoch (1-based) is a multiple of `frequency`."""

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.9)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 3}}


def test_a_step_interval_scheduler_is_stepped_at_every_step_of_a_block(tmp_path: Path) -> None:
    # Before the fix, blocks stepped it once per epoch: different weights from K = 1, silently.
    # K = 4 against frequency 3 and 10-step epochs: steps fall inside blocks, and the position restarts each epoch.
    one, _, log_one = _fit(1, tmp_path, StepIntervalScheduler)
    four, trainer, log_four = _fit(4, tmp_path, StepIntervalScheduler)
    assert four.resolved_steps_per_call == 4 and trainer.global_step == 30  # blocks were used
    assert _same_weights(one, four)
    assert log_one == log_four
    # 3 per epoch (positions 3, 6, 9) for 3 epochs: lr 0.05 * 0.9**9.
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05 * 0.9 ** 9, rel=1e-12)


def test_max_steps_inside_a_block_logs_at_k1s_steps_and_gives_back_the_untrained_batches(tmp_path: Path) -> None:
    # 10 steps an epoch in blocks of 4 (4, 4, 2): max_steps 13 stops the second epoch's first block after 3 steps.
    one, _, log_one = _fit(1, tmp_path, max_steps=13)
    four, trainer, log_four = _fit(4, tmp_path, max_steps=13)
    assert trainer.global_step == 13 and _same_weights(one, four)
    # Before the fix the epoch's metrics were written at step 13 (one per block's length), not K = 1's 12.
    assert log_one == log_four
    # The loader counts only the 3 batches trained on in this epoch: a checkpoint written now resumes at the 4th.
    assert trainer.train_dataloader.state_dict()["consumed"] == 3


class PlateauEveryStep(StepsPerCallModule):
    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step",
                                                         "monitor": "train/loss"}}


@pytest.mark.filterwarnings("ignore:The lr scheduler dict contains")  # Lightning's, about `monitor`
def test_a_step_interval_plateau_scheduler_with_blocks_is_one_line(tmp_path: Path) -> None:
    # Lightning drops `monitor` under manual optimization: there is no value to step it on, so say so, not crash.
    with pytest.raises(ValueError, match=r"^steps_per_call=4: a ReduceLROnPlateau stepped every step .* use "
                                         r"steps_per_call=1$"):
        _fit(4, tmp_path, PlateauEveryStep)


class WarmUp(StepsPerCallModule):
    """A learning-rate warm-up in optimizer_step, as Lightning's docs write one. Under blocks (manual optimization)
    Lightning never calls optimizer_step: the warm-up would silently not happen."""

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        for group in optimizer.param_groups:
            group["lr"] = 0.05 * min(1.0, (self.trainer.global_step + 1) / 20)
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)


class OwnTrainingStep(StepsPerCallModule):
    """A training_step written for one (x, y) batch (an L1 penalty): a block of K batches would not unpack."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self(x), y) + 0.01 * self.model.linear.weight.abs().sum()


class BlocksHandled(OwnTrainingStep):
    per_step_hooks = False  # the subclass says it handles blocks: auto keeps its K (here it would not unpack)


@pytest.mark.parametrize("cls, hook", [(WarmUp, "optimizer_step"), (OwnTrainingStep, "training_step")])
def test_a_subclass_with_per_step_methods_gets_one_step_per_call_and_an_explicit_k_is_refused(
        tmp_path: Path, cls: type[StepsPerCallModule], hook: str) -> None:
    one, _, _ = _fit(1, tmp_path, cls)
    auto, _, _ = _fit("auto", tmp_path, cls, max_epochs=3)
    assert auto.resolved_steps_per_call == 1 and auto.steps_per_call_reason.startswith(f"{cls.__name__}.{hook} (")
    assert _same_weights(one, auto)  # before the fix: WarmUp's weights differed, OwnTrainingStep raised on unpacking
    with pytest.raises(ValueError, match=rf"^steps_per_call=4: {cls.__name__}\.{hook} .* use steps_per_call=1"):
        _fit(4, tmp_path, cls)


def test_a_subclass_declaring_per_step_hooks_false_keeps_blocks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="too many values to unpack"):  # it said it handles blocks; it does not
        _fit(4, tmp_path, BlocksHandled)


class OwnLBFGS(StepsPerCallModule):
    def configure_optimizers(self) -> Any:
        return torch.optim.LBFGS(self.parameters(), lr=1)


@pytest.mark.parametrize("steps, k", [(3, "3"), ("auto", r"2 \(auto\)")])
def test_lbfgs_from_a_subclasss_configure_optimizers_with_blocks_is_one_line(tmp_path: Path, steps: int | str,
                                                                            k: str) -> None:
    # Before: TypeError "LBFGS.step() missing 1 required positional argument: 'closure'" from inside the block.
    with pytest.raises(ValueError, match=rf"^steps_per_call={k}: LBFGS \(from OwnLBFGS.configure_optimizers; .* use "
                                         r"steps_per_call=1$"):
        _fit(steps, tmp_path, OwnLBFGS)


@pytest.mark.parametrize("value", ["abc", "2.5"])
def test_a_steps_per_call_that_is_not_a_number_says_int_or_auto(tmp_path: Path, value: str) -> None:
    from lr_lightning.core.cli import fit_main

    result = run_main(fit_main, "--steps_per_call", value, cwd=tmp_path)
    # Before: "expected int or a typing.Literal['auto']", Python's spelling of the type, not the user's.
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"error: --steps_per_call: expected int or auto, got '{value}' (see --help)\n"


@pytest.mark.filterwarnings("ignore:You requested to overfit")  # Lightning turns shuffling off, and says so
@pytest.mark.parametrize("setting, value", [("limit_train_batches", 5), ("limit_train_batches", 0.5),
                                            ("overfit_batches", 2), ("val_check_interval", 4),
                                            ("val_check_interval", 0.5)])
def test_trainer_settings_lightning_counts_in_calls_get_one_step_per_call(tmp_path: Path, setting: str,
                                                                          value: float) -> None:
    # Before: auto's blocks made limit_train_batches=5 train 5 blocks (15 steps an epoch with K = 3), overfit_batches
    # likewise, and val_check_interval validate every 4 blocks instead of every 4 steps: other weights or other
    # val/loss values at other steps than K = 1, silently.
    one, trainer_one, log_one = _fit(1, tmp_path, **{setting: value})
    auto, trainer_auto, log_auto = _fit("auto", tmp_path, **{setting: value})
    assert auto.resolved_steps_per_call == 1
    assert auto.steps_per_call_reason == f"{setting}={value} (Lightning counts it in calls into training_step)"
    assert trainer_auto.global_step == trainer_one.global_step and _same_weights(one, auto) and log_one == log_auto
    with pytest.raises(ValueError, match=rf"^steps_per_call=3: {setting}={value} \(Lightning counts it in calls"):
        _fit(3, tmp_path, **{setting: value})


def test_device_stats_monitor_gets_one_step_per_call() -> None:
    # Decided from the class alone: running it on the CPU needs psutil, which is not a dependency.
    from lightning.pytorch.callbacks import DeviceStatsMonitor

    from lr_lightning.core.steps_per_call import _per_step_callback

    assert _per_step_callback(DeviceStatsMonitor()) == "it logs device statistics every N steps, checked once per call"


@pytest.mark.parametrize("callback, why", [
    (lambda: GradientAccumulationScheduler({1: 2}), "it accumulates gradients over batches"),
    (lambda: LearningRateMonitor(logging_interval="step"),
     "it logs the learning rate every N steps, checked once per call"),
    # Lightning's code with per-step hooks, so not caught as a user's callback is: under blocks the average took
    # every K-th step's weights (the final weights 0.17 off K = 1's), and the spike check one loss per call.
    (lambda: EMAWeightAveraging(decay=0.9), "it averages the weights after every optimizer step"),
    (lambda: SpikeDetection(), "it checks every step's loss")])
def test_lightning_callbacks_that_work_per_step_get_one_step_per_call(tmp_path: Path, callback: Any, why: str) -> None:
    # Before: GradientAccumulationScheduler made auto's manual optimization fail with Lightning's RuntimeError (a
    # setting the user never chose), and LearningRateMonitor(logging_interval="step") logged lr-SGD once per call,
    # at other steps than K = 1 (its log_every_n_steps check sees the step count jump by K).
    one, _, log_one = _fit(1, tmp_path, callbacks=[callback()])
    auto, _, log_auto = _fit("auto", tmp_path, callbacks=[callback()])
    name = type(auto.trainer.callbacks[0]).__name__
    assert auto.resolved_steps_per_call == 1 and auto.steps_per_call_reason == f"the callback {name} ({why})"
    assert _same_weights(one, auto) and log_one == log_auto
