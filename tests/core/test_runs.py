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

import numpy as np
import pytest
import torch
from torch import nn

from lr_lightning import LinearRegression, LinearRegressionModule, MLPRegressor, RegressionModule
from lr_lightning.core.callbacks import TensorBoardFigures
from lr_lightning.core.cli import fit_main
from lr_lightning.core.data import RegressionDataModule, SyntheticDataModule, TutorialDataModule
from lr_lightning.core.runs import claim_version

from .conftest import LBFGS, ROOT, SHARED, lbfgs, make_trainer, run_main, sgd


def _exit_code(argv: list[str]) -> int:
    return fit_main(argv)  # the exit status, parser errors included


def _words_in(words: str | tuple[str, ...], line: str) -> bool:
    return all(w in line for w in ((words,) if isinstance(words, str) else words))



# ------------------------------------------------------------------------------- settings, API and CLI alike
# (API call, CLI flags, words both must say, or (the API's, the CLI's) where the CLI's come from its parser)
SETTINGS = [
    (lambda: RegressionModule(LinearRegression(1), optimizer=sgd(0.01, momentum=-1.0)),
     ["--optimizer.momentum", "-1"], "optimizer: Invalid momentum value: -1.0"),
    pytest.param(lambda: RegressionModule(LinearRegression(1), optimizer=sgd(0.01, momentum=float("nan"))),
                 ["--optimizer.momentum", "nan"], ("momentum", "--optimizer.momentum: expected float, got 'nan'")),
    (lambda: RegressionModule(LinearRegression(1), optimizer=sgd(0.01, weight_decay=-0.5)),
     ["--optimizer.weight_decay", "-0.5"], "optimizer: Invalid weight_decay value: -0.5"),
    pytest.param(lambda: RegressionModule(LinearRegression(1), optimizer=sgd(0.01, weight_decay=float("nan"))),
                 ["--optimizer.weight_decay", "nan"],
                 ("weight_decay", "--optimizer.weight_decay: expected float, got 'nan'")),
    (lambda: RegressionModule(LinearRegression(1),
                              optimizer={"class_path": "LBFGS", "init_args": {"weight_decay": 0.1}}),
     [*LBFGS, "--optimizer.weight_decay", "0.1"],
     ("optimizer: LBFGS.__init__() got an unexpected keyword argument 'weight_decay'",
      "--optimizer.weight_decay: not an argument of LBFGS")),
    pytest.param(lambda: TutorialDataModule(seed=-1), ["--seed", "-1"], "seed"),
    pytest.param(lambda: TutorialDataModule(seed=2**40), ["--seed", str(2**40)], "seed"),
    (lambda: TensorBoardFigures(times=-2), ["--figures", "-2"], "figures must be a whole number >= 0"),
]


@pytest.mark.parametrize(("api", "flags", "words"), SETTINGS,
                         ids=[" ".join(s.values[1] if hasattr(s, "values") else s[1]) for s in SETTINGS])
