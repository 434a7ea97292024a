"""Bad input: one line `error: ...` naming the file, row, column or flag, exit 2 from the CLI, the same words
from the API, no traceback; and checkpoints from elsewhere cannot run code."""

import pickle

import numpy as np
import pytest
import torch

from lr_lightning import LinearRegression, RegressionDataModule, RegressionModule
from lr_lightning.cli import fit_main, predict_main

FILES = {
    "empty.csv": "",
    "header.csv": "a,b\n",
    "words.csv": "a,b\n1,2\n3,lots\n",
    "nan.csv": "a,b\n1,2\nnan,4\n",
    "inf.csv": "a,b\n1,2\n3,inf\n",
    "ragged.csv": "a,b,c\n1,2,3\n4,5\n",
    "one.csv": "y\n1\n2\n3\n",
    "good.csv": "a,b,y\n" + "".join(f"{i},{i % 3},{2 * i}\n" for i in range(20)),
}

# (CLI arguments, words the one line must contain); {d} is the folder with FILES.
CASES = [
    (["--data", "{d}/missing.csv"], "missing.csv: no such file"),
    (["--data", "{d}/folder.csv"], "folder.csv: is a directory, expected a file"),
    (["--data", "{d}/empty.csv"], "empty.csv: the file is empty"),
    (["--data", "{d}/header.csv"], "header.csv: only a header row; no data rows"),
    (["--data", "{d}/words.csv"], "words.csv: row 3, column 'b': 'lots' is not a number"),
    (["--data", "{d}/nan.csv"], "nan.csv: row 3, column 'a': 'nan' is not a finite number"),
    (["--data", "{d}/inf.csv"], "inf.csv: row 3, column 'b': 'inf' is not a finite number"),
    (["--data", "{d}/ragged.csv"], "ragged.csv: row 3 has 2 values, the header has 3 columns"),
    (["--data", "{d}/one.csv"], "one.csv: only one column ('y'); need at least one feature column"),
    (["--data", "{d}/good.csv", "--target", "price"], "no column 'price' for --target; the columns are a, b, y"),
    (["--data", "{d}/binary.csv"], "binary.csv: not a text CSV file"),
    (["--data", "{d}/cube.npy"], "cube.npy: expected a 2-D array (rows, columns)"),
    (["--data", "{d}/data.txt"], "unknown data format '.txt'; expected a .csv or .npy file"),
    (["--val-fraction", "1.5", "--data", "synthetic"], "val_fraction must be in [0, 1), got 1.5"),
    (["--test-fraction", "-0.1", "--data", "synthetic"], "test_fraction must be in [0, 1), got -0.1"),
    (["--val-fraction", "0.6", "--test-fraction", "0.4", "--data", "synthetic"], "leave no training samples"),
    (["--batch-size", "0"], "batch_size must be a positive integer, got 0"),
    (["--lr", "0"], "lr must be a finite number > 0, got 0.0"),
    (["--lr", "nan"], "lr must be a finite number > 0, got nan"),
    (["--max-epochs", "-5"], "--max-epochs must be >= 0 (or -1 for no limit), got -5"),
    (["--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
    (["--devices", "64", "--accelerator", "cpu"], "--devices 64: this machine has"),
    (["--devices", "two"], "--devices two: expected auto, a number or a list like 0,1"),
    (["--precision", "13-bits"], "--precision 13-bits"),
    (["--polynomial-degree", "0"], "polynomial_degree must be an integer >= 1, got 0"),
    (["--data", "synthetic", "--n-samples", "0"], "n_samples and n_features must be >= 1"),
    (["--data", "synthetic", "--noise", "-1"], "noise must be a finite number >= 0"),
    (["--config", "{d}/missing.yaml"], "--config {d}/missing.yaml: no such file"),
    (["--max-epochs", "three"], "argument --max-epochs: invalid int value: 'three'"),
    (["--resume", "{d}/good.csv"], "--resume {d}/good.csv: not a checkpoint written by fit.py"),
    (["--resume", "{d}/nope.ckpt"], "--resume {d}/nope.ckpt: no such file"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1, got 0"),
]


@pytest.fixture
def folder(tmp_path):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "binary.csv").write_bytes(b"a,b\n\xff\xfe\x00\x81,2\n")
    np.save(tmp_path / "cube.npy", np.zeros((4, 2, 2)))
    (tmp_path / "data.txt").write_text("1 2\n")
    return tmp_path


def _exit_code(main, argv):
    """What the process would exit with: the return value, or argparse's SystemExit for flag errors."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize(("argv", "words"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_fit_cli_bad_input_is_one_line_and_exit_2(folder, capsys, argv, words):
    argv = [a.format(d=folder) for a in argv]
    assert _exit_code(fit_main, [*argv, "--log-dir", str(folder / "logs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and words.format(d=folder) in err[0], err
    assert not (folder / "logs").exists()  # nothing was started or written


@pytest.mark.parametrize("name", ["missing.csv", "folder.csv", "empty.csv", "header.csv", "words.csv", "nan.csv",
                                  "inf.csv", "ragged.csv", "one.csv", "binary.csv", "cube.npy"])
def test_api_raises_with_the_same_words(folder, capsys, name):
    fit_main(["--data", str(folder / name), "--log-dir", str(folder / "logs")])
    cli_words = capsys.readouterr().err.strip().removeprefix("error: ")
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        RegressionDataModule.from_path(folder / name)
    assert str(e.value) == cli_words


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"x": np.zeros((5, 2, 2)), "y": np.zeros(5)}, ValueError, "x: expected a 1-D or 2-D array"),
        ({"x": np.zeros(5), "y": np.zeros(4)}, ValueError, "x has 5 samples but y has 4"),
        ({"x": [1.0, float("inf")], "y": [1.0, 2.0]}, ValueError, "x: non-finite value inf at row 1, column 0"),
        ({"x": [1.0, 2.0], "y": [1.0, float("nan")]}, ValueError, "y: non-finite value nan at row 1, column 0"),
        ({"x": ["a", "b"], "y": [1.0, 2.0]}, ValueError, "x: expected an array of real numbers"),
    ],
)
def test_api_bad_arrays(kwargs, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        RegressionDataModule(**kwargs, val_fraction=0.0)


def _checkpoint(folder):
    fit_main(["--max-epochs", "1", "--log-dir", str(folder / "logs"), "--data", str(folder / "good.csv")])
    return next((folder / "logs").glob("*/checkpoints/last.ckpt"))


def test_predict_bad_input(folder, capsys):
    ckpt = _checkpoint(folder)
    capsys.readouterr()
    cases = [
        (["--ckpt", str(folder / "nope.ckpt"), "--x", "1", "2"], f"--ckpt {folder / 'nope.ckpt'}: no such file"),
        (["--ckpt", str(folder / "good.csv"), "--x", "1", "2"], "not a checkpoint written by fit.py"),
        (["--ckpt", str(ckpt), "--x", "1", "2", "3"], "--x: 3 values do not make rows of 2 features (a, b)"),
        (["--ckpt", str(ckpt), "--csv", str(folder / "one.csv")], "one.csv: no column 'a', 'b'; the columns are y"),
    ]
    for argv, words in cases:
        assert predict_main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


class _CreatesAFile:
    """Unpickling this calls open(path, 'w'): what a malicious checkpoint could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_crafted_checkpoint_cannot_run_code(folder, capsys):
    marker = folder / "pwned"
    evil = folder / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"payload": _CreatesAFile(marker)}}, evil)
    assert predict_main(["--ckpt", str(evil), "--x", "1"]) == 2
    assert not marker.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a checkpoint written by fit.py" in err[0]
    # Resuming from it is refused the same way, before anything trains.
    assert _exit_code(fit_main, ["--resume", str(evil), "--log-dir", str(folder / "logs")]) == 2
    assert not marker.exists() and "not a checkpoint written by fit.py" in capsys.readouterr().err
    # The same with the API: Lightning's loader refuses the unknown global under weights_only.
    with pytest.raises(pickle.UnpicklingError):
        RegressionModule.load_from_checkpoint(evil, weights_only=True, model=LinearRegression(1))
    assert not marker.exists()
