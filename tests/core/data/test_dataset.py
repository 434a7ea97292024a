"""DatasetDataModule: any torch Dataset trains RegressionModule through standard DataLoaders."""

import pytest
import torch
from torch.utils.data import TensorDataset, default_collate

from lr_lightning import DatasetDataModule, LinearRegression, RegressionModule

from ...conftest import make_trainer, sgd


def _data(n=64, one_d=False):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    y = x @ torch.tensor([2.0, -1.0]) + 0.5
    return TensorDataset(x, y if one_d else y[:, None])


def _fit(dm, epochs):
    torch.manual_seed(0)
    module = RegressionModule(LinearRegression(2), optimizer=sgd(0.1), **dm.module_inputs())
    trainer = make_trainer(max_epochs=epochs)
    trainer.fit(module, datamodule=dm)
    return trainer.validate(module, datamodule=dm, verbose=False)[0]["val/loss"]


def test_regression_module_trains_on_a_dataset_with_a_1d_target_made_a_column():
    dm = DatasetDataModule(_data(one_d=True), batch_size=16, val_fraction=0.25)
    x, y = next(iter(dm.train_dataloader()))
    assert y.shape == (16, 1)
    assert _fit(dm, 20) < 0.1 * _fit(DatasetDataModule(_data(one_d=True), batch_size=16, val_fraction=0.25), 1)


def test_the_split_is_seeded_and_a_collate_leaving_y_1d_is_refused():
    a, b = (DatasetDataModule(_data(), val_fraction=0.25, seed=3) for _ in range(2))
    assert a.val.indices == b.val.indices and len(a.train) == 48
    dm = DatasetDataModule(_data(one_d=True), collate_fn=default_collate)
    with pytest.raises(ValueError, match=r"targets of shape \(32,\); a batch's y must be \(batch, outputs\)"):
        next(iter(dm.train_dataloader()))


def test_trainer_predict_serves_every_sample_in_order_or_the_predict_dataset():
    torch.manual_seed(0)
    data = _data(n=20)
    dm = DatasetDataModule(data, batch_size=8, val_fraction=0.25)
    module = RegressionModule(LinearRegression(2), optimizer=sgd(0.1), **dm.module_inputs())
    trainer = make_trainer(max_epochs=1)
    trainer.fit(module, datamodule=dm)
    expected = module(data.tensors[0]).detach()
    got = torch.cat(trainer.predict(module, datamodule=dm))  # every sample, in the dataset's own order
    assert got.shape == (20, 1) and torch.allclose(got, expected)
    mine = TensorDataset(data.tensors[0][:5], data.tensors[1][:5])
    dm = DatasetDataModule(train=data, predict=mine, batch_size=8)
    assert torch.allclose(torch.cat(trainer.predict(module, datamodule=dm)), expected[:5])
