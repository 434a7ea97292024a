"""The sliced-batch data path: same training as DataLoader(TensorDataset), deterministic, and benchmarked."""

import re

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lr_lightning import LinearRegression, StepsPerCallModule
from lr_lightning.core.data import EpochOrder, SyntheticDataModule

from .conftest import make_trainer, run_script, sgd


def _fit(train, dm=None, epochs=3):
    torch.manual_seed(0)
    module = StepsPerCallModule(LinearRegression(4), optimizer=sgd(0.05))
    trainer = make_trainer(max_epochs=epochs, log_every_n_steps=5, limit_val_batches=0)
    if dm is not None:
        trainer.fit(module, datamodule=dm)
    else:
        trainer.fit(module, train_dataloaders=train, val_dataloaders=[])  # no validation, said explicitly
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_sliced_batches_train_exactly_like_a_dataloader_on_the_same_order():
    dm = SyntheticDataModule(n_samples=1000, n_features=4, batch_size=64, val_fraction=0.0, seed=3)
    dm.setup("fit")
    x, y = dm.splits["train"]
    # The same per-epoch permutations (Lightning calls set_epoch on either sampler), one sample at a time.
    loader = DataLoader(TensorDataset(x, y), batch_size=64, sampler=EpochOrder(len(x), shuffle=True, seed=3))
    fast, slow = _fit(None, dm), _fit(loader)
    torch.testing.assert_close(fast, slow, rtol=1e-6, atol=1e-7)


def test_same_seed_same_parameters_bitwise_and_another_seed_differs():
    def run(seed):
        return _fit(None, SyntheticDataModule(n_samples=500, n_features=4, batch_size=32, val_fraction=0.0, seed=seed))

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


@pytest.mark.slow  # 8 s: a new Python, five paths twice
def test_benchmark_prints_one_table_with_every_path(tmp_path):
    result = run_script("benchmark.py", "--n_samples", "4096", "--n_features", "4", "--batch_size", "256",
                        "--epochs", "3", "--repeats", "2", "--threads", "1",
                        "--paths", "[loop, dataloader, package, package-k1, barebones]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^(loop|dataloader|package|package-k1|barebones)\s+([\d.]+)\s+([\d,]+)\s+([\d.]+)x\s+([\d.]+)$",
        result.stdout, re.M)}
    assert set(rows) == {"loop", "dataloader", "package", "package-k1", "barebones"}, result.stdout
    # 16 steps an epoch: auto's K is capped at a quarter epoch.
    assert "steps_per_call auto = 4 optimizer steps per call" in result.stdout
    assert rows["loop"][2] == "1.00"
    losses = [float(r[3]) for r in rows.values()]
    assert max(losses) - min(losses) < 0.01 * max(losses)  # the paths train the same model; measured: 0.04 % apart
