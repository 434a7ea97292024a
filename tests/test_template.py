"""The package as a template: another network, a user's own network, several outputs, schedules, pictures."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

from lr_lightning import LinearRegression, LinearRegressionModule, MLPRegressor, RegressionDataModule, RegressionModule
from lr_lightning.core.cli import fit_main
from lr_lightning.core.data import SyntheticDataModule
from lr_lightning.core.predict import predict_main

from .conftest import make_trainer, run_main, sgd


class TinyNet(nn.Module):
    """A user's own network, defined outside the package: the CLI must train it from a config's class_path."""

    def __init__(self, in_features: int, out_features: int = 1, width: int = 8) -> None:
        super().__init__()
        self.in_features, self.out_features, self.width = in_features, out_features, width
        self.net = nn.Sequential(nn.Linear(in_features, width), nn.Tanh(), nn.Linear(width, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _sine_csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, 1000)
    y = np.sin(3 * x) + 0.05 * rng.standard_normal(1000)
    path = tmp_path / "sine.csv"
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header="x,y", comments="")
    return path


def _fit(capsys, tmp_path, *flags):
    code = fit_main(["--log_dir", str(tmp_path / "logs"), "--progress_bar", "false", *flags])
    out = capsys.readouterr()
    assert code == 0, out.err[-2000:]
    return out.out


def _metric(stdout, key):
    return float(stdout.split(f"{key} ")[1].split(",")[0].split()[0])


@pytest.mark.slow  # 8 s: a 10-epoch and a 20-epoch fit through the command line
def test_mlp_fits_a_sine_that_the_linear_model_cannot_with_the_same_module_data_and_cli(tmp_path, capsys):
    data = str(_sine_csv(tmp_path))
    common = ["--data", data, "--data.standardize", "true", "--optimizer", "Adam", "--optimizer.lr", "0.01"]
    # The line has converged by 10 epochs (measured val/r2: 0.1273 at 10, 0.1270 at 40); the MLP by 20 is past 0.95.
    linear = _fit(capsys, tmp_path, *common, "--max_epochs", "10")
    mlp = _fit(capsys, tmp_path, *common, "--max_epochs", "20", "--model", "MLPRegressor", "--model.hidden", "[64,64]",
               "--plot", str(tmp_path / "fit.png"))
    assert _metric(linear, "val/r2") < 0.5  # measured: 0.127
    assert _metric(mlp, "val/r2") >= 0.95  # measured: 0.988 (0.983 at 15 epochs, 0.993 at 40)
    assert "Trained MLPRegressor" in mlp and "Plot: " in mlp
    png = (tmp_path / "fit.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    image = imread(tmp_path / "fit.png")
    assert image.shape[:2] == (450, 1100) and image[..., :3].std() > 0.05  # drawn, not blank

    # The checkpoint rebuilds the MLP by itself, and predict.py serves it.
    ckpt = tmp_path / "logs/version_1/checkpoints/best.ckpt"
    module = RegressionModule.load_from_checkpoint(ckpt, weights_only=True)
    assert isinstance(module.model, MLPRegressor) and module.model.hidden == [64, 64]
    with torch.no_grad():
        assert module(torch.tensor([[0.5]])).item() == pytest.approx(np.sin(1.5), abs=0.15)  # measured: 0.021 off
    served = run_main(predict_main, "--ckpt", str(ckpt), "--x", "0.5", cwd=tmp_path)
    assert served.returncode == 0, served.stderr
    assert float(served.stdout.splitlines()[-1].split(",")[-1]) == pytest.approx(module(torch.tensor([[0.5]])).item(),
                                                                           rel=1e-5)


def test_a_users_own_network_trains_from_the_config_class_path_and_reloads(tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text("data:\n  class_path: SyntheticDataModule\n  init_args: {n_features: 3}\nmax_epochs: 2\n"
                      "model:\n  class_path: tests.test_template.TinyNet\n  init_args:\n    width: 5\n")
    out = _fit(capsys, tmp_path, "--config", str(config))
    assert "Trained TinyNet" in out
    last = tmp_path / "logs/version_0/checkpoints/last.ckpt"
    # The recipe names a class outside the package: rebuilt only when the loader trusts it.
    with pytest.raises(ValueError, match=r"model class 'tests\.test_template\.TinyNet' is not trusted"):
        RegressionModule.load_from_checkpoint(last, weights_only=True)
    module = RegressionModule.load_from_checkpoint(last, weights_only=True, trusted=[TinyNet])
    assert isinstance(module.model, TinyNet) and (module.model.in_features, module.model.width) == (3, 5)
    assert module.hparams.model == {"class_path": "tests.test_template.TinyNet",
                                    "init_args": {"in_features": 3, "out_features": 1, "width": 5}}


@pytest.mark.parametrize(("flags", "words"), [
    (["--model", "nowhere.Net"], "--model: cannot use 'nowhere.Net' (No module named 'nowhere')"),
    (["--model", "NoSuchNet"], "--model: unknown class 'NoSuchNet'"),
    (["--model.hidden", "[8]"], "--model.hidden: not an argument of the default model"),
    (["--model", "MLPRegressor", "--model.hidden", "[0]"], "hidden must be a list of positive layer widths"),
])
def test_a_bad_model_flag_is_one_line_and_exit_2(tmp_path, capsys, flags, words):
    assert fit_main(["--log_dir", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_multi_output_shapes_and_metrics_per_output_and_averaged(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 3))
    y = np.column_stack([x @ [1.0, 2.0, 0.0] + 1, 0.1 * (x @ [0.0, -1.0, 3.0]) + rng.standard_normal(400)])
    dm = RegressionDataModule(x, y, batch_size=40, target_names=["a", "b"])
    module = LinearRegressionModule(LinearRegression(3, 2), optimizer=sgd(0.05), **dm.module_inputs())
    trainer = make_trainer(max_epochs=20)
    trainer.fit(module, datamodule=dm)
    assert module(torch.zeros(7, 3)).shape == (7, 2)
    m = {k: v.item() for k, v in trainer.callback_metrics.items()}
    assert m["val/mse"] == pytest.approx((m["val/mse_a"] + m["val/mse_b"]) / 2, rel=1e-5)
    assert m["val/r2"] == pytest.approx((m["val/r2_a"] + m["val/r2_b"]) / 2, rel=1e-5)
    assert m["val/r2_a"] > 0.99 and m["val/r2_b"] < 0.7  # the second output is mostly noise; measured: 1.0, 0.096
    weight, bias = module.coefficients()
    assert weight.shape == (2, 3) and bias.shape == (2,)


def test_multi_output_end_to_end_from_x_and_y_files(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 2)).astype(np.float32)
    (tmp_path / "xy").mkdir()
    np.save(tmp_path / "xy/x.npy", x)
    np.save(tmp_path / "xy/y.npy", np.column_stack([x @ [1.0, -1.0], x @ [2.0, 0.5] + 3]).astype(np.float32))
    out = _fit(capsys, tmp_path, "--data", str(tmp_path / "xy"), "--max_epochs", "30", "--optimizer.lr", "0.05")
    # One fitted equation per output: y0 = +1·x0 -1·x1 +0, y1 = +2·x0 +0.5·x1 +3.
    for name, expected in (("y0", [1.0, -1.0, 0.0]), ("y1", [2.0, 0.5, 3.0])):
        line = next(line for line in out.splitlines() if line.strip().startswith(f"{name} = "))
        terms = line.split(" = ")[1].replace("·x0", "").replace("·x1", "").split()
        np.testing.assert_allclose([float(t) for t in terms], expected, atol=0.02)  # measured: 1.2e-4 off


@pytest.mark.parametrize(("scheduler", "final_lr"), [
    ({"class_path": "CosineAnnealingLR", "init_args": {"T_max": 6}}, 0.0),
    ({"class_path": "torch.optim.lr_scheduler.StepLR", "init_args": {"step_size": 2}}, 0.1 * 0.1**3),
    (functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau, factor=0.5, patience=5), 0.1),
])
def test_any_torch_scheduler_steps_each_epoch(scheduler, final_lr):
    dm = SyntheticDataModule(n_samples=200)
    module = RegressionModule(LinearRegression(1), optimizer=sgd(0.1), lr_scheduler=scheduler)
    trainer = make_trainer(max_epochs=6)
    trainer.fit(module, datamodule=dm)
    # cosine reaches 0 at T_max; step multiplies by 0.1 every 2 of 6 epochs (after epochs 2, 4 and 6); plateau keeps
    # the rate while val/loss improves.
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(final_lr, abs=1e-12)
    plateau = isinstance(scheduler, functools.partial)
    assert trainer.lr_scheduler_configs[0].monitor == ("val/loss" if plateau else None)
    assert module.hparams.lr_scheduler["class_path"].rpartition(".")[2] in ("CosineAnnealingLR", "StepLR",
                                                                            "ReduceLROnPlateau")
    with pytest.raises(ValueError, match="lr_scheduler: 'linear' is not one of torch.optim's classes"):
        RegressionModule(LinearRegression(1), lr_scheduler={"class_path": "linear"})
    with pytest.raises(ValueError, match="lr_scheduler: .*T_max"):  # refused when built, not after start-up
        RegressionModule(LinearRegression(1), lr_scheduler={"class_path": "CosineAnnealingLR"})


def test_compile_trains_the_same_network_and_keeps_checkpoint_keys():
    def run(compile):
        torch.manual_seed(0)
        dm = SyntheticDataModule(n_samples=64, batch_size=64, val_fraction=0.0)
        module = RegressionModule(MLPRegressor(1, [8]), optimizer=sgd(0.05), compile=compile)
        make_trainer(max_epochs=3).fit(module, datamodule=dm)
        return module

    # torch.compile's CPU backend needs a working C++ toolchain; without one, skip. Probed on its own, so that an
    # error in compiling or training the package's module fails this test instead of skipping it.
    try:
        torch.compile(lambda t: torch.tanh(t) * 2)(torch.ones(3))
    except Exception as e:
        pytest.skip(f"torch.compile unavailable here: {type(e).__name__}: {str(e)[:200]}")
    compiled = run(True)
    plain = run(False)
    assert compiled.model._compiled_call_impl is not None and plain.model._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(plain.state_dict())  # no _orig_mod. prefixes in checkpoints
    for a, b in zip(compiled.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)  # measured: 1.5e-8 apart


def test_tensorboard_gets_figures_and_weight_histograms(tmp_path, capsys):
    _fit(capsys, tmp_path, "--data", "synthetic", "--max_epochs", "3")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "logs/version_0"), size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    assert {"val/predictions", "val/fit"} <= set(tags["images"])
    assert {"weights/model.linear.weight", "weights/model.linear.bias"} <= set(tags["histograms"])
    assert len(events.Images("val/predictions")) == 3  # max_epochs <= 5: every epoch
