"""What a hostile new user found in the exact least-squares feature (round hostile14): each test fails without its
fix. Small data, in-process, CPU only."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from lr_lightning import least_squares
from lr_lightning.core.cli import fit_main
from tests.conftest import run_main


def _data(n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 2))
    return x, x @ [1.0, 2.0] + rng.normal(size=n)


def test_statistics_survive_variances_beyond_float64() -> None:
    """x in units of 1e-5 and y near 1e150 give slopes near 1e155, whose variances (~1e310) float64 cannot hold
    though their standard errors can: the table used to cast the variances first, giving stderr inf, t 0 and p 1.
    t, p and R² do not depend on the units, so they must equal the unit-scale fit's."""
    x, y = _data()
    plain = least_squares(x, y, robust=True).statistics["y"]
    scaled = least_squares(x * 1e-5, y * 1e150, robust=True).statistics["y"]
    np.testing.assert_allclose(scaled["t"], plain["t"], rtol=1e-9)
    np.testing.assert_allclose(scaled["p"], plain["p"], rtol=1e-6)
    for kind in ("HC0", "HC3"):  # the sandwich errors scale with the units: slope units are y's over x's
        np.testing.assert_allclose(np.array(scaled["stderr_hc"][kind][1:]) / 1e155,
                                   plain["stderr_hc"][kind][1:], rtol=1e-9)


@pytest.mark.parametrize(("scale_x", "scale_y", "column"), [(1e-160, 1.0, "x0"), (1e-170, 1e-170, "x0"),
                                                            (1.0, 1e-160, "y")])
def test_values_too_small_for_their_squares_are_refused(scale_x: float, scale_y: float, column: str) -> None:
    """Below ~1e-154 a value's square is subnormal: x at 1e-160 gave slopes 1e-4 off with no word, and at 1e-170
    "every column is constant". Like values whose squares overflow, they are refused, naming the column."""
    x, y = _data()
    with pytest.raises(ValueError, match=rf"^least squares: column '{column}' has values of size ~.*rescale the data$"):
        least_squares(x * scale_x, y * scale_y)


def test_values_at_1e_140_are_still_solved() -> None:
    """The refusal's margin: data at 1e-140 (squares ~1e-280, normal numbers) keeps every digit."""
    x, y = _data()
    plain, small = least_squares(x, y), least_squares(x * 1e-140, y * 1e-140)
    np.testing.assert_allclose(small.weight, plain.weight, rtol=1e-12)
    np.testing.assert_allclose(small.bias / 1e-140, plain.bias, rtol=1e-12)
    np.testing.assert_allclose(small.statistics["y"]["t"], plain.statistics["y"]["t"], rtol=1e-9)


def test_polynomial_powers_beyond_float64_are_a_value_error() -> None:
    """x near 1e-110 to degree 3: the exact map to raw powers (Fractions) overflowed float64 as an OverflowError,
    a traceback on the command line; it is one ValueError now."""
    x, y = _data()
    with pytest.raises(ValueError, match=r"^least squares: the inputs' powers up to degree 3 reach beyond"):
        least_squares(x[:, 0] * 1e-110, y, polynomial_degree=3)


def _const_csv(path: Path) -> None:
    path.write_text("a,b,y\n" + "".join(f"1,2,{v}\n" for v in np.random.default_rng(0).normal(size=30)))


def _good_csv(path: Path) -> None:
    x, y = _data()
    path.write_text("a,b,y\n" + "".join(f"{a},{b},{c}\n" for (a, b), c in zip(x, y, strict=True)))


def _nan_npy(path: Path) -> None:
    a = np.random.default_rng(0).normal(size=(300, 3))
    a[250, 1] = np.nan
    np.save(path, a)


@pytest.mark.parametrize(("make", "name", "flags", "message"), [
    # Found only by the passes: these were a Lightning traceback and exit 1, with the run folder left behind.
    (_const_csv, "const.csv", [], "error: --data const.csv: least squares: every column (a, b) is constant"),
    (_nan_npy, "nan.npy", [], "error: nan.npy: row 251 (1-based), column 'x1' (column 2 of the file): non-finite "
                              "value nan"),
    (_good_csv, "good.csv", ["--max_epochs", "0"], "error: --max_epochs 0: LeastSquaresModule needs at least 1 pass"),
    # Lightning refuses these for a module without optimizer steps, in a traceback: refused here as flags.
    (_good_csv, "good.csv", ["--trainer.gradient_clip_val", "1"], "error: --trainer.gradient_clip_val 1.0: "
                                                                    "LeastSquaresModule takes no gradient steps"),
])
def test_exact_cli_refusals_are_one_line(tmp_path: Path, make: Callable[[Path], None], name: str, flags: list[str],
                                         message: str) -> None:
    make(tmp_path / name)
    result = run_main(fit_main, "--data", name, "--solver", "exact", "--figures", "0", "--log_dir", "logs", *flags,
                      cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "logs").exists()  # a refused run leaves nothing behind


