"""The least-squares reference line fit.py prints beside a gradient fit (the exact package registers it)."""

import numpy as np
import pytest

from lr_lightning.core.cli import fit_main
from lr_lightning.core.predict import predict_main
from tests.conftest import LBFGS, run_main


def test_standardized_polynomial_fit_predicts_from_raw_inputs(tmp_path):
    x = np.linspace(-2, 4, 80)
    rows = "\n".join(f"{v:.6f},{1 + 2 * v - 0.5 * v * v:.6f}" for v in x)
    (tmp_path / "curve.csv").write_text("x,y\n" + rows + "\n")
    result = run_main(fit_main, "--data", "curve.csv", "--data.standardize", "true", "--data.polynomial_degree", "2",
                      *LBFGS, "--precision", "64-true", "--max_epochs", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "y = +2·x -0.5·x^2 +1" in result.stdout  # the raw-power coefficients
    assert "least squares: y = +2·x -0.5·x^2 +1" in result.stdout and "gap" in result.stdout
    ckpt = next(tmp_path.glob("lightning_logs/*/checkpoints/last.ckpt"))
    pred = run_main(predict_main, "--ckpt", str(ckpt), "--x", "0", "3", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    values = [float(line.split(",")[1]) for line in pred.stdout.strip().splitlines()[1:]]
    assert values == pytest.approx([1.0, 2.5], abs=1e-6)  # raw x in, original units out (measured: exact)
