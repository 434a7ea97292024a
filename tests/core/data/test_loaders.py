"""The sliced-batch data path: same training as DataLoader(TensorDataset), deterministic, and benchmarked."""

import torch
from torch.utils.data import DataLoader, TensorDataset

from lr_lightning import LinearRegression, StepsPerCallModule
from lr_lightning.core.data import EpochOrder, SyntheticDataModule
from tests.conftest import make_trainer, sgd


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
