"""README's Python example runs and prints only what README shows."""

from __future__ import annotations

import os
import subprocess
import sys

# ------------------------------------------------------------------------------------------- quiet API
README_EXAMPLE = """
from functools import partial

import lightning as L
import torch
from lr_lightning import LinearRegression, RegressionModule
from lr_lightning.core.data import SyntheticDataModule

dm = SyntheticDataModule(n_samples=1000, n_features=3, noise=0.1)
module = RegressionModule(LinearRegression(dm.n_features), optimizer=partial(torch.optim.SGD, lr=0.05),
                          **dm.module_inputs())
# trainer_defaults() is gone: what it set for a quiet run, the Trainer is told.
trainer = L.Trainer(max_epochs=5, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=5)
trainer.fit(module, datamodule=dm)
print("done")
"""


def test_the_readme_python_example_prints_only_what_it_prints(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "default"}  # show every warning there is
    result = subprocess.run([sys.executable, "-c", README_EXAMPLE], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n" and result.stderr == ""
