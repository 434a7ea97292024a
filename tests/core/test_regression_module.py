"""RegressionModule without the fast path: Lightning's own loop, and checkpoints of the fast path still load."""

from __future__ import annotations

import inspect

from lr_lightning import LinearRegression, RegressionModule, StepsPerCallModule
from lr_lightning.core.checkpoints import unknown_hyperparameters
from lr_lightning.core.data import SyntheticDataModule

from ..conftest import make_trainer, sgd


def test_the_plain_module_runs_lightnings_own_loop_and_has_no_steps_per_call() -> None:
    assert "steps_per_call" not in inspect.signature(RegressionModule).parameters
    dm = SyntheticDataModule(n_samples=200, n_features=3, batch_size=10, seed=0)
    dm.setup("fit")
    module = RegressionModule(LinearRegression(3), optimizer=sgd(0.05), **dm.module_inputs())
    trainer = make_trainer(max_epochs=1)
    trainer.fit(module, datamodule=dm)
    # One call per optimizer step: the loader serves plain batches, and the datamodule is left as it was.
    assert module.automatic_optimization and trainer.global_step == trainer.num_training_batches
    assert "train_dataloader" not in vars(dm)


def test_a_fast_path_checkpoints_steps_per_call_is_not_an_unknown_hyperparameter() -> None:
    hparams = StepsPerCallModule(LinearRegression(2), steps_per_call=3).hparams
    assert unknown_hyperparameters(hparams, RegressionModule) == []
    assert unknown_hyperparameters({**hparams, "bogus": 1}, RegressionModule) == ["bogus"]
