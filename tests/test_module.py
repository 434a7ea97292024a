import lightning as L
import pytest
import torch
from torch import nn

from lr_lightning import LinearRegression, RegressionDataModule, RegressionModule

from .conftest import make_trainer


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
    dm = RegressionDataModule.tutorial()
    record = RecordEpochs()
    make_trainer(max_epochs=10, callbacks=[record], **dm.trainer_defaults()).fit(RegressionModule(model), datamodule=dm)
    w = [round(w, 3) for w, _ in record.rows]
    assert w == [0.300, 0.555, 0.772, 0.956, 1.113, 1.246, 1.359, 1.455, 1.537, 1.606]
    assert record.rows[0][1] == pytest.approx(30.0, rel=1e-6)  # loss in epoch 1, before its update
    assert record.rows[1][1] == pytest.approx(21.675, rel=1e-6)  # measured: 3.5e-8 off (float32)


def test_default_optimizer_is_plain_sgd_with_exactly_lr():
    opt = RegressionModule(LinearRegression(2), lr=0.05).configure_optimizers()
    assert type(opt) is torch.optim.SGD
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"]) == (0.05, 0.0, 0.0, False)
    adam = RegressionModule(LinearRegression(2), optimizer="adam", lr=0.1).configure_optimizers()
    assert type(adam) is torch.optim.Adam and adam.param_groups[0]["lr"] == 0.1


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [({"lr": 0.0}, "lr must be a finite number > 0"), ({"lr": float("nan")}, "lr must be a finite number > 0"),
     ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'; choose one of sgd, adam"),
     ({"optimizer": "adam", "momentum": 0.9}, "momentum applies to sgd only")],
)
def test_bad_settings_raise(kwargs, words):
    with pytest.raises(ValueError) as e:
        RegressionModule(LinearRegression(1), **kwargs)
    assert words in str(e.value)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_learns_known_weights_from_synthetic_data(optimizer):
    dm = RegressionDataModule.synthetic(n_samples=2000, n_features=3, noise=0.05, seed=1, batch_size=64)
    module = RegressionModule(LinearRegression(dm.n_features), lr=0.05, optimizer=optimizer)
    make_trainer(max_epochs=15, **dm.trainer_defaults()).fit(module, datamodule=dm)
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
    dm = RegressionDataModule.synthetic(n_samples=230, noise=0.5, batch_size=32, val_fraction=0.2, test_fraction=0.1)
    module = RegressionModule(LinearRegression(1), lr=0.1)
    trainer = make_trainer(max_epochs=3, **dm.trainer_defaults())
    trainer.fit(module, datamodule=dm)
    assert {"train/loss", "train/loss_step", "val/loss", "val/mae", "val/r2"} <= set(
        trainer.callback_metrics)
    # val metrics are over the whole split (46 samples, a partial last batch), not a mean of batch means.
    x, y = dm.splits["val"]
    with torch.no_grad():
        pred = module(x)
    m = trainer.callback_metrics
    # Measured: 1.9e-7 apart (relative): torchmetrics sums in another order.
    assert m["val/loss"].item() == pytest.approx(((pred - y) ** 2).mean().item(), rel=1e-5)
    assert m["val/mae"].item() == pytest.approx((pred - y).abs().mean().item(), rel=1e-5)
    r2 = 1 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert m["val/r2"].item() == pytest.approx(r2.item(), rel=1e-5)
    result = trainer.test(module, datamodule=dm, verbose=False)[0]
    assert set(result) == {"test/loss", "test/mae", "test/r2"}


class RecordSteps(L.Callback):
    """Every step's loss and batch size, and train/loss as callbacks see it at each epoch's end."""

    def __init__(self):
        self.steps, self.epochs = [[]], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.steps[-1].append((outputs["loss"].item(), len(batch[0])))

    def on_train_epoch_end(self, trainer, module):
        self.epochs.append(trainer.callback_metrics["train/loss"].item())
        self.steps.append([])


def test_epoch_train_loss_is_the_weighted_mean_of_that_epochs_steps():
    dm = RegressionDataModule.synthetic(n_samples=100, noise=0.5, batch_size=32, val_fraction=0.0)  # 32, 32, 32, 4
    record = RecordSteps()
    make_trainer(max_epochs=3, callbacks=[record], **dm.trainer_defaults()).fit(
        RegressionModule(LinearRegression(1), lr=0.1), datamodule=dm)
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


def _fit_and_save(module, tmp_path):
    dm = RegressionDataModule.synthetic(n_samples=100, n_features=2, val_fraction=0.2)
    trainer = make_trainer(max_epochs=2, **dm.trainer_defaults())
    trainer.fit(module, datamodule=dm)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_checkpoint_rebuilds_the_model_without_passing_it(tmp_path):
    module = RegressionModule(LinearRegression(2, bias=False), lr=0.03, optimizer="adam")
    path = _fit_and_save(module, tmp_path)
    loaded = RegressionModule.load_from_checkpoint(path, weights_only=True)  # no pickled code needed
    assert isinstance(loaded.model, LinearRegression) and loaded.model.linear.bias is None
    assert (loaded.hparams.lr, loaded.hparams.optimizer) == (0.03, "adam")
    x = torch.randn(7, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), module(x))


class Quadratic(nn.Module):
    """A user's own network that follows the convention: init arguments stored as attributes."""

    def __init__(self, in_features: int, hidden: int = 4):
        super().__init__()
        self.in_features, self.hidden = in_features, hidden
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x)


class Opaque(nn.Module):
    """A network whose init arguments cannot be recovered (`width` is not kept)."""

    def __init__(self, width: int):
        super().__init__()
        self.linear = nn.Linear(2, width)
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        return self.out(self.linear(x))


def test_any_conventional_network_round_trips(tmp_path):
    module = RegressionModule(Quadratic(2, hidden=3))
    assert module.hparams.model == {"class_path": f"{__name__}.Quadratic", "init_args": {"in_features": 2, "hidden": 3}}
    loaded = RegressionModule.load_from_checkpoint(_fit_and_save(module, tmp_path))
    x = torch.randn(5, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), module(x))


def test_unrecordable_network_warns_and_loads_when_passed(tmp_path):
    with pytest.warns(UserWarning, match="cannot record how to rebuild Opaque"):
        module = RegressionModule(Opaque(5))
    assert module.hparams.model is None
    path = _fit_and_save(module, tmp_path)
    with pytest.raises(ValueError, match="pass it: RegressionModule.load_from_checkpoint"):
        RegressionModule.load_from_checkpoint(path)
    with pytest.warns(UserWarning):
        loaded = RegressionModule.load_from_checkpoint(path, model=Opaque(5))
    x = torch.randn(5, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), module(x))
