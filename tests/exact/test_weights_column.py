"""A weight column on the data side (issue #23): batches ``(x, y, w)``, the column kept out of the features, and the
SGD module training the weighted loss to the exact WLS solution."""

from __future__ import annotations

from functools import partial

import lightning as L
import numpy as np
import pytest
import torch

from lr_lightning import LinearRegression, RegressionDataModule, RegressionModule
from lr_lightning.core.data import CSVDataModule
from lr_lightning.exact.solver import least_squares


def _data(n: int = 120, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    w = rng.uniform(0.1, 4.0, size=n)
    y = x @ [1.5, -0.5] + 2.0 + rng.normal(size=n) * (1 + 2 * (x[:, 0] > 0))  # heteroscedastic: WLS != OLS
    return x, y, w


def test_batches_carry_weights_only_when_given() -> None:
    x, y, w = _data()
    plain = next(iter(RegressionDataModule(x, y, batch_size=8).train_dataloader()))
    assert len(plain) == 2
    dm = RegressionDataModule(x, y, weights=w, batch_size=8, dtype="float64")
    xb, yb, wb = next(iter(dm.train_dataloader()))
    assert wb.shape == (8, 1) and wb.dtype == torch.float64 and dm.n_features == 2
    # The weights follow their rows through the shuffled split: each batch row's weight is its own.
    rows = {tuple(np.round(r, 12)): v for r, v in zip(x, w, strict=True)}
    assert [rows[tuple(np.round(r, 12))] for r in xb.numpy()] == pytest.approx(wb.numpy()[:, 0].tolist())
    assert len(next(iter(dm.predict_dataloader()))) == 2  # predictions need no weights
    assert len(next(iter(dm.val_dataloader()))) == 3


def test_csv_weight_column_is_not_a_feature(tmp_path) -> None:
    x, y, w = _data(30)
    path = tmp_path / "d.csv"
    table = zip(x[:, 0], w, x[:, 1], y, strict=True)
    lines = ["a,w,b,y"] + [",".join(repr(float(c)) for c in row) for row in table]
    path.write_text("\n".join(lines) + "\n")
    dm = CSVDataModule(path, weights="w", val_fraction=0.0, dtype="float64")
    assert dm.feature_names == ["a", "b"] and dm.n_features == 2 and dm.hparams.weights == "w"
    xs, _, ws = dm.raw_split("train", ordered=True)
    assert np.array_equal(xs.numpy(), x) and np.array_equal(ws.numpy()[:, 0], w)
    with pytest.raises(ValueError, match=r"d.csv: no weights column 'v'; the feature columns are a, w, b"):
        CSVDataModule(path, weights="v")
    (tmp_path / "bad.csv").write_text("a,w,y\n1,1,1\n2,-2,3\n3,1,2\n")
    with pytest.raises(ValueError, match=r"bad.csv: data row 2 \(1-based, header excluded\), column 'w': weight -2.0"):
        CSVDataModule(tmp_path / "bad.csv", weights="w")


def test_sgd_with_weights_agrees_with_exact_wls() -> None:
    x, y, w = _data()
    dm = RegressionDataModule(x, y, weights=w, val_fraction=0.0, batch_size=len(y), dtype="float64")
    lbfgs = partial(torch.optim.LBFGS, lr=1, line_search_fn="strong_wolfe", tolerance_grad=1e-14,
                    tolerance_change=0, history_size=20)
    torch.manual_seed(0)
    module = RegressionModule(LinearRegression(2), optimizer=lbfgs, **dm.module_inputs())
    L.Trainer(max_epochs=20, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False, accelerator="cpu", precision="64-true").fit(module, datamodule=dm)
    weight, bias = least_squares(x, y, weights=w)
    unweighted, _ = least_squares(x, y)
    got = module.model.linear.weight.detach().numpy()
    assert np.abs(got - weight).max() < 1e-8
    assert abs(module.model.linear.bias.item() - bias[0]) < 1e-8
    assert np.abs(weight - unweighted).max() > 1e-2  # the weights matter on this data: the test can fail


def test_weighted_loss_is_the_weighted_mean_and_needs_a_reduction() -> None:
    from lr_lightning.core.weighting import elementwise, step_loss

    preds, y = torch.zeros(3, 2), torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    w = torch.tensor([[1.0], [0.0], [3.0]])
    assert step_loss(torch.nn.MSELoss(), preds, y, [w]).item() == pytest.approx((1 + 27) / 4)
    assert step_loss(torch.nn.MSELoss(), preds, y, []).item() == pytest.approx(14 / 3)
    with pytest.raises(ValueError, match="has no 'reduction'"):
        elementwise(lambda p, t: (p - t).abs().mean())


def test_parquet_and_npy_weight_columns_in_memory_or_streamed(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lr_lightning.core.data import NpyDataModule, ParquetDataModule

    a = np.abs(np.random.default_rng(0).normal(size=(50, 4)))
    pq.write_table(pa.table({"a": a[:, 0], "w": a[:, 1], "b": a[:, 2], "y": a[:, 3]}), tmp_path / "d.parquet")
    dm = ParquetDataModule(tmp_path / "d.parquet", weights="w", in_memory=True, val_fraction=0.0)
    assert dm.feature_names == ["a", "b"] and np.array_equal(dm.weights[:, 0], a[:, 1])
    streamed = ParquetDataModule(tmp_path / "d.parquet", weights="w", val_fraction=0.0)  # read beside each block
    assert streamed.feature_names == ["a", "b"] and streamed.table.side_names == ["w"]
    np.save(tmp_path / "d.npy", a)
    dm = NpyDataModule(tmp_path / "d.npy", weights="x1", in_memory=True, val_fraction=0.0)
    assert dm.feature_names == ["x0", "x2"] and np.array_equal(dm.weights[:, 0], a[:, 1])
    streamed = NpyDataModule(tmp_path / "d.npy", weights="x1", val_fraction=0.0)
    assert streamed.feature_names == ["x0", "x2"] and streamed.table.side_names == ["x1"]
