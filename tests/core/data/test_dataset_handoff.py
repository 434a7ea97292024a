"""DatasetDataModule(train, val) positionally, and its hand-off to RegressionModule: the samples' dtype and width."""

import pytest
import torch
from torch.utils.data import TensorDataset

from lr_lightning import DatasetDataModule, LinearRegression, RegressionModule

from ...conftest import make_trainer, sgd


def _data(n=32, width=3, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, width, generator=g, dtype=dtype)
    return TensorDataset(x, x.sum(1, keepdim=True))


def test_train_and_val_are_positional():
    train, val = _data(32), _data(8)
    dm = DatasetDataModule(train, val)
    assert dm.train is train and dm.val is val and dm.test is None
    dm = DatasetDataModule(train, val, _data(4))
    assert len(dm.test) == 4


def test_positional_val_with_a_fraction_is_refused():
    with pytest.raises(ValueError, match="not both"):
        DatasetDataModule(_data(), _data(8), val_fraction=0.25)


def test_module_inputs_report_float64_and_the_module_trains_float64():
    dm = DatasetDataModule(_data(dtype=torch.float64), _data(8, dtype=torch.float64))
    assert dm.module_inputs() == {"weights_dtype": "float64"} and dm.n_features == 3
    module = RegressionModule(LinearRegression(3), optimizer=sgd(0.1), **dm.module_inputs())
    make_trainer(max_epochs=1).fit(module, datamodule=dm)
    assert next(module.model.parameters()).dtype == torch.float64


def test_a_network_of_the_wrong_width_is_refused_in_one_line():
    dm = DatasetDataModule(_data(width=5), _data(8, width=5))
    module = RegressionModule(LinearRegression(3), optimizer=sgd(0.1), **dm.module_inputs())
    with pytest.raises(ValueError, match=r"takes 3 input\(s\), the data has 5 feature\(s\)") as err:
        make_trainer(max_epochs=1).fit(module, datamodule=dm)
    assert "\n" not in str(err.value)


def test_a_float64_dataset_without_module_inputs_is_refused_in_one_line():
    dm = DatasetDataModule(_data(dtype=torch.float64))
    module = RegressionModule(LinearRegression(3), optimizer=sgd(0.1))
    with pytest.raises(ValueError, match="the data is float64, the network float32"):
        make_trainer(max_epochs=1).fit(module, datamodule=dm)


def test_samples_that_are_not_vectors_declare_no_width():
    images = TensorDataset(torch.zeros(4, 1, 2, 2), torch.zeros(4, 1))
    assert DatasetDataModule(images).n_features is None
