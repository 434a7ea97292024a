"""Standardization and polynomial features: fitted on training rows only, carried by the model, exact."""

from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from lr_lightning import LinearRegression, LinearRegressionModule, RegressionDataModule, SyntheticDataModule
from lr_lightning.exact import nist

from ..conftest import lbfgs, make_trainer, sgd
from .test_least_squares import NIST_DIR, needs_nist


def _fit(dm, epochs=40, optimizer=None, precision="64-true", bias=True, **kwargs):
    optimizer = optimizer or lbfgs(torch.float64 if precision.startswith("64") else torch.float32)
    module = LinearRegressionModule(LinearRegression(dm.n_features, bias=bias), optimizer=optimizer,
                                    **dm.module_inputs(), **kwargs)
    trainer = make_trainer(max_epochs=epochs, precision=precision)
    trainer.fit(module, datamodule=dm)
    return module, trainer


def test_statistics_come_from_the_training_split_only():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 2))
    x[:40] += 50  # rows that, if they leaked into the statistics, would move the mean far
    y = x @ [1.0, -2.0] + 3
    dm = RegressionDataModule(x, y, val_fraction=0.2, test_fraction=0.2, standardize=True)
    dm.setup()
    before = dict(dm.feature_map.spec)
    train_x, train_y = dm.raw_split("train")
    # Measured: the statistics agree to 2e-16, the served features are centred to 8e-9 and scaled to 1.1e-8.
    assert before["feature_mean"] == pytest.approx(train_x.double().mean(0).tolist(), rel=1e-6)
    assert before["feature_scale"] == pytest.approx(train_x.double().std(0).tolist(), rel=1e-6)
    assert before["y_mean"] == pytest.approx([train_y.double().mean().item()], rel=1e-6)
    assert before["feature_mean"] != pytest.approx(dm.x.double().mean(0).tolist(), rel=1e-3)  # not all rows
    # The served training features are standardized: mean 0, standard deviation 1.
    xs, ys = dm.splits["train"]
    assert xs.double().mean(0).abs().max() < 1e-6 and (xs.double().std(0) - 1).abs().max() < 1e-5
    assert abs(ys.double().mean().item()) < 1e-6


def test_known_polynomial_is_recovered_in_raw_powers_and_forward_agrees_with_coefficients():
    x = np.linspace(-3.0, 5.0, 60)
    y = 2.0 - 1.5 * x + 0.5 * x**2 - 0.1 * x**3
    dm = RegressionDataModule(x, y, batch_size=60, val_fraction=0.0, standardize=True, polynomial_degree=3,
                              dtype=torch.float64)
    assert dm.n_features == 3
    module, _ = _fit(dm)
    state = torch.random.get_rng_state()
    weight, bias = module.coefficients()
    assert torch.equal(torch.random.get_rng_state(), state)  # no side effect on the global random state
    np.testing.assert_allclose(weight, [[-1.5, 0.5, -0.1]], rtol=1e-8)  # measured: 4.4e-16 off
    np.testing.assert_allclose(bias, [2.0], rtol=1e-8)
    # module(x_raw) is in original units and is the affine map coefficients() reports.
    probe = np.array([-2.5, 0.0, 1.0, 4.2])
    with torch.no_grad():
        pred = module(torch.tensor(probe[:, None])).numpy()[:, 0]
    # Measured: 1.8e-15 apart.
    np.testing.assert_allclose(pred, np.stack([probe, probe**2, probe**3], 1) @ weight[0] + bias[0], rtol=1e-10)


def test_without_intercept_stays_without_one():
    x = np.array([1.0, 2.0, 3.0, 5.0, 8.0, 13.0])
    y = 3 * x + 4  # has an intercept the model must not take
    dm = RegressionDataModule(x, y, batch_size=6, val_fraction=0.0, standardize=True, bias=False,
                              dtype=torch.float64)
    module, _ = _fit(dm, bias=False)
    weight, bias = module.coefficients()
    assert bias is None
    assert weight[0, 0] == pytest.approx((x * y).sum() / (x * x).sum(), rel=1e-10)  # through the origin
    with torch.no_grad():
        assert module(torch.zeros(1, 1, dtype=torch.float64)).item() == 0.0


