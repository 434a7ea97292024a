"""scripts/fit.py, evaluate.py and predict.py as a user runs them: in a subprocess where the process is the point
(start-up, quiet output, pipes), else their main() in this process (run_main), which skips a new Python's imports."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from lr_lightning import LinearRegression, RegressionModule
from lr_lightning.core.callbacks import TensorBoardFigures
from lr_lightning.core.cli import fit_main
from lr_lightning.core.data import TutorialDataModule
from lr_lightning.core.evaluate import evaluate_main
from lr_lightning.core.predict import predict_main
from tests.conftest import (
    LBFGS,
    ROOT,
    assert_clean,
    numbers,
    one_error_line,
    run,
    run_main,
    run_script,
    sgd,
)

# ------------------------------------------------------------------------------------------ fit.py flags
FLAGS = ["--optimizer.lr", "--optimizer.momentum", "--optimizer.weight_decay", "--data.batch_size",
         "--data.val_fraction", "--data.test_fraction", "--seed", "--data.polynomial_degree", "--stop_below",
         "--checkpoint_every", "--figures", "--devices", "--data.n_samples", "--data.n_features", "--data.noise",
         "--num_nodes", "--max_epochs", "--model.hidden", "--precision", "--accelerator"]


@given(st.lists(st.tuples(st.sampled_from(FLAGS), numbers), min_size=1, max_size=3),
       st.sampled_from(["tutorial", "synthetic"]),
       st.sampled_from([[], ["--optimizer", "Adam"], [*LBFGS], ["--model", "MLPRegressor"],
                        ["--data.standardize", "true"], ["--data.bias", "false"]]))
def test_any_flag_values_train_or_give_one_error_line(flags: list[tuple[str, str]], data: str,
                                                      extra: list[str]) -> None:
    argv = ["--data", data, *extra]
    for flag, value in flags:
        argv += [flag, value] if not value.startswith("-") else [f"{flag}={value}"]
    given_flags = {f for f, _ in flags}
    if "--max_epochs" not in given_flags:
        argv += ["--max_epochs", "2"]
    if "--data.n_samples" not in given_flags and data == "synthetic":
        argv += ["--data.n_samples", "64"]
    argv += ["--figures", "0"] if "--figures" not in given_flags else []
    devices = dict(flags).get("--devices", "1")
    if devices.isdigit() and int(devices) > 1 or devices.count(",") and len(set(devices.split(","))) > 1:
        return  # several devices start DDP processes that re-run this process's command: pytest (test_scale runs DDP)
    epochs = dict(flags).get("--max_epochs")
    if epochs is not None and epochs.lstrip("-").isdigit() and int(epochs) > 3:
        return  # keep each example short; large epoch counts are not what this searches for
    with tempfile.TemporaryDirectory() as d:
        code, out, err = run(fit_main, [*argv, "--log_dir", str(Path(d) / "logs")])
        event(f"exit {code}")
        # 1: training diverged (a learning rate too large), reported in one line with the last finite weights.
        assert_clean(code, err, ok=(0, 1))
        if code == 1:
            assert err.strip().splitlines()[-1].startswith("error: loss became inf/nan"), err
        if code == 0:
            # --max_epochs 0 trains nothing and so writes no checkpoint.
            assert "Trained " in out and ("Checkpoints: last " in out or " for 0 epochs " in out), out
        if code == 2:
            assert not (Path(d) / "logs").exists() or not any((Path(d) / "logs").iterdir()), \
                "a refused run leaves nothing behind"


def _weights(folder: Path) -> dict:
    return torch.load(next(folder.glob("*/checkpoints/last.ckpt")), weights_only=True)["state_dict"]


@pytest.mark.slow  # 7 s: fit.py in a new Python, as a user runs it
def test_default_run_reproduces_the_tutorial_quietly(tmp_path):
    result = run_script("fit.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "on tutorial data (4 train, 0 val, 0 test samples) for 100 epochs on cpu" in out
    assert "y = +2·x0   (no intercept" in out
    assert "10.0000 after" in out  # f(5)
    assert "tensorboard --logdir lightning_logs" in out
    assert (tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt").is_file()
    assert (tmp_path / "lightning_logs/version_0/config.yaml").is_file()
    # No warning noise, no banners, no progress-bar spam in a log file.
    # Nothing but, on a loaded machine where training passes 5 s, a progress line (what a log file should get).
    noise = [line for line in result.stderr.splitlines() if not re.fullmatch(r"epoch \d+/100: step .*, \d+ s", line)]
    assert noise == [], result.stderr


def test_print_config_then_config_repeats_the_run_exactly(tmp_path):
    flags = ["--data", "synthetic", "--data.n_features", "2", "--max_epochs", "3", "--optimizer", "AdamW",
             "--optimizer.lr", "0.05", "--lr_scheduler", "StepLR", "--lr_scheduler.step_size", "2"]
    printed = run_main(fit_main, *flags, "--print_config", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    config = yaml.safe_load(printed.stdout)
    # Complete: every part as class_path/init_args, the Trainer's essentials and the rest of its arguments.
    assert config["data"]["class_path"].endswith("SyntheticDataModule")
    assert config["data"]["init_args"]["n_features"] == 2
    assert config["model"]["class_path"].endswith("LinearRegression")
    assert config["optimizer"] == {"class_path": "torch.optim.AdamW", "init_args": {
        **config["optimizer"]["init_args"], "lr": 0.05, "weight_decay": 0.01}}  # AdamW's own default weight decay
    assert config["lr_scheduler"]["init_args"]["step_size"] == 2
    assert config["max_epochs"] == 3 and "gradient_clip_val" in config["trainer"]
    (tmp_path / "c.yaml").write_text(printed.stdout)
    first = run_main(fit_main, *flags, "--log_dir", "a", cwd=tmp_path)
    again = run_main(fit_main, "--config", "c.yaml", "--log_dir", "b", cwd=tmp_path)
    from_folder = run_main(fit_main, "--config", "a/version_0/config.yaml", "--log_dir", "c", cwd=tmp_path)
    for result in (first, again, from_folder):
        assert result.returncode == 0, result.stderr
    a, b, c = (_weights(tmp_path / d) for d in "abc")
    assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
    hparams = torch.load(next((tmp_path / "a").glob("*/checkpoints/last.ckpt")), weights_only=True)["hyper_parameters"]
    assert hparams["optimizer"]["class_path"] == "torch.optim.AdamW"  # the checkpoint says what trained it
    assert hparams["lr_scheduler"]["class_path"] == "torch.optim.lr_scheduler.StepLR"


def test_csv_run_then_predict_from_values_and_csv(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=200), rng.normal(size=200)
    rows = "\n".join(f"{u:.6f},{3 * u - 2 * v + 1:.6f},{v:.6f}" for u, v in zip(a, b, strict=True))
    (tmp_path / "data.csv").write_text("a,price,b\n" + rows + "\n")
    result = run_main(fit_main, "--data", "data.csv", "--data.target", "price", "--max_epochs", "40",
                      "--optimizer.lr", "0.1", "--log_dir", "logs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    fitted = re.search(r"price = ([-+\d.e]+)·a ([-+\d.e]+)·b ([-+\d.e]+)", result.stdout)
    assert [float(v) for v in fitted.groups()] == pytest.approx([3, -2, 1], abs=1e-4)  # measured: exact to 6 digits
    ckpt = tmp_path / "logs/version_0/checkpoints/last.ckpt"

    pred = run_main(predict_main, "--ckpt", str(ckpt), "--x", "1", "1", "0", "2", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    lines = pred.stdout.strip().splitlines()
    assert lines[0] == "a,b,predicted_price"  # the predictions below: measured exact to the printed digits
    assert [float(v) for v in lines[1].split(",")] == pytest.approx([1, 1, 2], abs=1e-3)
    assert [float(v) for v in lines[2].split(",")] == pytest.approx([0, 2, -3], abs=1e-3)

    (tmp_path / "new.csv").write_text("b,a,price\n0,1,0\n1,0,0\n")  # any column order; extra columns ignored
    pred = run_main(predict_main, "--ckpt", str(ckpt), "--csv", "new.csv", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    assert [float(r.split(",")[-1]) for r in pred.stdout.strip().splitlines()[1:]] == pytest.approx([4, -1], abs=1e-3)

    bad = run_main(predict_main, "--ckpt", str(ckpt), "--x", "1", "2", "3", cwd=tmp_path)
    one_error_line(bad, "--x: 3 values do not make rows of 2 features (a, b)")


def test_evaluate_tests_validates_and_predicts_from_the_runs_config(tmp_path):
    fit = run_main(fit_main, "--data", "synthetic", "--data.test_fraction", "0.1", "--max_epochs", "3",
                   cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    run = tmp_path / "lightning_logs/version_0"
    common = ["--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints/best.ckpt")]
    tested = run_main(evaluate_main, *common, cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr
    # The same split and the same best checkpoint as fit.py's own test: the same figure.
    assert re.search(r"test/loss ([\d.e+-]+)", tested.stdout).group(1) == \
        re.search(r"test/loss ([\d.e+-]+)", fit.stdout).group(1)
    validated = run_main(evaluate_main, *common, "--stage", "validate", cwd=tmp_path)
    assert validated.returncode == 0 and "val/loss" in validated.stdout, validated.stderr
    predicted = run_main(evaluate_main, *common, "--stage", "predict", "--out", "p.csv", cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "predicted_y"
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 1001  # every row, in order
    one_error_line(run_main(evaluate_main, *common[:2], "--ckpt_path", "nope.ckpt", cwd=tmp_path),
                    "--ckpt_path nope.ckpt: no such file")


def test_help_names_the_flags_and_the_classes_briefly():
    result = run_main(fit_main, "--help", cwd=ROOT)  # in this process: the text is the point, not start-up
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for flag in ("--accelerator", "--devices", "--precision", "--strategy", "--num_nodes", "--max_epochs",
                 "--optimizer", "--lr_scheduler", "--trainer.gradient_clip_val", "--print_config", "--stop_below"):
        assert flag in text
    assert "SyntheticDataModule" in text and "torch.optim.AdamW" in text
    assert "torchmetrics" not in text  # not every nn.Module in the libraries (measured: 376 lines, was 884)
    assert len(result.stdout.splitlines()) < 600


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_requested_without_gpu_is_one_clear_line(tmp_path):
    one_error_line(run_main(fit_main, "--accelerator", "gpu", cwd=tmp_path), "--accelerator gpu", "no GPU")
    assert not (tmp_path / "lightning_logs").exists()  # nothing half-written


@pytest.mark.parametrize(("flags", "words"), [
    (["--optimizer", "lbfgz"], ["--optimizer: unknown class 'lbfgz'"]),
    (["--optimizer.lr", "-1"], ["optimizer: Invalid learning rate: -1.0"]),
    (["--optimizer", "AdamW", "--optimizer.lr", ".inf"], ["optimizer: lr must be a finite number > 0"]),
    (["--optimizer", "AdamW", "--optimizer.lr", "nan"], ["--optimizer.lr: expected float, got 'nan'"]),
    (["--optimizer", "AdamW", "--optimizer.lr", "x"], ["--optimizer.lr: expected float, got 'x'"]),
    (["--lr_scheduler", "CosineAnnealingLR"], ["--lr_scheduler.T_max is required"]),
    (["--data", "missing.csv"], ["missing.csv: no such file"]),
    (["--data", "synthetic", "--data.val_fraction", "2"], ["--data: val_fraction must be in [0, 1)"]),
    (["--max_epochs", "x"], ["--max_epochs: expected int, got 'x'"]),
    (["--max_epochs", "-5"], ["--max_epochs must be >= 0"]),
    (["--model.in_features", "3"], ["--model.in_features is set by the data"]),
    (["--model.bias", "true"], ["--model.bias is set by --data.bias"]),
    (["--data.seed", "3"], ["--data.seed is set by --seed"]),
    # A class path is code: jsonargparse's denylist refuses these before anything is imported.
    (["--model", "subprocess.Popen"], ["--model: cannot use 'subprocess.Popen'", "import path denylist"]),
    (["--optimizer", "os.system"], ["--optimizer", "'os.system' is not allowed"]),
    (["--strategy", "bogus"], ["--strategy bogus", "invalid strategy"]),
    (["--unknown", "1"], ["unrecognized arguments: --unknown"]),
])
def test_flag_errors_are_one_line(tmp_path, flags, words):
    one_error_line(run_main(fit_main, *flags, cwd=tmp_path), *words)
    assert not any((tmp_path / "lightning_logs").glob("version_*"))  # a refused run leaves no folder


def test_config_file_with_flags_overriding_it(tmp_path):
    (tmp_path / "run.yaml").write_text("data:\n  class_path: SyntheticDataModule\n  init_args: {n_samples: 120}\n"
                                       "max_epochs: 5\noptimizer:\n  class_path: SGD\n  init_args: {lr: 0.1}\n")
    result = run_main(fit_main, "--config", "run.yaml", "--max_epochs", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # A config naming only some of a class's arguments gets that class's defaults for the rest (val_fraction 0.2,
    # not the tutorial's 0).
    assert "on synthetic data (96 train, 24 val, 0 test samples) for 3 epochs" in result.stdout
    (tmp_path / "bad.yaml").write_text("max_epoch: 5\n")
    one_error_line(run_main(fit_main, "--config", "bad.yaml", cwd=tmp_path), "max_epoch")


def test_stop_below_ends_training_like_the_tutorial(tmp_path):
    result = run_main(fit_main, "--stop_below", "0.001", "--max_epochs", "1000", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "stopped early: train/loss fell below 0.001" in result.stdout
    epochs = int(result.stdout.split(" for ")[1].split(" epochs")[0])
    loss = float(re.search(r"train/loss ([0-9.e+-]+)", result.stdout).group(1))
    assert epochs < 100 and loss < 0.001


def test_closed_pipe_is_not_a_crash(tmp_path):
    code = f"{sys.executable} {ROOT / 'scripts/fit.py'} --max_epochs 2 | true"  # the reader is gone at once
    result = subprocess.run(code, shell=True, cwd=tmp_path, capture_output=True, text=True)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


def test_precision_64_trains_in_float64(tmp_path):
    result = run_main(fit_main, "--precision", "64-true", "--max_epochs", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert _weights(tmp_path / "lightning_logs")["model.linear.weight"].dtype == torch.float64


def test_predict_never_runs_a_checkpoints_code_nor_guesses_its_columns(tmp_path):
    # In this process (run_main): what is tested is what predict.py reads, not how a process starts.
    rows = "".join(f"{u},{v},{3 * u - 2 * v + 1}\n" for u, v in zip(range(10), [0, 3, 1, 4, 1, 5, 9, 2, 6, 5],
                                                                     strict=True))
    (tmp_path / "data.csv").write_text("\ufeffa,b,y\n" + rows)
    fit = run_main(fit_main, "--data", "data.csv", "--max_epochs", "2", "--figures", "1", "--log_dir", "logs",
                   cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    ckpt = tmp_path / "logs/version_0/checkpoints/last.ckpt"

    # A recipe that would start a process: refused before anything is imported or called.
    marker = tmp_path / "pwned"
    crafted = torch.load(ckpt, weights_only=True)
    crafted["hyper_parameters"]["model"] = {"class_path": "subprocess.Popen",
                                            "init_args": {"args": ["touch", str(marker)]}}
    torch.save(crafted, tmp_path / "evil.ckpt")
    one_error_line(run_main(predict_main, "--ckpt", "evil.ckpt", "--x", "1", "2", cwd=tmp_path),
                    "error: --ckpt evil.ckpt: model class 'subprocess.Popen' is not trusted",
                    "(predict.py: --trust subprocess.Popen)")
    assert not marker.exists()
    # An optimizer recipe naming code outside torch.optim: refused the same way.
    crafted = torch.load(ckpt, weights_only=True)
    crafted["hyper_parameters"]["optimizer"] = {"class_path": "os.system", "init_args": {"command": "touch x"}}
    torch.save(crafted, tmp_path / "evil2.ckpt")
    one_error_line(run_main(predict_main, "--ckpt", "evil2.ckpt", "--x", "1", "2", cwd=tmp_path),
                    "optimizer: 'os.system' is not one of torch.optim's classes")

    # Columns by name (a BOM is not part of one), a header-less file only with --no_header, finite inputs only.
    by_x = run_main(predict_main, "--ckpt", str(ckpt), "--x", "0", "1", "1", "0", cwd=tmp_path)
    assert by_x.returncode == 0, by_x.stderr
    (tmp_path / "swapped.csv").write_text("\ufeffb,a\n1,0\n0,1\n")
    swapped = run_main(predict_main, "--ckpt", str(ckpt), "--csv", "swapped.csv", cwd=tmp_path)
    assert swapped.returncode == 0 and swapped.stdout == by_x.stdout, swapped.stderr
    (tmp_path / "bare.csv").write_text("0,1\n1,0\n")
    one_error_line(run_main(predict_main, "--ckpt", str(ckpt), "--csv", "bare.csv", cwd=tmp_path),
                    "bare.csv: no header row: the first row (line 1) is data", "or pass --no_header")
    bare = run_main(predict_main, "--ckpt", str(ckpt), "--csv", "bare.csv", "--no_header", "true", cwd=tmp_path)
    assert bare.returncode == 0 and bare.stdout == by_x.stdout, bare.stderr
    one_error_line(run_main(predict_main, "--ckpt", str(ckpt), "--x", "1", "1e400", cwd=tmp_path),
                    "error: --x value 2 ('1e400', row 1, feature 'b'): not a finite number")
    help_text = " ".join(run_main(predict_main, "--help", cwd=tmp_path).stdout.split())
    assert "other columns are ignored" in help_text and "--no_header" in help_text and "--trust" in help_text


def test_plot_path_that_cannot_be_written_is_refused_before_training(tmp_path: Path) -> None:
    result = run_main(fit_main, "--plot", "/proc/nope/p.png", "--log_dir", str(tmp_path / "logs"), cwd=tmp_path)
    one_error_line(result, "--plot /proc/nope/p.png", "cannot write there")
    assert "Trained" not in result.stdout
    assert not (tmp_path / "logs").exists()


def test_output_path_probe_leaves_no_folder_behind(tmp_path: Path) -> None:
    from lr_lightning.core.flag_checks import check_writable

    check_writable("--plot", tmp_path / "new" / "deeper" / "p.png")  # writable: no error
    assert list(tmp_path.iterdir()) == []


def test_evaluate_out_that_cannot_be_written_is_refused(tmp_path: Path) -> None:
    fit = run_main(fit_main, "--max_epochs", "1", "--log_dir", str(tmp_path / "logs"), cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    run = tmp_path / "logs" / "version_0"
    result = run_main(evaluate_main, "--config", str(run / "config.yaml"), "--ckpt_path",
                      str(run / "checkpoints" / "last.ckpt"), "--stage", "predict", "--out", "/proc/p.csv",
                      cwd=tmp_path)
    one_error_line(result, "--out /proc/p.csv", "cannot write there")


@pytest.mark.parametrize("default", ["", " = 1"], ids=["required", "with_default"])
def test_network_without_in_features_is_one_line_and_no_run_folder(default: str, tmp_path: Path) -> None:
    module = f"sizes_net_{'default' if default else 'required'}"
    (tmp_path / f"{module}.py").write_text(
        "from torch import nn\n\n\nclass Net(nn.Module):\n"
        f"    def __init__(self, n_inputs: int{default}, n_outputs: int = 1):\n"
        "        super().__init__()\n        self.f = nn.Linear(n_inputs, n_outputs)\n\n"
        "    def forward(self, x):\n        return self.f(x)\n")
    result = run_main(fit_main, "--model", f"{module}.Net", "--data", "synthetic", "--data.n_features", "3",
                      "--max_epochs", "1", "--log_dir", str(tmp_path / "logs"), cwd=tmp_path)
    one_error_line(result, f"--model {module}.Net", "in_features", "out_features", "n_inputs")
    assert not (tmp_path / "logs").exists()


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
    from lr_lightning.core.flag_checks import CLUSTER_VARIABLES

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


def _billion_laughs():
    lines = ["lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("text", "words"), [
    ("seed: 1\na: &a [*a]\n", "line 2: YAML aliases (*a) are not accepted"),  # was a RecursionError
    (_billion_laughs(), "line 2: YAML aliases (*l0) are not accepted"),  # was still running after 300 s
    ("data: &d {class_path: SyntheticDataModule}\nmodel: *d\n", "line 2: YAML aliases (*d) are not accepted"),
])
def test_a_config_with_yaml_aliases_is_refused_in_one_line(tmp_path, text, words):
    (tmp_path / "hostile.yaml").write_text(text)
    start = time.perf_counter()
    done = run_main(fit_main, "--config", "hostile.yaml", cwd=tmp_path)
    assert time.perf_counter() - start < 10  # measured 0.01 s; the laughs expanded for minutes
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"error: --config hostile.yaml: {words} (one can refer to itself, or expand a few lines into billions of "
        "values); write the value out"], done.stderr
    assert not (tmp_path / "lightning_logs").exists()


def test_the_parser_s_own_yaml_loader_refuses_aliases_too():
    # Where the command line's --config check does not look (a nested config file, a value): jsonargparse's loader.
    import jsonargparse
    import yaml

    from lr_lightning.core.commands import load_yaml

    assert jsonargparse.get_loader("yaml") is load_yaml
    with pytest.raises(yaml.YAMLError, match=r"line 1: YAML aliases \(\*a\) are not accepted"):
        load_yaml("&a [*a]")
    assert load_yaml("lr: 1e-3\nname: a*b\n") == {"lr": 1e-3, "name": "a*b"}  # jsonargparse's float rule kept


def test_a_config_too_large_to_be_one_is_refused_unread(tmp_path, monkeypatch):
    import lr_lightning.core.cli as cli

    monkeypatch.setattr(cli, "MAX_CONFIG_BYTES", 1000)  # (writing 16 MiB for a test is not needed)
    (tmp_path / "big.yaml").write_text("seed: 1\n" + "# padding\n" * 200)
    done = run_main(fit_main, "--config", "big.yaml", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error: --config big.yaml: 2,008 bytes; a config is a "
                                                           "few kilobytes"), done.stderr


@pytest.mark.parametrize(("config", "words"), [
    ("data:\n  class_path: SyntheticDataModule\n  init_args:\n    n_sample: 10\n",
     "data.n_sample: not an argument of SyntheticDataModule"),
    ("model:\n  class_path: MLPRegressor\n  init_args:\n    hiden: [3]\n",
     "model.hiden: not an argument of MLPRegressor"),
    ("trainer:\n  max_epoch: 3\n", "trainer.max_epoch: not an argument of Trainer"),
])
def test_an_unknown_key_in_a_config_is_named_by_its_place_there(tmp_path, config, words):
    # It was "Option 'n_sample' is not accepted": which file, which part?
    (tmp_path / "run.yaml").write_text(config)
    done = run_main(fit_main, "--config", "run.yaml", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.splitlines() == [f"error: --config run.yaml: {words} (see --help)"], \
        done.stderr


def test_barebones_is_refused_in_words_not_with_an_object_s_address(tmp_path):
    done = run_main(fit_main, "--trainer.barebones", "true", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error: --trainer.barebones true: turns off what a fit.py "
                                                           "run is made of"), done.stderr
    assert not (tmp_path / "lightning_logs").exists()
    # Any Trainer complaint that quotes an object names its class instead (Lightning quoted the logger's repr).
    from lightning.pytorch.loggers import TensorBoardLogger

    from lr_lightning.core.cli import parse
    from lr_lightning.core.commands import UsageError
    from lr_lightning.core.run import make_trainer

    _, cfg = parse("fit", ["--max_epochs", "1"])
    cfg.trainer.barebones = True  # past the flag check, as a Trainer argument the check does not know would be
    with pytest.raises(UsageError) as e:
        make_trainer(cfg, cfg.trainer, TensorBoardLogger(tmp_path / "logs", name="", version=0), [], False, False)
    assert "logger=TensorBoardLogger)" in str(e.value) and " object at 0x" not in str(e.value), str(e.value)
