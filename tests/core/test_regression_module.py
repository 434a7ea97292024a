"""RegressionModule without the fast path: Lightning's own loop, and checkpoints of the fast path still load."""

from __future__ import annotations

import functools
import inspect
import sys

import lightning as L
import pytest
import torch
from torch import nn

from lr_lightning import (
    LinearRegression,
    RegressionDataModule,
    RegressionModule,
    StepsPerCallModule,
)
from lr_lightning.core.checkpoints import unknown_hyperparameters
from lr_lightning.core.cli import fit_main
from lr_lightning.core.data import SyntheticDataModule, TutorialDataModule
from tests.conftest import lbfgs, make_trainer, sgd


def test_the_plain_module_runs_lightnings_own_loop_and_has_no_steps_per_call() -> None:
    assert "steps_per_call" not in inspect.signature(RegressionModule).parameters
    dm = SyntheticDataModule(n_samples=200, n_features=3, batch_size=10, seed=0)
    dm.setup("fit")
    module = RegressionModule(LinearRegression(3), optimizer=sgd(0.05), **dm.module_inputs())
    trainer = make_trainer(max_epochs=1)
    trainer.fit(module, datamodule=dm)
    # One call per optimizer step: the loader serves plain batches, and the datamodule is left as it was.
    assert module.automatic_optimization and trainer.global_step == trainer.num_training_batches
    assert "train_dataloader" not in vars(dm)


def test_a_fast_path_checkpoints_steps_per_call_is_not_an_unknown_hyperparameter() -> None:
    hparams = StepsPerCallModule(LinearRegression(2), steps_per_call=3).hparams
    assert unknown_hyperparameters(hparams, RegressionModule) == []
    assert unknown_hyperparameters({**hparams, "bogus": 1}, RegressionModule) == ["bogus"]


# ------------------------------------------------------------------------------------------- the loss
def test_val_loss_is_the_injected_loss_recomputed_on_the_validation_split() -> None:
    import torch
    from torch import nn

    dm = SyntheticDataModule(n_samples=300, n_features=2, noise=0.5, batch_size=32, seed=1, standardize=True)
    module = RegressionModule(LinearRegression(2), loss=nn.HuberLoss(delta=0.5), optimizer=sgd(0.1),
                              **dm.module_inputs())
    trainer = make_trainer(max_epochs=3)
    trainer.fit(module, datamodule=dm)
    x, y = dm.raw_split("val")
    with torch.no_grad():
        huber = nn.HuberLoss(delta=0.5)(module(x), y).item()
        mse = nn.MSELoss()(module(x), y).item()
    metrics = trainer.callback_metrics
    assert abs(metrics["val/loss"].item() - huber) < 1e-6 and abs(metrics["val/mse"].item() - mse) < 1e-5
    assert abs(huber - mse) > 1e-3  # the two differ here: val/loss is not the MSE under another name


def test_a_loss_torch_refuses_or_that_is_not_one_number_is_one_line_when_the_module_is_built() -> None:
    import pytest
    from torch import nn

    for loss, words in ((nn.HuberLoss(delta=-1.0), "loss HuberLoss: huber_loss does not support"),
                        (nn.L1Loss(reduction="none"), "must return one number")):
        with pytest.raises(ValueError, match=words):
            RegressionModule(LinearRegression(1), loss=loss)


