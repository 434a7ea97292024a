"""A subclass's argument a checkpoint cannot hold (a tensor) is named in one warning when a checkpoint is saved."""

import warnings

import pytest
import torch
from torch.utils.data import TensorDataset

from lr_lightning import DatasetDataModule, LinearRegression, RegressionModule

from ..conftest import make_trainer, sgd


class WeightedModule(RegressionModule):
    def __init__(self, model, weights: torch.Tensor, scale: float = 1.0, **kwargs):
        super().__init__(model, **kwargs)
        self.register_buffer("weights", weights)


def _save(module, path):
    data = TensorDataset(torch.randn(16, 2, generator=torch.Generator().manual_seed(0)), torch.randn(16, 1))
    trainer = make_trainer(max_epochs=1)
    trainer.fit(module, datamodule=DatasetDataModule(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.save_checkpoint(path)
        trainer.save_checkpoint(path)  # once, not at every checkpoint
    return [str(w.message) for w in caught]


def test_a_tensor_argument_is_named_once_at_save_time(tmp_path):
    messages = _save(WeightedModule(LinearRegression(2), torch.ones(2), scale=2.0, optimizer=sgd(0.1)),
                     tmp_path / "m.ckpt")
    assert len(messages) == 1 and "WeightedModule: the argument 'weights' is not saved in the checkpoint" in \
        messages[0] and "load_from_checkpoint(path, weights=...)" in messages[0], messages
    hparams = torch.load(tmp_path / "m.ckpt", weights_only=True)["hyper_parameters"]
    assert hparams["scale"] == 2.0 and "weights" not in hparams  # the plain one is recorded


def test_regression_module_itself_warns_nothing(tmp_path):
    assert _save(RegressionModule(LinearRegression(2), optimizer=sgd(0.1)), tmp_path / "m.ckpt") == []


@pytest.mark.parametrize("reference", [None, {"val": 1.0}])
def test_linear_regression_module_warns_nothing(tmp_path, reference):
    from lr_lightning.core.linear import LinearRegressionModule

    module = LinearRegressionModule(LinearRegression(2), optimizer=sgd(0.1), reference_mse=reference)
    assert _save(module, tmp_path / "m.ckpt") == []
