"""scripts/fit.py, evaluate.py and predict.py as a user runs them: in a subprocess where the process is the point
(start-up, quiet output, pipes), else their main() in this process (run_main), which skips a new Python's imports."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lr_lightning.benchmark.speed import main as benchmark_main
from lr_lightning.core.cli import fit_main
from lr_lightning.core.evaluate import evaluate_main
from lr_lightning.core.predict import predict_main
from lr_lightning.exact.nist import main as nist_main

from .conftest import LBFGS, ROOT, one_error_line, run_main, run_script


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
    result = run_script("fit.py", "--help", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for flag in ("--accelerator", "--devices", "--precision", "--strategy", "--num_nodes", "--max_epochs",
                 "--optimizer", "--lr_scheduler", "--trainer.gradient_clip_val", "--print_config", "--stop_below"):
        assert flag in text
    assert "SyntheticDataModule" in text and "torch.optim.AdamW" in text
    assert "torchmetrics" not in text  # not every nn.Module in the libraries (measured: 376 lines, was 884)
    assert len(result.stdout.splitlines()) < 600


@pytest.mark.parametrize(("module", "flag"), [("lr_lightning.tutorial.cli", "--buggy_gradient"),
                                            ("lr_lightning.exact.nist", "--lbfgs_epochs")])
def test_from_scratch_and_nist_help_answer_without_importing_torch(module, flag):
    code = (f"import sys\nfrom {module} import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0\nprint(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert flag in result.stdout and result.stdout.strip().splitlines()[-1] == "[]"


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


def test_standardized_polynomial_fit_predicts_from_raw_inputs(tmp_path):
    x = np.linspace(-2, 4, 80)
    rows = "\n".join(f"{v:.6f},{1 + 2 * v - 0.5 * v * v:.6f}" for v in x)
    (tmp_path / "curve.csv").write_text("x,y\n" + rows + "\n")
    result = run_main(fit_main, "--data", "curve.csv", "--data.standardize", "true", "--data.polynomial_degree", "2",
                      *LBFGS, "--precision", "64-true", "--max_epochs", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "y = +2·x -0.5·x^2 +1" in result.stdout  # the raw-power coefficients
    assert "least squares: y = +2·x -0.5·x^2 +1" in result.stdout and "gap" in result.stdout
    ckpt = next(tmp_path.glob("lightning_logs/*/checkpoints/last.ckpt"))
    pred = run_main(predict_main, "--ckpt", str(ckpt), "--x", "0", "3", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    values = [float(line.split(",")[1]) for line in pred.stdout.strip().splitlines()[1:]]
    assert values == pytest.approx([1.0, 2.5], abs=1e-6)  # raw x in, original units out (measured: exact)


@pytest.mark.slow  # 10 s: eleven datasets, each trained twice, in a new Python
@pytest.mark.skipif(not (ROOT.parent / "shared" / "nist-strd").is_dir(), reason="NIST StRD data not found")
def test_nist_script_prints_a_row_per_dataset(tmp_path):
    result = run_script("nist.py", "--lbfgs_epochs", "3", "--sgd_epochs", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] and line.split()[0] in
            ("Norris", "Pontius", "NoInt1", "NoInt2", "Longley", "Filip", "Wampler1", "Wampler2", "Wampler3",
             "Wampler4", "Wampler5")]
    assert len(rows) == 11 and all(float(r[3]) >= 9 for r in rows)  # least_squares column; measured: >= 9.3


@pytest.mark.parametrize(("flags", "words"), [
    (["--lbfgs_epochs", "0"], ["--lbfgs_epochs: expected a whole number > 0, got '0'"]),
    (["--sgd_epochs", "many"], ["--sgd_epochs: expected a whole number > 0, got 'many'"]),
    (["--data_dir", "nowhere"], ["--data_dir nowhere: no such folder (the NIST StRD .dat files)"]),
    (["--data-dir", "."], ["unrecognized arguments: --data-dir"]),
])
def test_nist_flag_errors_are_one_line(tmp_path, flags, words):
    one_error_line(run_main(nist_main, *flags, cwd=tmp_path), *words)


def test_nist_data_dir_without_the_files_is_one_line(tmp_path):
    (tmp_path / "Norris.dat").write_text("not the file\n")
    one_error_line(run_main(nist_main, "--data_dir", str(tmp_path), cwd=tmp_path), "no Pontius.dat, NoInt1.dat")


@pytest.mark.parametrize(("flags", "words"), [
    (["--batch_size", "0"], ["--batch_size: expected a whole number > 0, got '0'"]),
    (["--paths", "[loop,fast]"],
     ["--paths: expected one of loop, dataloader, package, package-k1, barebones, got 'fast'"]),
    (["--paths", "loop", "package"], ["--paths: expected a list [a, b, ...], got 'loop'"]),
    (["--paths", "[]"], ["--paths: expected at least one path, got []"]),
    (["--files", "small"], ["--files: expected a list [a, b, ...] or null, got 'small'"]),
    (["--files", "[missing.npy,big]"], ["--files: missing.npy: no such file"]),
    (["--n-samples", "10"], ["unrecognized arguments: --n-samples"]),
])
def test_benchmark_flag_errors_are_one_line(tmp_path, flags, words):
    one_error_line(run_main(benchmark_main, *flags, cwd=tmp_path), *words)


def test_benchmark_files_runs_each_mode_through_the_package(tmp_path):
    """The child run that --files starts in a fresh process per mode (--one_run), here in this one."""
    from lr_lightning.benchmark.make_data import write_synthetic

    write_synthetic(tmp_path / "data", 3000, 2, shard_rows=1024)
    for mode in ("in-memory", "memory-mapped"):
        result = run_main(benchmark_main, "--one_run", json.dumps([str(tmp_path / "data"), mode]), "--epochs", "2",
                          "--batch_size", "512", "--lr", "0.1", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout.strip().splitlines()[-1])
        assert len(out["times"]) == 2 and out["peak"] > 0 and 0 < out["loss"] < 5, out


@pytest.mark.parametrize(("script", "flags", "line"), [
    ("from_scratch.py", ["--lr", "-1"], "error: --lr: expected a number > 0, got '-1' (see --help)"),
    ("nist.py", ["--sgd_epochs", "1.5"], "error: --sgd_epochs: expected a whole number > 0, got '1.5' (see --help)"),
    pytest.param("benchmark.py", ["--epochs", "x"],
                 "error: --epochs: expected a whole number > 0, got 'x' (see --help)",
                 marks=pytest.mark.slow),  # 6 s: speed.py imports torch and Lightning before it parses
])
def test_the_scripts_answer_a_bad_flag_with_one_line(tmp_path, script, flags, line):
    result = run_script(script, *flags, cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr.splitlines()) == (2, "", [line])


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
    from lr_lightning.core.cli import check_writable

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
