"""RegressionModule without the fast path: Lightning's own loop, and checkpoints of the fast path still load."""

from __future__ import annotations

import inspect

from lr_lightning import LinearRegression, RegressionModule, StepsPerCallModule
from lr_lightning.core.checkpoints import unknown_hyperparameters
from lr_lightning.core.data import SyntheticDataModule

from ..conftest import make_trainer, sgd


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

    from lr_lightning.core.cli import fit_main

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
    import sys

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