def test_least_squares_takes_what_users_hand_it() -> None:
    """A tensor that requires grad was Python's RuntimeError, a big-endian array torch's message naming no argument,
    and a pandas frame (read-only under copy-on-write) brought torch's not-writable warning: each is just data."""
    pd = pytest.importorskip("pandas")
    x, y = _data()
    expected = least_squares(x, y).weight
    got = least_squares(torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)).weight
    np.testing.assert_allclose(got, expected, rtol=1e-13)
    np.testing.assert_allclose(least_squares(x.astype(">f8"), y.astype(">f8")).weight, expected, rtol=1e-13)
    frame = pd.DataFrame(x, columns=["a", "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(least_squares(frame, pd.Series(y)).weight, expected, rtol=1e-13)


def test_least_squares_module_takes_a_tensor_that_requires_grad_and_big_endian_data() -> None:
    """RegressionDataModule passed a tensor that requires grad on as it was, and the first pass failed in torch
    (``sub(): functions with out=... arguments don't support automatic differentiation``); a big-endian array was
    torch's byte-order message, and then (``>f8`` is not ``np.float64``) served as float32, 3e-8 off. Both fit, in
    float64, as the plain array does."""
    import lightning as L

    from lr_lightning import LeastSquaresModule, RegressionDataModule

    x, y = _data()
    expected = least_squares(x, y).weight
    for xs, ys in ((torch.tensor(x, requires_grad=True), torch.tensor(y)), (x.astype(">f8"), y.astype(">f8"))):
        module = LeastSquaresModule()
        L.Trainer(max_epochs=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, accelerator="cpu").fit(
            module, datamodule=RegressionDataModule(xs, ys, val_fraction=0))
        assert module.model.linear.weight.dtype == torch.float64
        np.testing.assert_allclose(module.model.linear.weight.detach().numpy(), expected, rtol=1e-12)


def test_pandas_frames_stay_float64_and_missing_values_are_named() -> None:
    """Frames have ``dtypes``, not ``dtype``: two float64 frames were served as float32. A nullable ``Float64``
    column was refused as "not numbers" (object) even without a missing value, and with one, no row was named."""
    pd = pytest.importorskip("pandas")
    from lr_lightning import RegressionDataModule

    x, y = _data()
    assert RegressionDataModule(pd.DataFrame(x), pd.DataFrame(y)).dtype == torch.float64
    assert RegressionDataModule(pd.DataFrame(x).astype("Float64"), pd.Series(y).astype("Float64")).dtype == \
        torch.float64
    assert RegressionDataModule(pd.DataFrame(x, dtype="float32"), pd.Series(y, dtype="float32")).dtype == \
        torch.float32  # float32 stays what it is too
    frame = pd.DataFrame(x, columns=["a", "b"]).astype("Float64")
    frame.iloc[3, 1] = pd.NA
    for fit in (RegressionDataModule, least_squares):  # rows counted from 1, the column by the frame's name
        with pytest.raises(ValueError, match=r"^x: non-finite value nan at row 4 \(1-based\), column 'b'$"):
            fit(frame, y)


@pytest.mark.parametrize(("x", "y", "words"), [
    # y named by its pandas name, as x by its names (it was "column 0" beside x's "column 'b'")
    ([1.0, 2.0, 3.0], "series", "y: non-finite value inf at row 3 (1-based), column 'price'"),
    ([1.0, 2.0, 3.0], [1.0, 2.0, float("inf")], "y: non-finite value inf at row 3 (1-based)"),
    # strings: which value is not a number (it said only "got values of dtype <U1")
    ([["1", "2"], ["3", "four"], ["5", "6"]], [1.0, 2.0, 3.0],
     "row 2, column 2 (both 1-based): 'four' is not a number"),
])
def test_least_squares_says_where_a_bad_value_is(x, y, words):
    import pandas as pd

    from lr_lightning.exact.solver import least_squares

    y = pd.Series([1.0, 2.0, float("inf")], name="price") if y == "series" else y
    with pytest.raises(ValueError) as e:
        least_squares(x, y)
    assert words in str(e.value), str(e.value)


def test_least_squares_refuses_a_bias_that_is_not_true_or_false() -> None:
    with pytest.raises(ValueError, match="bias must be True or False, got 'no'"):
        least_squares(np.arange(5.0), np.arange(5.0), bias="no")
