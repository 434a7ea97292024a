"""Interrupted runs resume exactly, checkpoints are written atomically, divergence is caught, runs repeat."""

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from lr_lightning.core.cli import fit_main
from tests.conftest import ROOT, run_main, run_script, sgd

# 16,000 training samples in batches of 64: 250 steps an epoch; last.ckpt every 35 steps lands mid-epoch. 3 epochs:
# the kill lands in the second or third (after step 300), so the resumed run finishes a part-epoch and a whole one.
EPOCHS = 3
RUN = ["--data", "synthetic", "--data.n_samples", "20000", "--data.n_features", "4", "--data.batch_size", "64",
       "--max_epochs", str(EPOCHS), "--optimizer.lr", "0.05", "--optimizer.momentum", "0.9", "--seed", "7",
       "--checkpoint_every", "35"]


STEPS_PER_EPOCH = 250


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.slow  # 12 s: a training process killed with SIGKILL, then resumed, each a new Python
def test_a_run_killed_mid_epoch_resumes_to_bitwise_equal_parameters(tmp_path):
    assert run_script("fit.py", *RUN, "--log_dir", "whole", cwd=tmp_path).returncode == 0
    whole = _state(tmp_path / "whole/version_0/checkpoints/last.ckpt")

    last = tmp_path / "killed/version_0/checkpoints/last.ckpt"
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts/fit.py"), *RUN, "--log_dir", "killed"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if last.exists():
                step = _state(last)["global_step"]  # atomic writes: never a half-written file
                if step >= 300 and step % STEPS_PER_EPOCH:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.01)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    interrupted = _state(last)
    assert interrupted["global_step"] % STEPS_PER_EPOCH, "the kill must land in the middle of an epoch"
    assert interrupted["global_step"] < EPOCHS * STEPS_PER_EPOCH

    resumed = run_script("fit.py", *RUN, "--log_dir", "killed", "--resume", "last", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "not resumable" not in resumed.stderr
    final = _state(last)
    assert final["global_step"] == whole["global_step"] == EPOCHS * STEPS_PER_EPOCH
    for key, value in whole["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value), key  # bitwise, not approximately


def test_resume_from_an_explicit_path_and_bad_paths(tmp_path):
    assert run_main(fit_main, "--max_epochs", "2", "--log_dir", "a", cwd=tmp_path).returncode == 0
    ckpt = tmp_path / "a/version_0/checkpoints/last.ckpt"
    result = run_main(fit_main, "--max_epochs", "4", "--log_dir", "b", "--resume", str(ckpt), cwd=tmp_path)
    assert result.returncode == 0 and "for 4 epochs" in result.stdout
    bad = run_main(fit_main, "--log_dir", "empty", "--resume", "last", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --resume last: no last.ckpt under --log_dir empty"


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    """The checkpoint writer the Trainer uses (Lightning's own, which replaced the package's AtomicCheckpointIO)."""
    from lightning.fabric.plugins import TorchCheckpointIO

    path = tmp_path / "last.ckpt"
    io = TorchCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, path)

    def dies_halfway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")  # what a kill in mid-write leaves behind
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}}, path)
    assert torch.equal(_state(path)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def _diverging_run(tmp_path):
    return run_main(fit_main, "--data", "synthetic", "--optimizer.lr", "3", "--max_epochs", "50", "--log_dir", "logs",
                    cwd=tmp_path)


def test_divergence_stops_at_once_with_a_suggestion_and_keeps_finite_weights(tmp_path):
    result = _diverging_run(tmp_path)
    assert result.returncode == 1
    # The error is one line (Lightning's warnings beside it: see the next test).
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: loss became inf/nan at epoch 1, step 28; try --optimizer.lr ≤ 0.4")
    ckpt = _state(tmp_path / "logs/version_0/checkpoints/last.ckpt")
    assert ckpt["global_step"] < 29
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    # and the suggestion works
    again = run_main(fit_main, "--data", "synthetic", "--optimizer.lr", "0.4", "--max_epochs", "5", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


def test_divergence_prints_nothing_but_its_error_line(tmp_path):
    result = _diverging_run(tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: loss became inf/nan"), result.stderr


def test_same_seed_same_parameters_bitwise_and_the_seed_is_recorded(tmp_path):
    # In one process: a random state left behind by the first run would show in the second.
    args = ["--data", "synthetic", "--data.n_features", "3", "--max_epochs", "3", "--seed", "11"]
    for folder in ("one", "two"):
        assert run_main(fit_main, *args, "--log_dir", folder, cwd=tmp_path).returncode == 0
    one, two = (_state(tmp_path / f / "version_0/checkpoints/last.ckpt") for f in ("one", "two"))
    assert all(torch.equal(one["state_dict"][k], two["state_dict"][k]) for k in one["state_dict"])
    assert one["datamodule_hyper_parameters"]["seed"] == 11


class _Stop(Exception):
    pass


def _fit_saving(ckpt_path=None, hook=None, at=None, path=None, steps="auto"):
    """Three epochs of 8 steps with momentum SGD; optionally save at a hook and stop there, like a kill. Saved at the
    end of the first call that reaches step ``at``: with steps_per_call "auto" (2 here: a quarter epoch) a call
    holds two steps, and checkpoints fall between calls."""
    import lightning as L

    from lr_lightning import LinearRegression, StepsPerCallModule
    from lr_lightning.core.data import SyntheticDataModule
    from tests.conftest import make_trainer

    class SaveAndStop(L.Callback):
        per_step_hooks = False  # it acts at the end of a call, whatever the call holds

        def on_train_batch_end(self, trainer, *args):
            if hook == "batch" and trainer.global_step >= at:
                trainer.save_checkpoint(path, weights_only=False)
                raise _Stop

        def on_train_epoch_end(self, trainer, module):
            if hook == "epoch" and trainer.current_epoch == at:
                trainer.save_checkpoint(path, weights_only=False)
                raise _Stop

    dm = SyntheticDataModule(n_samples=1000, n_features=2, batch_size=100, val_fraction=0.2, seed=7)
    torch.manual_seed(0)
    module = StepsPerCallModule(LinearRegression(2), optimizer=sgd(0.05, momentum=0.9), steps_per_call=steps,
                              **dm.module_inputs())
    trainer = make_trainer(max_epochs=3, callbacks=[SaveAndStop()], log_every_n_steps=8)
    with contextlib.suppress(_Stop):
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path, weights_only=True)
    return module.model.linear.weight.detach().clone(), trainer.global_step


@pytest.mark.parametrize(("hook", "at", "k"), [("batch", 3, "auto"), ("batch", 8, "auto"), ("batch", 11, "auto"),
                                               ("batch", 23, "auto"), ("epoch", 0, "auto"), ("epoch", 1, "auto"),
                                               ("batch", 11, 1), ("epoch", 0, 1)])
def test_resume_is_exact_from_any_point(tmp_path, hook, at, k):
    """Mid-epoch, an epoch's last batch (before its end hooks), and an epoch's end: all resume bitwise, with one step
    per call and with several."""
    whole, steps = _fit_saving(steps=k)
    _fit_saving(hook=hook, at=at, path=tmp_path / "cut.ckpt", steps=k)
    resumed, resumed_steps = _fit_saving(ckpt_path=tmp_path / "cut.ckpt", steps=k)
    assert resumed_steps == steps == 24
    assert torch.equal(resumed, whole)


def test_resume_keeps_working_for_a_users_own_network(tmp_path, monkeypatch, capsys):
    """fit.py builds the network from --model (the user named it), then loads the state: no trust needed."""
    from lr_lightning.core.cli import fit_main

    (tmp_path / "lrl_resume_net.py").write_text(
        "from torch import nn\n\n\nclass Net(nn.Module):\n"
        "    def __init__(self, in_features: int, out_features: int = 1) -> None:\n"
        "        super().__init__()\n        self.in_features, self.out_features = in_features, out_features\n"
        "        self.net = nn.Sequential(nn.Linear(in_features, 4), nn.Tanh(), nn.Linear(4, out_features))\n\n"
        "    def forward(self, x):\n        return self.net(x)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        flags = ["--data", "synthetic", "--data.n_samples", "64", "--model", "lrl_resume_net.Net", "--log_dir", "logs",
                 "--figures", "1", "--progress_bar", "false"]
        assert fit_main([*flags, "--max_epochs", "2"]) == 0
        last = tmp_path / "logs/version_0/checkpoints/last.ckpt"
        assert _state(last)["hyper_parameters"]["model"]["class_path"] == "lrl_resume_net.Net"
        assert fit_main([*flags, "--max_epochs", "3", "--resume", "last"]) == 0, capsys.readouterr().err
        assert _state(last)["epoch"] == 2 and "for 3 epochs" in capsys.readouterr().out
    finally:
        sys.modules.pop("lrl_resume_net", None)