def test_the_cli_trains_with_huber_loss_and_logs_it_as_val_loss(tmp_path) -> None:
    import torch
    from torch import nn

    from ..conftest import run_main

    result = run_main(fit_main, "--data", "synthetic", "--loss", "HuberLoss", "--loss.delta", "0.5",
                      "--max_epochs", "2", "--figures", "0", "--log_dir", str(tmp_path / "logs"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ckpt = torch.load(next((tmp_path / "logs").rglob("last.ckpt")), weights_only=True)
    assert ckpt["hyper_parameters"]["loss"]["init_args"]["delta"] == 0.5
    assert "val/loss" in result.stdout and "val/mse" in result.stdout
    assert isinstance(RegressionModule.load_from_checkpoint(next((tmp_path / "logs").rglob("last.ckpt"))).loss_fn,
                      nn.HuberLoss)


# ------------------------------------------------------------------------------------------- subclasses
def test_a_subclass_records_its_own_hyperparameter_and_round_trips_its_checkpoint(tmp_path, monkeypatch) -> None:

    import pytest
    import torch

    (tmp_path / "my_modules.py").write_text(
        "from torch import nn\nfrom lr_lightning import RegressionModule\n\n"
        "class HuberModule(RegressionModule):\n"
        "    def __init__(self, model, optimizer=None, lr_scheduler=None, loss=None, *, delta: float = 0.5, **kw):\n"
        "        super().__init__(model, optimizer, lr_scheduler, loss or nn.HuberLoss(delta=delta), **kw)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_modules", None)
    from my_modules import HuberModule

    from lr_lightning.core.cli import fit_main
    from lr_lightning.core.predict import predict_main

    from ..conftest import run_main

    result = run_main(fit_main, "--data", "synthetic", "--module", "my_modules.HuberModule", "--module.delta", "0.3",
                      "--max_epochs", "1", "--figures", "0", "--log_dir", "logs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    ckpt = next((tmp_path / "logs").rglob("best.ckpt"))
    module = HuberModule.load_from_checkpoint(ckpt)
    assert module.hparams.delta == 0.3 and module.loss_fn.delta == 0.3
    refused = run_main(predict_main, "--ckpt", str(ckpt), "--x", "0.5", cwd=tmp_path)
    assert refused.returncode == 2 and "--trust my_modules.HuberModule" in refused.stderr
    trusted = run_main(predict_main, "--ckpt", str(ckpt), "--trust", "my_modules.HuberModule", "--x", "0.5",
                       cwd=tmp_path)
    assert trusted.returncode == 0, trusted.stderr
    with torch.no_grad():
        expected = module(torch.tensor([[0.5]])).item()
    assert float(trusted.stdout.splitlines()[1].split(",")[1]) == pytest.approx(expected, rel=1e-6)


def test_a_forgotten_module_inputs_is_one_value_error_before_training() -> None:
    import pytest

    cases = [(dict(standardize=True), 2, "feature map"), (dict(polynomial_degree=2), 4, "feature map"),
             (dict(dtype="float64"), 2, "float64"), (dict(), 3, "the network takes 3 input")]
    for kwargs, width, words in cases:
        dm = SyntheticDataModule(n_samples=50, n_features=2, batch_size=10, seed=0, **kwargs)
        trainer = make_trainer(max_epochs=1)
        module = RegressionModule(LinearRegression(width))
        with pytest.raises(ValueError, match=words):
            trainer.fit(module, datamodule=dm)
        assert trainer.global_step == 0


@pytest.mark.parametrize("data_bias", [True, False])
def test_a_bias_mismatch_between_data_and_network_is_refused(data_bias):
    dm = SyntheticDataModule(n_samples=50, standardize=True, bias=data_bias, val_fraction=0.0)
    words = "has none (bias=False): pass bias=False to the datamodule" if data_bias else "build the network with bias"
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        RegressionModule(LinearRegression(1, bias=not data_bias), **dm.module_inputs())  # refused as it is built


def test_lbfgs_logs_the_loss_at_the_start_of_its_step():
    dm = SyntheticDataModule(n_samples=200, noise=0.5, val_fraction=0.0, batch_size=200, seed=3)
    torch.manual_seed(0)
    module = RegressionModule(LinearRegression(1), optimizer=lbfgs(torch.float32), **dm.module_inputs())
    x, y = dm.x, dm.y
    with torch.no_grad():
        initial = float(((module(x) - y) ** 2).mean())
    trainer = make_trainer(max_epochs=1)
    trainer.fit(module, datamodule=dm)
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(initial, rel=1e-5)
    with torch.no_grad():
        assert float(((module(x) - y) ** 2).mean()) < 0.5 * initial  # it did train in that one step


class RecordEpochs(L.Callback):
    """(w, train loss of the epoch) after every training epoch."""

    def __init__(self):
        self.rows = []

    def on_train_epoch_end(self, trainer, module):
        self.rows.append((module.model.linear.weight.item(), trainer.callback_metrics["train/loss"].item()))


def test_tutorial_parity_through_lightning():
    """x = 1..4, y = 2x, w = 0, lr 0.01, full batch: the tutorial's printed table."""
    model = LinearRegression(1, 1, bias=False)
    nn.init.zeros_(model.linear.weight)
    dm = TutorialDataModule()
    record = RecordEpochs()
    make_trainer(max_epochs=10, callbacks=[record]).fit(RegressionModule(model), datamodule=dm)
    w = [round(w, 3) for w, _ in record.rows]
    assert w == [0.300, 0.555, 0.772, 0.956, 1.113, 1.246, 1.359, 1.455, 1.537, 1.606]
    assert record.rows[0][1] == pytest.approx(30.0, rel=1e-6)  # loss in epoch 1, before its update
    assert record.rows[1][1] == pytest.approx(21.675, rel=1e-6)  # measured: 3.5e-8 off (float32)


def test_default_optimizer_is_plain_sgd_with_lr_001_and_any_other_is_injected():
    opt = RegressionModule(LinearRegression(2)).configure_optimizers()
    assert type(opt) is torch.optim.SGD
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.01, 0.0, 0.0, False)
    for optimizer in (functools.partial(torch.optim.AdamW, lr=0.1), {"class_path": "AdamW", "init_args": {"lr": 0.1}},
                      lambda params: torch.optim.AdamW(params, lr=0.1)):
        module = RegressionModule(LinearRegression(2), optimizer=optimizer)
        adamw = module.configure_optimizers()
        assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["lr"] == 0.1
        # What trained it is recorded where it can be (a lambda cannot say).
        recorded = module.hparams.optimizer
        assert recorded is None if callable(optimizer) and not isinstance(optimizer, functools.partial) else \
            recorded["class_path"].endswith("AdamW") and recorded["init_args"] == {"lr": 0.1}


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"optimizer": sgd(0.0)}, "optimizer: lr must be a finite number > 0"),
     ({"optimizer": sgd(float("nan"))}, "optimizer: lr must be a finite number > 0"),
     ({"optimizer": sgd(-1.0)}, "optimizer: Invalid learning rate: -1.0"),
     ({"optimizer": {"class_path": "rmsprop"}}, "optimizer: 'rmsprop' is not one of torch.optim's classes"),
     ({"optimizer": {"class_path": "SGD", "init_args": {"lr": 0.1, "betas": [0.9, 0.99]}}},
      "optimizer: SGD.__init__() got an unexpected keyword argument 'betas'"),
     ({"optimizer": 3}, "optimizer: expected a class, a callable or a recipe"),
     ({"lr_scheduler": {"class_path": "StepLR"}}, "lr_scheduler: StepLR.__init__() missing 1 required positional"),
     ({"compile": "yes"}, "compile must be true or false")],
)
def test_bad_settings_raise(kwargs, words):
    with pytest.raises(ValueError) as e:
        RegressionModule(LinearRegression(1), **kwargs)
    assert words in str(e.value)


