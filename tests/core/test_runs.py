"""Trust, round two: settings refused where the API takes them (the CLI says the same words, exit 2), numbers that
used to be silently wrong, signals that end a run with a resumable checkpoint, run folders never shared, and an API
as quiet as the command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from lr_lightning import LinearRegression, RegressionModule
from lr_lightning.core.cli import fit_main
from lr_lightning.core.data import SyntheticDataModule
from lr_lightning.core.runs import claim_version
from tests.conftest import ROOT, make_trainer, run_main


def test_unlogged_log_dir_permission_is_one_line(tmp_path, monkeypatch):
    # Tests run as root in some places, where chmod cannot take write permission away: make mkdir refuse instead.
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(ValueError, match="logs: cannot write there"):
        claim_version(tmp_path / "logs")


# ------------------------------------------------------------------------------------ runs and signals
def test_runs_started_together_never_share_a_folder(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        versions = list(pool.map(lambda _: claim_version(tmp_path / "logs"), range(24)))
    assert sorted(versions) == list(range(24))


@pytest.mark.slow  # 5 s: two fit.py processes at once
def test_two_fits_started_together_get_their_own_folders(tmp_path):
    args = ["--data", "synthetic", "--max_epochs", "2", "--figures", "0", "--log_dir", "logs"]
    procs = [subprocess.Popen([sys.executable, str(ROOT / "scripts/fit.py"), *args, "--seed", str(seed)], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    folders = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert folders == ["version_0", "version_1"]
    seeds = {torch.load(tmp_path / "logs" / f / "checkpoints" / "last.ckpt", weights_only=True)
             ["datamodule_hyper_parameters"]["seed"] for f in folders}
    assert seeds == {1, 2}  # each folder holds its own run, not the other's


RUN = ["--data", "synthetic", "--data.n_samples", "20000", "--data.n_features", "4", "--data.batch_size", "64",
       "--max_epochs", "50", "--checkpoint_every", "1000", "--figures", "0", "--seed", "5"]


@pytest.mark.slow  # 11 s each: a real process signalled mid-training, then resumed
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_run_with_a_resumable_checkpoint_and_exit_128_plus_signal(tmp_path, sig):
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts/fit.py"), *RUN, "--log_dir", "logs"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress = tmp_path / "logs" / "version_0" / "checkpoints" / "best.ckpt"  # written at the first epoch's end
    deadline = time.monotonic() + 120
    while not progress.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, (proc.returncode, err)
    lines = [line for line in err.splitlines() if not line.startswith("epoch ")]  # progress lines are fine
    assert len(lines) == 1, err
    name = signal.Signals(sig).name
    last = tmp_path / "logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert lines[0].startswith(f"error: interrupted by {name} in epoch ")
    # The command as it was run (here by its absolute path), with --resume naming the checkpoint.
    assert f"saved logs/version_0/checkpoints/last.ckpt; continue with: python {ROOT / 'scripts/fit.py'} " \
           f"{' '.join(RUN)} --log_dir logs --resume logs/version_0/checkpoints/last.ckpt" in lines[0]
    assert "Traceback" not in err and "Trained" not in out
    state = torch.load(last, weights_only=True)
    assert 0 < state["global_step"] < 50 * 250 and "loops" in state
    # It resumes where it stopped, into its own folder, and finishes.
    resumed = run_main(fit_main, *RUN, "--log_dir", "logs", "--resume", "logs/version_0/checkpoints/last.ckpt",
                       "--max_epochs", str(state["epoch"] + 2), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["version_0"]
    assert torch.load(last, weights_only=True)["global_step"] > state["global_step"]


def test_resuming_with_other_settings_is_refused_before_training(tmp_path, capsys):
    base = ["--data", "synthetic", "--data.n_features", "2", "--max_epochs", "2", "--figures", "0",
            "--log_dir", str(tmp_path / "logs")]
    assert fit_main(base) == 0
    capsys.readouterr()
    # The settings that differ, each as "<there> there, <here> here" (what is shown of a recipe's arguments may be
    # all of them or only those that differ: the words below hold for both).
    for extra, words in [(["--optimizer", "Adam"], ("the optimizer: SGD", "there, Adam")),
                         (["--data.n_features", "3"], ("the network: LinearRegression(in_features=2",
                                                       "there, LinearRegression(in_features=3")),
                         (["--data.standardize", "true"],
                          ("the feature map (standardize/polynomial_degree): none there",)),
                         (["--model", "MLPRegressor"], ("the network: LinearRegression", "there, MLPRegressor"))]:
        assert fit_main([*base, *extra, "--resume", "last"]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: cannot resume: ") and all(w in err[0] for w in words), err
    # The API says the same, as Lightning starts to restore (before any training step).
    ckpt = next((tmp_path / "logs").glob("*/checkpoints/last.ckpt"))
    dm = SyntheticDataModule(n_features=2)
    module = RegressionModule(LinearRegression(2), optimizer=torch.optim.Adam, **dm.module_inputs())
    with pytest.raises(ValueError, match=r"the optimizer: SGD\b.* there, Adam\b.* here"):
        make_trainer(max_epochs=3).fit(module, datamodule=dm, ckpt_path=ckpt, weights_only=True)
