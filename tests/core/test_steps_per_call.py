"""steps_per_call: K optimizer steps per training_step train exactly what K = 1 trains, and everything counted in
steps (global_step, logging, schedulers, divergence, checkpoints, resume) keeps its meaning."""

from __future__ import annotations

import contextlib
import copy
import functools
import pickle
import re
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import Logger

from lr_lightning import LinearRegression, StepsPerCallModule
from lr_lightning.core.callbacks import DivergenceError, DivergenceGuard, SaveLast
from lr_lightning.core.cli import fit_main
from lr_lightning.core.data import SyntheticDataModule

from ..conftest import lbfgs, make_trainer, run_main, sgd


class Recorder(Logger):
    """Every (step, key, value) a logger is given, to compare what two runs wrote."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int, str, float]] = []

    @property
    def name(self) -> str:
        return "recorder"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.rows += [(step, k, float(v)) for k, v in sorted(metrics.items())]


def _data() -> SyntheticDataModule:
    # 250 samples: 200 train in 13 batches of 16, the last one of 8 (partial), and a 50-sample validation split.
    return SyntheticDataModule(n_samples=250, n_features=3, noise=0.1, batch_size=16, val_fraction=0.2, seed=3)


def _fit(steps: int | str, *, epochs: int = 3, optimizer: Any = None, scheduler: Any = None,
         callbacks: list[L.Callback] | None = None, ckpt_path: Path | None = None,
         **trainer_args: Any) -> tuple[StepsPerCallModule, L.Trainer, Recorder]:
    dm = _data()
    torch.manual_seed(0)
    module = StepsPerCallModule(LinearRegression(3), optimizer=optimizer or sgd(0.05, momentum=0.9),
                              lr_scheduler=scheduler, steps_per_call=steps, **dm.module_inputs())
    recorder = Recorder()
    trainer = make_trainer(max_epochs=epochs, log_every_n_steps=5, logger=recorder, callbacks=callbacks or [],
                           **trainer_args)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    return module, trainer, recorder


def _same_weights(a: StepsPerCallModule, b: StepsPerCallModule) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("scheduler", [None, functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1,
                                                               gamma=0.5)], ids=["constant", "StepLR"])
def test_blocks_of_k_steps_train_bitwise_like_one_step_per_call_and_log_at_the_same_steps(scheduler):
    one, t1, log1 = _fit(1, scheduler=scheduler)
    assert one.automatic_optimization and t1.global_step == 39  # 3 epochs of 13 steps
    for k in (3, 7):
        module, trainer, log = _fit(k, scheduler=scheduler)
        assert not module.automatic_optimization and len(trainer.train_dataloader) == -(-13 // k)
        assert _same_weights(module, one), k  # bitwise, not approximately
        assert trainer.global_step == 39  # optimizer steps, not calls
        # Every value at the same step: train/loss_step every 5 steps, the epoch means, validation, the lr.
        assert log.rows == log1.rows, k
        assert [s for s, key, _ in log.rows if key == "train/loss_step"] == [4, 9, 14, 19, 24, 29, 34]
        assert trainer.optimizers[0].param_groups[0]["lr"] == t1.optimizers[0].param_groups[0]["lr"]


def test_reduce_on_plateau_steps_after_validation_as_with_one_step_per_call():
    plateau = functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=0, factor=0.5, threshold=10)
    one, t1, _ = _fit(1, scheduler=plateau, epochs=3)
    seven, t7, _ = _fit(7, scheduler=plateau, epochs=3)
    # threshold=10: no epoch counts as an improvement, so the rate halves after each of the 3 validations.
    assert t7.optimizers[0].param_groups[0]["lr"] == t1.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.05 / 8)
    assert _same_weights(seven, one)


@pytest.mark.filterwarnings("ignore:.*non-finite")
def test_the_divergence_guard_names_the_same_first_bad_step_inside_a_block():
    messages = []
    for k in (1, 5):
        with pytest.raises(DivergenceError) as e:
            _fit(k, optimizer=sgd(10.0), callbacks=[DivergenceGuard()], epochs=5)
        messages.append(str(e.value))
    # Step 16 lies inside the call of steps 14-18 (epoch 2's first block of 5): the block's end would say 18.
    assert messages[0] == messages[1] and "epoch 1, step 16;" in messages[0], messages


class _Stop(Exception):
    pass


class _StopAfter(L.Callback):
    """Stops the run (like a kill) at the end of the first call that reaches ``at`` steps, after last.ckpt is saved."""

    per_step_hooks = False  # it acts at the end of a call, whatever the call holds

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.at:
            raise _Stop


def test_a_run_stopped_mid_epoch_resumes_bitwise_and_last_ckpt_keeps_its_interval(tmp_path):
    whole, _, _ = _fit(3)
    saver = SaveLast(tmp_path, every_n_steps=4)
    with contextlib.suppress(_Stop):
        _fit(3, callbacks=[saver, _StopAfter(17)])
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    # Calls of 3 steps in each 13-step epoch end at steps 3, 6, 9, 12, 13, 16, ...: the interval of 4 was reached
    # within the call ending at 16 (mid-epoch), the newest save before the stop.
    assert saved["global_step"] == 16 and saved["steps_per_call"] == {"steps": 3, "automatic": False}
    resumed, trainer, _ = _fit(3, ckpt_path=tmp_path / "last.ckpt")
    assert trainer.global_step == 39 and _same_weights(resumed, whole)
    with pytest.raises(ValueError, match=r"steps_per_call 3, not 1; resume with steps_per_call=3"):
        _fit(1, ckpt_path=tmp_path / "last.ckpt")


def test_auto_resumes_with_the_checkpoints_k_whatever_it_would_pick_now(tmp_path):
    """A checkpoint of one step per call (or of any K) resumes under `auto` with that K, from Python and from the
    command line; the weights are those of the uninterrupted run."""
    whole, _, _ = _fit(1)
    for k in (1, 2):  # auto alone picks 3 here
        folder = tmp_path / f"k{k}"
        with contextlib.suppress(_Stop):
            _fit(k, callbacks=[SaveLast(folder, every_n_steps=4), _StopAfter(17)])
        resumed, trainer, _ = _fit("auto", ckpt_path=folder / "last.ckpt")
        assert resumed.resolved_steps_per_call == k and trainer.global_step == 39 and _same_weights(resumed, whole)
    data = ["--data", "synthetic", "--data.n_samples", "250", "--figures", "0", "--progress_bar", "false"]
    first = run_main(fit_main, *data, "--max_epochs", "1", "--steps_per_call", "1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    ckpt = tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt"
    resumed = run_main(fit_main, *data, "--max_epochs", "2", "--resume", str(ckpt), cwd=tmp_path)
    assert resumed.returncode == 0 and "1 optimizer step per call into Lightning" in resumed.stdout, resumed.stderr



def test_a_later_fit_without_the_checkpoint_does_not_keep_its_k(tmp_path):
    """The checkpoint's K is for the fit that resumes from it: the same module fitted again by a new Trainer, without
    ckpt_path, gets auto's own K in its blocks too (it kept the checkpoint's 2 while saying 3, and saved 2)."""
    with contextlib.suppress(_Stop):
        _fit(2, callbacks=[SaveLast(tmp_path, every_n_steps=4), _StopAfter(17)])
    module, _, _ = _fit("auto", ckpt_path=tmp_path / "last.ckpt")
    assert module.resolved_steps_per_call == module.trained_steps_per_call == 2
    trainer = make_trainer(max_epochs=1)
    trainer.fit(module, datamodule=_data())
    # 13 steps an epoch in blocks of auto's 3: 5 calls.
    assert module.resolved_steps_per_call == module.trained_steps_per_call == 3 and len(trainer.train_dataloader) == 5


@pytest.mark.parametrize("k", [1, 3])
def test_a_run_resumed_mid_epoch_logs_that_epochs_train_loss(tmp_path, k):
    """train/loss is logged on an epoch's first call in the run, which after a mid-epoch resume is not batch 0: the
    resumed epoch had no train/loss, and an EarlyStopping on it (--stop_below) stopped the run with a RuntimeError."""
    def stop_below() -> EarlyStopping:
        return EarlyStopping("train/loss", stopping_threshold=1e-12, patience=10**9, check_on_train_epoch_end=True)

    with contextlib.suppress(_Stop):
        _fit(k, callbacks=[SaveLast(tmp_path, every_n_steps=4), _StopAfter(17), stop_below()])
    _, trainer, recorder = _fit(k, ckpt_path=tmp_path / "last.ckpt", callbacks=[stop_below()])
    # Resumed at step 16 (epoch 1 of 13-step epochs): epoch 1 ends at step 25, epoch 2 at 38.
    assert trainer.global_step == 39
    assert sorted(step for step, key, _ in recorder.rows if key == "train/loss") == [25, 38]


def test_a_copy_of_the_module_does_not_copy_its_trainer():
    """The module remembers its fit's K, reason and logging marker with the Trainer they belong to, by a weak
    reference, and a copy or pickle leaves them behind as Lightning leaves the Trainer: a deepcopy (what
    EMAWeightAveraging's AveragedModel makes at set-up) held a copy of the whole Trainer, its datamodule and data."""
    module, trainer, _ = _fit(3, epochs=1)
    assert module._steps_plan[0]() is trainer and module._loss_logged[0]() is trainer
    for clone in (copy.deepcopy(module), pickle.loads(pickle.dumps(module))):
        assert not {"_steps_plan", "_resumed_steps", "_loss_logged"} & vars(clone).keys()
        assert clone.resolved_steps_per_call == 1 and _same_weights(clone, module)  # outside a fit: 1

class _PerStep(L.Callback):
    per_step_hooks = True  # sees every optimizer step: one step per call


class _Undeclared(L.Callback):
    def on_before_optimizer_step(self, trainer: L.Trainer, module: L.LightningModule, optimizer: Any) -> None:
        pass  # a user's per-step hook that says nothing about blocks: assumed to need every step


@pytest.mark.parametrize(("settings", "why"), [
    ({"gradient_clip_val": 1.0}, "gradient clipping"),
    ({"accumulate_grad_batches": 2}, "gradient accumulation"),
    ({"optimizer": lbfgs(torch.float32)}, "LBFGS"),
    ({"callbacks": [_PerStep()]}, "the callback _PerStep"),
    ({"callbacks": [_Undeclared()]}, "the callback _Undeclared (its on_before_optimizer_step sees every step"),
    # save_top_k=0: the interval is what matters, and nothing is written.
    ({"callbacks": [ModelCheckpoint(every_n_train_steps=5, save_top_k=0)], "enable_checkpointing": True},
     "the callback ModelCheckpoint"),
])
def test_auto_takes_one_step_per_call_where_per_step_hooks_are_needed_and_says_why(settings, why):
    module, trainer, _ = _fit("auto", epochs=1, **settings)
    assert module.automatic_optimization and module.steps_per_call_reason.startswith(why)
    assert trainer.global_step == (7 if "accumulate_grad_batches" in settings else 13)
    with pytest.raises(ValueError, match=rf"steps_per_call=4: {re.escape(why)}.* needs one training_step per "
                                         r"optimizer step"):
        _fit(4, epochs=1, **settings)


def test_callbacks_written_for_calls_keep_blocks():
    """Lightning's own callbacks, an epoch-interval ModelCheckpoint and a user's callback that declares
    per_step_hooks = False leave ``auto`` its K."""
    module, _, _ = _fit("auto", epochs=1, callbacks=[_StopAfter(10**9), ModelCheckpoint(save_top_k=0)],
                        enable_checkpointing=True)
    assert not module.automatic_optimization and module.resolved_steps_per_call == 3


class _CountsBackwards(L.Callback):
    per_step_hooks = False  # written for blocks: it counts backward passes, whichever call they are in

    def __init__(self) -> None:
        self.calls = 0

    def on_after_backward(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.calls += 1


def test_a_block_calls_torch_directly_unless_a_hook_around_the_step_has_code():
    """With nothing in the hooks around a step, a block's steps skip Lightning's dispatch of them (the fast path);
    with a callback's on_after_backward, each step goes through Lightning and the hook runs once per step. Both give
    K = 1's weights bit for bit."""
    one, _, _ = _fit(1)
    direct, _, _ = _fit(3)
    assert direct._direct_steps and _same_weights(direct, one)
    counter = _CountsBackwards()
    hooked, trainer, _ = _fit(3, callbacks=[counter])
    assert not hooked._direct_steps and counter.calls == trainer.global_step == 39
    assert _same_weights(hooked, one)


class _ModuleCountsBackwards(StepsPerCallModule):
    """A module's own hook around the step (not one that forces K = 1): the block must go through Lightning."""

    backwards = 0

    def on_after_backward(self) -> None:
        type(self).backwards += 1


def test_a_block_goes_through_lightning_for_a_modules_hook_or_mixed_precision():
    """The other two ways out of the direct path: a module overriding a hook Lightning runs around a manual step, and
    a precision plugin that is not full precision (its backward scales or casts)."""
    dm = _data()
    torch.manual_seed(0)
    module = _ModuleCountsBackwards(LinearRegression(3), steps_per_call=3, **dm.module_inputs())
    trainer = make_trainer(max_epochs=1)
    trainer.fit(module, datamodule=dm)
    assert not module._direct_steps and _ModuleCountsBackwards.backwards == trainer.global_step == 13
    mixed, _, _ = _fit(3, epochs=1, precision="bf16-mixed")
    assert not mixed._direct_steps and not mixed.automatic_optimization


class _PerStepSchedule(StepsPerCallModule):
    """A subclass stepping its schedule every 2 optimizer steps ("interval": "step"), as a copier might."""

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.05)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.97)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 2}}