def test_checkpoint_round_trip_keeps_the_normalization(tmp_path):
    x = np.linspace(0, 10, 50)
    dm = RegressionDataModule(x, 100 + 5 * x - 0.3 * x**2, val_fraction=0.2, standardize=True,
                              polynomial_degree=2, dtype=torch.float64)
    module, trainer = _fit(dm, epochs=10)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = LinearRegressionModule.load_from_checkpoint(path, weights_only=True)
    raw = torch.tensor([[0.5], [7.25]], dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.double()(raw), module(raw))
    assert loaded.hparams.normalization == dm.feature_map.spec
    np.testing.assert_allclose(loaded.coefficients()[0], module.coefficients()[0])  # measured: 1.5e-8 (relative)


def test_val_excess_mse_is_the_gap_to_the_least_squares_optimum():
    from lr_lightning.exact.reference import optimum

    dm = SyntheticDataModule(n_samples=300, n_features=2, noise=0.3, val_fraction=0.3, batch_size=32)
    reference = optimum(dm)
    module, trainer = _fit(dm, epochs=3, optimizer=sgd(0.05), precision="32-true", reference_mse=reference["mse"])
    m = trainer.callback_metrics
    # Measured: 1.9e-9 apart.
    assert m["val/excess_mse"].item() == pytest.approx(m["val/mse"].item() - reference["mse"]["val"], abs=1e-6)
    assert m["val/mse"].item() > reference["mse"]["val"]  # three epochs of SGD are not the optimum yet
    trainer.validate(module, datamodule=dm, verbose=False)  # a second validation: the same figure again
    assert trainer.callback_metrics["val/excess_mse"].item() == pytest.approx(m["val/excess_mse"].item(), abs=1e-6)


def test_coefficients_refuses_a_network_that_is_not_linear():
    class Bent(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1)

        def forward(self, x):
            return torch.tanh(self.linear(x))

    with pytest.warns(UserWarning):
        module = LinearRegressionModule(Bent())
    with pytest.raises(ValueError, match="coefficients\\(\\) needs a linear model; Bent is not affine"):
        module.coefficients()
    with pytest.warns(UserWarning, match="cannot record how to rebuild the model Sequential"):
        two_layers = LinearRegressionModule(nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1)))
    with pytest.raises(ValueError, match="one nn.Linear holding all parameters"):
        two_layers.coefficients()


# "Measured" (see conftest.py) here also varies the initial weights: seeds 0-9 for SGD, 0-2 for LBFGS.


@needs_nist
@pytest.mark.parametrize("name", nist.NAMES)
def test_trained_lbfgs_float64_meets_the_nist_goals(name):
    d = nist.load(NIST_DIR / f"{name}.dat")
    # Measured: 11.5-15 on the first five; on the rest 6.07-6.54 (Wampler5) and more.
    goal = 7 if name in ("Norris", "Pontius", "NoInt1", "NoInt2", "Longley") else 5
    estimate = nist.train(d, nist.lbfgs("float64"), precision="64-true", epochs=50)
    assert nist.min_lre(estimate, d.certified) >= goal


# What float32 training can promise. Float32 weights hold about 7 digits, and Norris's and Pontius's raw intercept
# (ȳ − B1·x̄ for Norris) cancels about 3 of them: the float32 weights nearest the exact optimum score 4.13 (Norris)
# and 4.50 (Pontius), their neighbours one float32 step (ulp) away as little as 3.77 and 3.88, two steps away 3.58
# and 3.63. So 4 digits is float32's own limit there, not a goal any learning rate or schedule can meet with a
# margin. The goals hold for any weights within two ulps of the optimum (NoInt1/2, with no intercept to cancel
# digits: 6.83 and 6.89). Measured: Norris 4.01-4.02, Pontius 3.95-4.05, NoInt1 7.04, NoInt2 6.96.
SGD_FLOAT32_GOALS = {"Norris": 3.5, "Pontius": 3.5, "NoInt1": 6.5, "NoInt2": 6.5}


@needs_nist
@pytest.mark.parametrize("name", list(SGD_FLOAT32_GOALS))
def test_trained_sgd_float32_meets_the_nist_goals(name):
    d = nist.load(NIST_DIR / f"{name}.dat")
    estimate = nist.train(d, partial(torch.optim.SGD, lr=0.1), precision="32-true", epochs=500)
    assert nist.min_lre(estimate, d.certified) >= SGD_FLOAT32_GOALS[name]
