"""GPU paths. Skipped without CUDA (CI has none); run on a GPU machine with `make test`."""

import pytest
import torch

from lr_lightning import LinearRegression, RegressionModule, StepsPerCallModule
from lr_lightning.core.data import SyntheticDataModule

from .conftest import make_trainer, run_script, sgd

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_gpu_fit_matches_cpu_fit():
    def fit(accelerator):
        torch.manual_seed(0)
        dm = SyntheticDataModule(n_samples=512, n_features=4, batch_size=512, val_fraction=0.25)
        module = RegressionModule(LinearRegression(dm.n_features), optimizer=sgd(0.1))
        make_trainer(accelerator=accelerator, max_epochs=20).fit(module, datamodule=dm)
        return module.model.linear.weight.detach().cpu()

    torch.testing.assert_close(fit("gpu"), fit("cpu"), atol=1e-4, rtol=1e-4)


def test_cli_trains_on_the_gpu(tmp_path):
    result = run_script("fit.py", "--accelerator", "gpu", "--max_epochs", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "on cuda" in result.stdout and "10.0000 after" in result.stdout


@pytest.mark.parametrize("steps_per_call", [1, "auto"])  # auto: blocks of 4 steps (a quarter of a 16-step epoch)
def test_no_host_sync_inside_training_steps_or_batch_slicing(steps_per_call):
    """Data lives on the GPU, batches are sliced there, and our per-step code never waits for the device: neither
    one step per call nor a whole block of steps (steps_per_call)."""
    import lightning as L

    from lr_lightning.core.data import TensorBatches

    dm = SyntheticDataModule(n_samples=4096, n_features=8, batch_size=256, val_fraction=0.0)
    module = StepsPerCallModule(LinearRegression(dm.n_features), steps_per_call=steps_per_call)
    step, next_batch = RegressionModule.training_step, TensorBatches.__iter__

    def guarded_step(self, batch, batch_idx):
        torch.cuda.set_sync_debug_mode("error")  # any synchronising call raises
        try:
            return step(self, batch, batch_idx)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    def guarded_iter(self):
        it = next_batch(self)
        while True:
            torch.cuda.set_sync_debug_mode("error")
            try:
                batch = next(it)
            except StopIteration:
                return
            finally:
                torch.cuda.set_sync_debug_mode("default")
            assert batch[0].device.type == "cuda"  # already on the device: nothing to transfer
            yield batch

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RegressionModule, "training_step", guarded_step)
        mp.setattr(TensorBatches, "__iter__", guarded_iter)
        L.Trainer(accelerator="gpu", devices=1, max_epochs=2, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1000,
                  limit_val_batches=0).fit(module, datamodule=dm)
