"""Smoke test of the template: a brand-new network with a new loss, neither from the package, trains one
fast_dev_run step through the API and through the command line (scripts/fit.py's main). Nothing here imports
lr_lightning.exact, tutorial or benchmark: it stays green with them deleted (tests/test_deletable.py)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch import nn

from lr_lightning import RegressionModule
from lr_lightning.core.cli import fit_main
from lr_lightning.core.data import SyntheticDataModule
from tests.conftest import run_main, sgd


class SmokeNet(nn.Module):
    """A small network of a user's: one tanh hidden layer; counts its forward calls."""

    calls = 0

    def __init__(self, in_features: int, out_features: int = 1, width: int = 4) -> None:
        super().__init__()
        self.in_features, self.out_features, self.width = in_features, out_features, width
        self.body = nn.Sequential(nn.Linear(in_features, width), nn.Tanh(), nn.Linear(width, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        return self.body(x)


class LogCoshLoss(nn.Module):
    """A loss of a user's: mean log(cosh(prediction - target)); counts its calls."""

    calls = 0

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        return torch.log(torch.cosh(prediction - target)).mean()


@pytest.fixture(autouse=True)
def _count_from_zero() -> None:
    SmokeNet.calls = LogCoshLoss.calls = 0


def test_a_new_network_with_a_new_loss_trains_through_the_api() -> None:
    dm = SyntheticDataModule(n_samples=64, n_features=3, batch_size=16, seed=0)
    dm.setup("fit")
    module = RegressionModule(SmokeNet(3), loss=LogCoshLoss(), optimizer=sgd(0.1), **dm.module_inputs())
    before = [p.detach().clone() for p in module.model.parameters()]
    trainer = L.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    assert isinstance(module.model, SmokeNet) and isinstance(module.loss_fn, LogCoshLoss)
    assert SmokeNet.calls >= 2 and LogCoshLoss.calls >= 2  # one training and one validation batch at least
    assert any(not torch.equal(a, b) for a, b in zip(before, module.model.parameters(), strict=True))  # a step


def test_a_new_network_with_a_new_loss_trains_through_the_cli(tmp_path) -> None:
    result = run_main(fit_main, "--data", "synthetic", "--data.n_samples", "64", "--data.n_features", "3",
                      "--model", "tests.test_train.SmokeNet", "--model.width", "5",
                      "--loss", "tests.test_train.LogCoshLoss", "--trainer.fast_dev_run", "true", "--figures", "0",
                      "--log_dir", str(tmp_path / "logs"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Trained SmokeNet" in result.stdout, result.stdout
    assert SmokeNet.calls >= 2 and LogCoshLoss.calls >= 2
    ckpt = torch.load(next((tmp_path / "logs").rglob("last.ckpt")), weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert hp["model"] == {"class_path": "tests.test_train.SmokeNet",
                           "init_args": {"in_features": 3, "out_features": 1, "width": 5}}
    assert hp["loss"]["class_path"] == "tests.test_train.LogCoshLoss"