@pytest.mark.parametrize("optimizer", [torch.optim.SGD, torch.optim.Adam])
def test_learns_known_weights_from_synthetic_data(optimizer):
    dm = SyntheticDataModule(n_samples=2000, n_features=3, noise=0.05, seed=1, batch_size=64)
    module = RegressionModule(LinearRegression(dm.n_features), optimizer=functools.partial(optimizer, lr=0.05))
    make_trainer(max_epochs=15).fit(module, datamodule=dm)
    # Measured: the weights 1.9e-3 off, the bias 6.4e-4.
    torch.testing.assert_close(module.model.linear.weight.detach().double(), dm.true_weight, atol=0.02, rtol=0)
    torch.testing.assert_close(module.model.linear.bias.detach().double(), dm.true_bias, atol=0.02, rtol=0)


def test_a_1d_prediction_against_a_column_target_is_refused():
    class Flat(nn.Module):  # returns (B,), the shape that broadcasts to (B, B) against a (B, 1) target
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(1, 1)

        def forward(self, x):
            return self.linear(x).squeeze(1)

    with pytest.warns(UserWarning, match="cannot record how to rebuild"):
        module = RegressionModule(Flat())
    with pytest.raises(ValueError, match=r"prediction shape \(8,\) != target shape \(8, 1\)"):
        module.model_step((torch.zeros(8, 1), torch.zeros(8, 1)))