def test_a_bad_setting_gets_the_same_words_from_the_api_and_the_cli(tmp_path, capsys, api, flags, words):
    api_words, cli_words = (words, words) if isinstance(words, str) else words
    with pytest.raises(ValueError) as e:
        api()
    assert api_words in str(e.value), e.value
    assert _exit_code([*flags, "--log_dir", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and cli_words in err[0], err
    if flags[0] == "--seed":  # the CLI names its flag
        assert err[0].startswith("error: --seed") and "from 0 to 4294967295" in err[0], err
    assert not (tmp_path / "logs").exists()


# Words: one string, or several that the line must all contain. Lightning's own complaints about the Trainer's
# essentials are prefixed with the essentials that differ from their defaults (here also --max_epochs 1).
@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--accelerator", "tpu"], ("--accelerator tpu", "torch_xla")),
        (["--accelerator", "quantum"], ("--accelerator quantum", "invalid accelerator name",
                                        "Available names are: auto")),
        (["--accelerator", "cpu", "--devices", "0,0"],
         ("--accelerator cpu --devices 0,0", "`devices` selected with `CPUAccelerator` should be an int > 0")),
        (["--num_nodes", "2"], "--num_nodes 2: no cluster launcher found; run the same command on each machine"),
        (["--plot", "{d}"], "is a directory or lies under a file; name a .png file to write"),
        (["--stop_below", "nan"], ("--stop_below: expected float", "got 'nan'")),
        (["--stop_below", "0"], "--stop_below 0.0: must be a finite loss > 0"),
        (["--model.activation", "tanh"], "--model.activation: not an argument of the default model"),
        (["--data", "synthetic", "--data.target", "3"], "--data.target: not an argument of SyntheticDataModule"),
        (["--data.n_samples", "50"], "--data.n_samples: not an argument of the default data"),
        (["--optimizer.lr", "1e300"], "lr must be a finite number > 0, got 1e+300 (beyond the weights' float range)"),
        (["--data", "{d}/fifo.csv"], "fifo.csv: not a regular file (a pipe, socket or device)"),
        (["--data", "{d}/underscore.csv"], "underscore.csv: line 2, column 'a': '1_000' is not a number"),
        (["--data", "{d}/float32.csv"], "float32.csv: line 3, column 'a': '1e39' is beyond ±3.40282e+38"),
        (["--data", "{d}/utf16.csv"], "utf16.csv: not a UTF-8 text CSV file (it holds NUL characters: UTF-16?"),
        (["--data", "{d}/bigendian.npy"], "bigendian.npy: numbers stored in the other byte order (>f8)"),
        (["--data", "{d}/xonly"], "xonly: x.npy without y.npy"),
        # 4 TB of weights: refused on any machine (an allocation this large fails at once, it is never attempted).
        pytest.param(["--model", "MLPRegressor", "--model.hidden", "[1000000,1000000]"],
                     ("--model", "its parameters need about")),
        (["--log_dir", "{d}/a_file"], "--log_dir {d}/a_file: is a file or lies under one"),
        (["--log_dir", "{d}/a_file/sub"], "--log_dir {d}/a_file/sub: is a file or lies under one"),
        pytest.param(["--config", "{d}/hidden.yaml"], "--model.hidden: expected"),
        (["--config", "{d}/epochs.yaml"], "--max_epochs: expected int, got '6.5'"),
        pytest.param(["--config", "{d}/flag.yaml"], "--data.standardize: expected bool, got 'maybe'"),
        (["--config", "{d}/model.yaml"], "--model: hidden must be a list of positive layer widths, e.g. [64, 64]"),
    ],
)
def test_cli_only_flags_are_one_line_and_exit_2(tmp_path, capsys, monkeypatch, flags, words):
    from lr_lightning.core.cli import CLUSTER_VARIABLES

    for name in CLUSTER_VARIABLES:  # an earlier in-process DDP run leaves MASTER_ADDR etc.: no launcher here
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "a_file").write_text("not a folder")
    os.mkfifo(tmp_path / "fifo.csv")  # nobody writes to it: reading it would wait forever
    (tmp_path / "underscore.csv").write_text("a,y\n1_000,2\n3,4\n5,6\n")
    (tmp_path / "float32.csv").write_text("a,y\n1,2\n1e39,4\n5,6\n")
    (tmp_path / "utf16.csv").write_bytes("a,y\n1,2\n3,4\n".encode("utf-16-be"))
    np.save(tmp_path / "bigendian.npy", np.arange(12.0).reshape(4, 3).astype(">f8"))
    (tmp_path / "xonly").mkdir()
    np.save(tmp_path / "xonly" / "x.npy", np.ones((5, 2)))
    # A value of the wrong type (hidden.yaml, epochs.yaml, flag.yaml: YAML's 'yes' is a yes for jsonargparse, so
    # 'maybe'), and one of the right type that the class refuses (model.yaml).
    (tmp_path / "hidden.yaml").write_text("model: {class_path: MLPRegressor, init_args: {hidden: 64}}\n")
    (tmp_path / "epochs.yaml").write_text("max_epochs: 6.5\n")
    (tmp_path / "flag.yaml").write_text("data: {class_path: SyntheticDataModule, init_args: {standardize: 'maybe'}}\n")
    (tmp_path / "model.yaml").write_text("model: {class_path: lr_lightning.core.networks.MLPRegressor, init_args: "
                                         "{hidden: [0]}}\n")
    flags = [f.format(d=tmp_path) for f in flags]
    words = tuple(w.format(d=tmp_path) for w in ((words,) if isinstance(words, str) else words))
    log_dir = [] if "--log_dir" in flags else ["--log_dir", str(tmp_path / "logs")]
    assert _exit_code([*flags, *log_dir, "--max_epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and _words_in(words, err[0]), err
    assert not (tmp_path / "logs").exists()


def test_hostile_api_arguments_are_value_errors(tmp_path):
    from lr_lightning import least_squares
    from lr_lightning.core.checkpoints import build_model

    with pytest.raises(ValueError, match="bias must be True or False, got 'no'"):
        least_squares(np.arange(5.0), np.arange(5.0), bias="no")
    huge = {"class_path": "lr_lightning.core.networks.MLPRegressor", "init_args": {"in_features": 2,
                                                                           "hidden": [10**9, 10**9]}}
    with pytest.raises(ValueError, match="its parameters need about .* GB of memory; this machine has"):
        build_model(huge)  # refused from shapes alone, before any memory is asked for
    with pytest.raises(FileNotFoundError, match="no such file"):
        RegressionModule.load_from_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "none.ckpt").write_bytes(b"")
    with pytest.raises(ValueError, match="none.ckpt: not a checkpoint written by lr_lightning"):
        RegressionModule.load_from_checkpoint(tmp_path / "none.ckpt")


def test_a_network_without_parameters_and_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="the network Identity has no trainable parameters"):
        RegressionModule(nn.Identity())
    with pytest.raises(ValueError, match="in_features must be a positive whole number, got 0"):
        LinearRegression(0)
    with pytest.raises(ValueError, match=r"hidden must be a list of positive layer widths, e.g. \[64, 64\], got 64"):
        MLPRegressor(2, hidden=64)