def test_a_step_interval_schedule_steps_inside_blocks_as_it_does_without():
    runs = []
    for k in (1, 3, 7):
        dm = _data()
        torch.manual_seed(0)
        module = _PerStepSchedule(LinearRegression(3), steps_per_call=k, **dm.module_inputs())
        trainer = make_trainer(max_epochs=3)
        trainer.fit(module, datamodule=dm)
        runs.append((module, trainer.optimizers[0].param_groups[0]["lr"]))
    (one, lr), others = runs[0], runs[1:]
    # 3 epochs of 13 steps, stepped after steps 2, 4, ..., 12 of each epoch: 18 times.
    assert lr == pytest.approx(0.05 * 0.97**18, rel=1e-12)
    assert all(_same_weights(m, one) and other_lr == lr for m, other_lr in others)


def test_max_steps_counts_optimizer_steps_inside_a_block():
    _, trainer, _ = _fit(3, max_steps=10)  # blocks end at 3, 6, 9, 12: the fourth stops after its first step
    assert trainer.global_step == 10


def test_auto_picks_k_from_the_batch_size_within_a_quarter_epoch():
    module, trainer, _ = _fit("auto", epochs=1)
    # 32768 rows / 16 = 2048, capped at a quarter of the 13-step epoch: 3.
    assert module.resolved_steps_per_call == module.steps_per_block() == 3
    assert len(trainer.train_dataloader) == 5 and module.steps_per_call_reason is None
    with pytest.raises(ValueError, match="steps_per_call must be 'auto' or a whole number >= 1, got 0"):
        StepsPerCallModule(LinearRegression(1), steps_per_call=0)


def test_the_command_line_says_k_and_refuses_an_explicit_k_it_cannot_honour(tmp_path):
    data = ["--data", "synthetic", "--data.n_samples", "250", "--max_epochs", "1", "--figures", "0",
            "--progress_bar", "false"]
    ok = run_main(fit_main, *data, "--steps_per_call", "3", cwd=tmp_path)
    assert ok.returncode == 0 and "3 optimizer steps per call into Lightning" in ok.stdout, ok.stderr
    bad = run_main(fit_main, *data, "--steps_per_call", "3", "--trainer.gradient_clip_val", "1", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --steps_per_call 3: gradient clipping")
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