def test_logged_keys_and_exact_epoch_metrics():
    dm = SyntheticDataModule(n_samples=230, noise=0.5, batch_size=32, val_fraction=0.2, test_fraction=0.1)
    module = RegressionModule(LinearRegression(1), optimizer=sgd(0.1))
    trainer = make_trainer(max_epochs=3, log_every_n_steps=5)
    trainer.fit(module, datamodule=dm)
    assert {"train/loss", "train/loss_step", "val/loss", "val/mse", "val/mae", "val/r2"} <= set(
        trainer.callback_metrics)
    # val metrics are over the whole split (46 samples, a partial last batch), not a mean of batch means.
    x, y = dm.splits["val"]
    with torch.no_grad():
        pred = module(x)
    m = trainer.callback_metrics
    # Measured: 1.9e-7 apart (relative): torchmetrics sums in another order.
    # The default loss is nn.MSELoss: val/loss (that loss, in original units) and val/mse are both the MSE.
    assert m["val/loss"].item() == pytest.approx(((pred - y) ** 2).mean().item(), rel=1e-5)
    assert m["val/mse"].item() == pytest.approx(((pred - y) ** 2).mean().item(), rel=1e-5)
    assert m["val/mae"].item() == pytest.approx((pred - y).abs().mean().item(), rel=1e-5)
    r2 = 1 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert m["val/r2"].item() == pytest.approx(r2.item(), rel=1e-5)
    result = trainer.test(module, datamodule=dm, verbose=False)[0]
    assert set(result) == {"test/loss", "test/mse", "test/mae", "test/r2"}


class RecordSteps(L.Callback):
    """Every step's loss and batch size, and train/loss as callbacks see it at each epoch's end."""

    per_step_hooks = True  # it looks at every optimizer step's batch: RegressionModule then takes one per call

    def __init__(self):
        self.steps, self.epochs = [[]], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.steps[-1].append((outputs["loss"].item(), len(batch[0])))

    def on_train_epoch_end(self, trainer, module):
        self.epochs.append(trainer.callback_metrics["train/loss"].item())
        self.steps.append([])


def test_epoch_train_loss_is_the_weighted_mean_of_that_epochs_steps():
    dm = SyntheticDataModule(n_samples=100, noise=0.5, batch_size=32, val_fraction=0.0)  # 32, 32, 32, 4
    record = RecordSteps()
    make_trainer(max_epochs=3, callbacks=[record]).fit(
        RegressionModule(LinearRegression(1), optimizer=sgd(0.1)), datamodule=dm)
    for steps, epoch_loss in zip(record.steps, record.epochs, strict=False):
        assert [n for _, n in steps] == [32, 32, 32, 4]
        expected = sum(loss * n for loss, n in steps) / 100
        # This epoch's steps only: reset in between. Measured: 6.3e-8 apart (relative).
        assert epoch_loss == pytest.approx(expected, rel=1e-6)
    assert record.epochs[0] > record.epochs[1] > record.epochs[2]


def test_predict_step_returns_predictions_in_row_order():
    x = torch.linspace(-1, 1, 50)
    dm = RegressionDataModule(x, 2 * x, batch_size=8, val_fraction=0.0)
    module = RegressionModule(LinearRegression(1))
    preds = torch.cat(make_trainer().predict(module, datamodule=dm))
    with torch.no_grad():
        torch.testing.assert_close(preds, module(x[:, None]))