def test_unlogged_log_dir_permission_is_one_line(tmp_path, monkeypatch):
    # Tests run as root in some places, where chmod cannot take write permission away: make mkdir refuse instead.
    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(ValueError, match="logs: cannot write there"):
        claim_version(tmp_path / "logs")


# --------------------------------------------------------------------------------- numbers silently wrong
def test_float64_data_trains_in_float64_without_being_asked():
    """NIST Norris with LBFGS through the API, no dtype= and no precision=: 13 digits, not float32's 4."""
    path = SHARED / "nist-strd" / "Norris.dat"
    if not path.exists():
        pytest.skip(f"NIST StRD files not found at {path.parent} (the shared data folder beside the project)")
    from lr_lightning.exact import nist

    d = nist.load(path)
    dm = RegressionDataModule(np.asarray(d.x, np.float64), np.asarray(d.y, np.float64), batch_size=len(d.y),
                              val_fraction=0.0, shuffle=False, standardize=True)
    assert dm.x.dtype == torch.float64 and dm.hparams["dtype"] == "float64"
    # The data declares its dtype (module_inputs' weights_dtype); the user names none.
    module = LinearRegressionModule(LinearRegression(1), optimizer=lbfgs(), **dm.module_inputs())
    make_trainer(max_epochs=30).fit(module, datamodule=dm)
    assert module.model.linear.weight.dtype == torch.float64
    lre = nist.min_lre(nist.in_nist_order(*module.coefficients()), d.certified)
    # measured: 11.51 with 1 and 2 threads, torch kernels default/avx2/avx512, OpenBLAS Sandybridge; float32 data: 4.3
    assert lre >= 10, lre


def test_float32_and_other_inputs_keep_float32():
    assert RegressionDataModule(np.zeros(4, np.float32), np.zeros(4, np.float32), val_fraction=0).x.dtype == \
        torch.float32
    assert RegressionDataModule([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], val_fraction=0).x.dtype == torch.float32
    assert RegressionDataModule(np.zeros(4), np.zeros(4), val_fraction=0, dtype=torch.float32).x.dtype == \
        torch.float32
    assert SyntheticDataModule(n_samples=10).x.dtype == torch.float32


@pytest.mark.parametrize("data_bias", [True, False])
def test_a_bias_mismatch_between_data_and_network_is_refused(data_bias):
    dm = SyntheticDataModule(n_samples=50, standardize=True, bias=data_bias, val_fraction=0.0)
    words = "has none (bias=False): pass bias=False to the datamodule" if data_bias else "build the network with bias"
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        RegressionModule(LinearRegression(1, bias=not data_bias), **dm.module_inputs())  # refused as it is built


def test_lbfgs_logs_the_loss_at_the_start_of_its_step():
    dm = SyntheticDataModule(n_samples=200, noise=0.5, val_fraction=0.0, batch_size=200, seed=3)
    torch.manual_seed(0)
    module = RegressionModule(LinearRegression(1), optimizer=lbfgs(torch.float32), **dm.module_inputs())
    x, y = dm.x, dm.y
    with torch.no_grad():
        initial = float(((module(x) - y) ** 2).mean())
    trainer = make_trainer(max_epochs=1)
    trainer.fit(module, datamodule=dm)
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(initial, rel=1e-5)
    with torch.no_grad():
        assert float(((module(x) - y) ** 2).mean()) < 0.5 * initial  # it did train in that one step


def _scalars(run_dir: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = []
    for events in sorted(run_dir.glob("events.out.tfevents.*")):  # in the order TensorBoard reads them
        acc = EventAccumulator(str(events))
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            values += [e.value for e in acc.Scalars(tag)]
    return values


def test_hp_metric_stays_the_final_val_loss_after_a_test_stage(tmp_path):
    result = run_main(fit_main, "--data", "synthetic", "--data.test_fraction", "0.2", "--max_epochs", "3",
                      "--figures", "0", "--log_dir", "logs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    values = _scalars(tmp_path / "logs" / "version_0", "hp_metric")
    val_loss = _scalars(tmp_path / "logs" / "version_0", "val/loss")
    assert values[-1] == pytest.approx(val_loss[-1]) and values[-1] != -1


def test_figures_zero_means_none(tmp_path):
    result = run_main(fit_main, "--figures", "0", "--max_epochs", "3", "--log_dir", "logs", cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


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
