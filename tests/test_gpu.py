"""GPU paths. Skipped without CUDA (CI has none); run on a GPU machine with `make test`."""

import pytest
import torch

from lr_lightning import LinearRegression, RegressionDataModule, RegressionModule

from .conftest import make_trainer, run_script

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_gpu_fit_matches_cpu_fit():
    def fit(accelerator):
        torch.manual_seed(0)
        dm = RegressionDataModule.synthetic(n_samples=512, n_features=4, batch_size=512, val_fraction=0.25)
        module = RegressionModule(LinearRegression(dm.n_features), lr=0.1)
        make_trainer(accelerator=accelerator, max_epochs=20, **dm.trainer_defaults()).fit(module, datamodule=dm)
        return module.model.linear.weight.detach().cpu()

    torch.testing.assert_close(fit("gpu"), fit("cpu"), atol=1e-4, rtol=1e-4)


def test_cli_trains_on_the_gpu(tmp_path):
    result = run_script("fit.py", "--accelerator", "gpu", "--max-epochs", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "on cuda" in result.stdout and "10.0000 after" in result.stdout
