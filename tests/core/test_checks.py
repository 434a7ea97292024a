"""Bad input: one line `error: ...` naming the file, row, column or flag, exit 2 from the CLI, the same words
from the API, no traceback; and checkpoints from elsewhere cannot run code."""

import sys

import numpy as np
import pytest
import torch

from lr_lightning import LinearRegression, RegressionModule
from lr_lightning.core.cli import fit_main
from lr_lightning.core.data import RegressionDataModule, datamodule_for_path
from lr_lightning.core.predict import predict_main
from tests.bad_input import FILES, predict_error, write_bad_files

# (CLI arguments, words the one line must contain: one string or several); {d} is the folder with FILES.
CASES = [
    (["--data", "{d}/missing.csv"], "missing.csv: no such file"),
    (["--data", "{d}/folder.csv"], "folder.csv: is a directory, expected a file"),
    (["--data", "{d}/empty.csv"], "empty.csv: the file is empty"),
    (["--data", "{d}/header.csv"], "header.csv: only a header row; no data rows"),
    (["--data", "{d}/words.csv"], "words.csv: line 3, column 'b': 'lots' is not a number"),
    (["--data", "{d}/nan.csv"], "nan.csv: line 3, column 'a': 'nan' is not a finite number"),
    (["--data", "{d}/inf.csv"], "inf.csv: line 3, column 'b': 'inf' is not a finite number"),
    (["--data", "{d}/ragged.csv"], "ragged.csv: line 3 has 2 values, the header has 3 columns"),
    (["--data", "{d}/one.csv"], "one.csv: only one column ('y'); need at least one feature column"),
    (["--data", "{d}/good.csv", "--data.target", "price"],
     ("good.csv: no target column 'price'", "the columns are a, b, y")),
    (["--data", "{d}/binary.csv"], "binary.csv: not a text CSV file"),
    (["--data", "{d}/cube.npy"], "cube.npy: expected a 2-D array (rows, columns)"),
    (["--data", "{d}/data.txt"], "data.txt: unknown data format '.txt'"),
    (["--data.val_fraction", "1.5", "--data", "synthetic"], "val_fraction must be in [0, 1), got 1.5"),
    (["--data.test_fraction", "-0.1", "--data", "synthetic"], "test_fraction must be in [0, 1), got -0.1"),
    (["--data.val_fraction", "0.6", "--data.test_fraction", "0.4", "--data", "synthetic"], "leave no training samples"),
    (["--data.batch_size", "0"], "batch_size must be a positive integer, got 0"),
    (["--optimizer.lr", "0"], "optimizer: lr must be a finite number > 0, got 0.0"),
    (["--optimizer.lr", "nan"], "--optimizer.lr: expected float, got 'nan'"),
    (["--max_epochs", "-5"], "--max_epochs must be >= 0 (or -1 for no limit), got -5"),
    (["--optimizer", "rmsprop"], "--optimizer: unknown class 'rmsprop'"),
    (["--devices", "64", "--accelerator", "cpu"], "--devices 64: on the CPU, a number of processes from 1 to"),
    (["--devices", "two", "--accelerator", "cpu"],
     ("--accelerator cpu --devices two", "`devices` selected with `CPUAccelerator` should be an int > 0")),
    (["--precision", "13-bits"], ("--precision 13-bits", "Precision '13-bits' is invalid")),
    (["--data.polynomial_degree", "0"], "polynomial_degree must be a whole number from 1 to 50, got 0"),
    (["--data", "synthetic", "--data.n_samples", "0"], "n_samples and n_features must be >= 1"),
    (["--data", "synthetic", "--data.noise", "-1"], "noise must be a finite number >= 0"),
    pytest.param(["--config", "{d}/missing.yaml"], ("--config", "{d}/missing.yaml", "does not exist")),
    (["--max_epochs", "three"], "--max_epochs: expected int, got 'three'"),
    (["--config", "{d}/self.yaml"], "line 1: YAML aliases (*a) are not accepted"),
    (["--config", "{d}/laughs.yaml"], "line 2: YAML aliases (*a) are not accepted"),
    (["--resume", "{d}/good.csv"], "--resume {d}/good.csv: not a checkpoint written by fit.py"),
    (["--resume", "{d}/nope.ckpt"], "--resume {d}/nope.ckpt: no such file"),
    pytest.param(["--checkpoint_every", "0"], ("--checkpoint_every", ">= 1, got 0")),
    (["--data", "{d}/noheader.csv"], "noheader.csv: no header row: the first row (line 1) is data; add a header row "
                                     "naming the columns"),
    (["--data", "{d}/dupname.csv"], "dupname.csv: column 2 repeats the name 'a' of column 1; column names must be "
                                    "unique"),
    (["--data", "{d}/noname.csv"], "noname.csv: column 2 has no name in the header row (line 1)"),
    (["--data", "{d}/comments.csv"], "comments.csv: no header row: the file holds only blank or comment lines"),
]


@pytest.fixture
def folder(tmp_path):
    return write_bad_files(tmp_path)


@pytest.mark.parametrize(("argv", "words"), CASES, ids=[" ".join(getattr(c, "values", c)[0]) for c in CASES])
def test_fit_cli_bad_input_is_one_line_and_exit_2(folder, capsys, argv, words):
    argv = [a.format(d=folder) for a in argv]
    assert fit_main([*argv, "--log_dir", str(folder / "logs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    words = [w.format(d=folder) for w in ((words,) if isinstance(words, str) else words)]
    assert len(err) == 1 and err[0].startswith("error: ") and all(w in err[0] for w in words), err
    assert not (folder / "logs").exists()  # nothing was started or written


@pytest.mark.parametrize("name", [
    pytest.param("missing.csv"),
    "folder.csv", "empty.csv", "header.csv", "words.csv", "nan.csv", "inf.csv", "ragged.csv", "one.csv", "binary.csv",
    "cube.npy", "noheader.csv", "dupname.csv", "noname.csv", "comments.csv"])
def test_api_raises_with_the_same_words(folder, capsys, name):
    fit_main(["--data", str(folder / name), "--log_dir", str(folder / "logs")])
    cli_words = capsys.readouterr().err.strip().removeprefix("error: ")
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        datamodule_for_path(folder / name)(folder / name)  # the class the CLI picks for the file
    # The CLI's line is the API's words after the flag (--data: ..., or --data PATH: ...), the file named once.
    api_words = str(e.value)
    assert cli_words.startswith("--data") and cli_words.endswith(api_words), (cli_words, api_words)
    assert cli_words.count(name) == api_words.count(name), cli_words


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"x": np.zeros((5, 2, 2)), "y": np.zeros(5)}, ValueError, "x: expected a 1-D or 2-D array"),
        ({"x": np.zeros(5), "y": np.zeros(4)}, ValueError, "x has 5 samples but y has 4"),
        ({"x": [1.0, float("inf")], "y": [1.0, 2.0]}, ValueError, "x: non-finite value inf at row 2 (1-based)"),
        ({"x": [1.0, 2.0], "y": [1.0, float("nan")]}, ValueError, "y: non-finite value nan at row 2 (1-based)"),
        ({"x": ["a", "b"], "y": [1.0, 2.0]}, ValueError, "x: expected an array of real numbers"),
    ],
)
def test_api_bad_arrays(kwargs, exc, words):
    with pytest.raises(exc, match=words.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        RegressionDataModule(**kwargs, val_fraction=0.0)


def _checkpoint(folder):
    fit_main(["--max_epochs", "1", "--log_dir", str(folder / "logs"), "--data", str(folder / "good.csv")])
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
    assert fit_main(["--resume", str(evil), "--log_dir", str(folder / "logs")]) == 2
    assert not marker.exists() and "not a checkpoint written by fit.py" in capsys.readouterr().err
    # The same with the API: refused unread, in one line.
    with pytest.raises(ValueError, match="evil.ckpt: not a checkpoint written by lr_lightning .it holds objects"):
        RegressionModule.load_from_checkpoint(evil, model=LinearRegression(1))
    assert not marker.exists()


# ------------------------------------------------------------------- predict.py: checkpoints from anyone, no guesses
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint fit.py wrote for features a, b and target y."""
    folder = tmp_path_factory.mktemp("trained")
    (folder / "good.csv").write_text(FILES["good.csv"])
    assert fit_main(["--max_epochs", "1", "--log_dir", str(folder / "logs"), "--data", str(folder / "good.csv"),
                     "--figures", "1"]) == 0
    return next((folder / "logs").glob("*/checkpoints/last.ckpt"))


def _predict_rows(capsys, argv):
    capsys.readouterr()
    assert predict_main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    return out[0], [[float(v) for v in line.split(",")] for line in out[1:]]


def _set(*keys, value):
    """A change to a checkpoint dict: ckpt[k1][k2]... = value."""
    def change(ckpt):
        d = ckpt
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return change


def _recipe_touching(class_path, marker_key):
    return lambda marker: _set("hyper_parameters", "model", value={"class_path": class_path, "init_args": {
        marker_key: ["touch", str(marker)] if marker_key == "args" else str(marker), **(
            {"mode": "w"} if class_path == "builtins.open" else {})}})


# (change to the checkpoint, the words after "error: --ckpt PATH: ", whether the API raises them too)
CRAFTED = [
    (_recipe_touching("subprocess.Popen", "args"),
     "model class 'subprocess.Popen' is not trusted: loading builds only lr_lightning's networks and classes you "
     "name; if you trust its code, pass trusted=[Popen] (predict.py: --trust subprocess.Popen)", True),
    (_recipe_touching("builtins.open", "file"),
     "model class 'builtins.open' is not trusted: loading builds only lr_lightning's networks and classes you name; "
     "if you trust its code, pass trusted=[open] (predict.py: --trust builtins.open)", True),
    (lambda m: _set("hyper_parameters", "model", "init_args", value="in_features=2"),
     "model recipe for lr_lightning.core.networks.LinearRegression: init_args must be a mapping of names to plain "
     "values "
     "(numbers, strings, lists), got 'in_features=2'", True),
    (lambda m: _set("datamodule_hyper_parameters", "feature_names", value=["a", "b", "c"]),
     "feature_names has 3 name(s) (a, b, c), but the network has 2 input(s)", False),
    (lambda m: _set("datamodule_hyper_parameters", "feature_names", value=["a", "a"]),
     "feature_names names 'a' twice", False),
    (lambda m: _set("datamodule_hyper_parameters", "feature_names", value=[1, 2]),
     "feature_names must be a list of non-empty strings, got [1, 2]", False),
    (lambda m: _set("datamodule_hyper_parameters", "target_names", value=["y", "z"]),
     "target_names has 2 name(s) (y, z), but the network has 1 output(s)", False),
    (lambda m: _set("datamodule_hyper_parameters", value=[1]), "datamodule_hyper_parameters is a list, not a mapping",
     False),
    (lambda m: _set("hyper_parameters", "normalization", value={"polynomial_degree": None}),
     "normalization: missing key(s) bias, centre, scale, feature_mean, feature_scale, y_mean, y_scale", True),
    (lambda m: _set("hyper_parameters", "normalization", value={
        "polynomial_degree": None, "bias": True, "centre": [0.0, 0.0], "scale": [1.0, 1.0], "feature_mean": [0.0, 0.0],
        "feature_scale": [1.0, 1.0], "y_mean": [0.0, 0.0], "y_scale": [1.0, 1.0]}),
     "the network LinearRegression fails on one row of 2 input(s) (ValueError: the network has 1 output(s), its "
     "normalization (y_mean) 2)", False),
    (lambda m: _set("state_dict", "model.linear.weight", value=torch.zeros(1, 3)),
     "state_dict: 'model.linear.weight' has shape (1, 3) in the checkpoint, (1, 2) in the network LinearRegression "
     "rebuilt here", True),
    (lambda m: _set("state_dict", "model.linear.weight", value=torch.tensor([[1.0, float("nan")]])),
     "'model.linear.weight' holds non-finite values (nan or inf); the run that wrote it diverged", False),
    (lambda m: _set("hyper_parameters", "payload", value="x"),
     "not a checkpoint written by fit.py (unknown hyperparameters payload)", False),
    pytest.param(lambda m: _set("hyper_parameters", "optimizer", "init_args", "lr", value="fast"),
                 "optimizer: lr must be a number, got 'fast'", True),
]


@pytest.mark.parametrize(("change", "words", "api"), CRAFTED, ids=[getattr(c, "values", c)[1][:40] for c in CRAFTED])
def test_predict_checks_every_checkpoint_field_before_use(trained, tmp_path, capsys, change, words, api):
    marker = tmp_path / "pwned"
    ckpt = torch.load(trained, weights_only=True)
    change(marker)(ckpt)
    path = tmp_path / "crafted.ckpt"
    torch.save(ckpt, path)
    assert predict_error(capsys, ["--ckpt", path, "--x", "1", "2"]) == f"error: --ckpt {path}: {words}"
    if api:
        with pytest.raises(ValueError) as e:
            RegressionModule.load_from_checkpoint(path, weights_only=True)
        assert str(e.value) == words
    assert not marker.exists()


def test_predict_csv_columns_by_name_bom_and_header(trained, tmp_path, capsys):
    _, (ab,) = _predict_rows(capsys, ["--ckpt", trained, "--x", "0", "1"])  # a = 0, b = 1
    _, (ba,) = _predict_rows(capsys, ["--ckpt", trained, "--x", "1", "0"])
    assert ab[-1] != ba[-1]  # the model tells the two columns apart
    # Excel's BOM, the columns in another order, an extra column that is not even numeric: matched by name.
    (tmp_path / "bom.csv").write_bytes("\ufeffb , id, a\n1, row-1, 0\n".encode())
    header, rows = _predict_rows(capsys, ["--ckpt", trained, "--csv", tmp_path / "bom.csv"])
    assert header == "a,b,predicted_y" and rows == [ab]
    # Without a header row: refused, naming the flag; with --no_header, the checkpoint's order.
    (tmp_path / "bare.csv").write_text("0,1\n1,0\n")
    assert predict_error(capsys, ["--ckpt", trained, "--csv", tmp_path / "bare.csv"]) == (
        f"error: {tmp_path / 'bare.csv'}: no header row: the first row (line 1) is data; add a header row naming the "
        "columns, or pass --no_header true to take its columns as the checkpoint's features in order (a, b)")
    bare = _predict_rows(capsys, ["--ckpt", trained, "--csv", tmp_path / "bare.csv", "--no_header", "true"])
    assert bare[1] == [ab, ba]
    (tmp_path / "wide.csv").write_text("# no header\n0,1,2\n")
    assert predict_error(capsys, ["--ckpt", trained, "--csv", tmp_path / "wide.csv", "--no_header", "true"]) == (
        f"error: {tmp_path / 'wide.csv'}: line 2 has 3 values, expected 2 (a, b, in this order)")


@pytest.mark.parametrize(("text", "words"), [
    ("a,a,b\n1,2,3\n", "column 2 repeats the name 'a' of column 1; column names must be unique"),
    ("a,c\n1,2\n", "no column 'b'; the columns are a, c"),
    ("a,b\n1,2\n3,nan\n", "line 3, column 'b': 'nan' is not a finite number; remove or fill the row"),
    ("# from the field\na,b\n1e400,2\n", "line 3, column 'a': '1e400' is not a finite number; remove or fill the row"),
    ("a,b\n1e39,2\n", "line 2, column 'a': '1e39' is beyond ±3.40282e+38; remove or fill the row"),
    ("a,b\n1,\n", "line 2, column 'b': '' is not a number"),
])
def test_predict_csv_problems_are_one_line(trained, tmp_path, capsys, text, words):
    (tmp_path / "new.csv").write_text(text)
    assert predict_error(capsys, ["--ckpt", trained, "--csv", tmp_path / "new.csv"]) == (
        f"error: {tmp_path / 'new.csv'}: {words}")


@pytest.mark.parametrize(("values", "words"), [
    (["nan", "1"], "--x value 1 ('nan', row 1, feature 'a'): not a finite number"),
    (["1", "2", "3", "inf"], "--x value 4 ('inf', row 2, feature 'b'): not a finite number"),
    (["1e400", "1"], "--x value 1 ('1e400', row 1, feature 'a'): not a finite number"),
    (["1", "1e39"], "--x value 2 ('1e39', row 1, feature 'b'): beyond ±3.40282e+38, the range of the model's float32"),
    (["1", "two"], "--x value 2 ('two', row 1, feature 'b'): not a number"),
])
def test_predict_x_must_be_finite_numbers(trained, capsys, values, words):
    assert predict_error(capsys, ["--ckpt", trained, "--x", *values]) == f"error: {words}"


def test_predict_refuses_an_overflowing_prediction_and_a_misplaced_flag(trained, tmp_path, capsys):
    ckpt = torch.load(trained, weights_only=True)
    ckpt["state_dict"]["model.linear.weight"] = torch.tensor([[3e38, 3e38]])
    torch.save(ckpt, tmp_path / "big.ckpt")
    assert predict_error(capsys, ["--ckpt", tmp_path / "big.ckpt", "--x", "1", "1"]) == (
        "error: the prediction for input row 1 is inf: the inputs are beyond what the model's float32 arithmetic holds")
    assert predict_error(capsys, ["--ckpt", trained, "--x", "1", "1", "--no_header", "true"]) == (
        "error: --no_header applies to --csv (a CSV file without a header row)")


USER_NET = '''
from torch import nn


class Net(nn.Module):
    """A user's network, kept in the user's own module."""

    def __init__(self, in_features: int, out_features: int = 1, width: int = 3) -> None:
        super().__init__()
        self.in_features, self.out_features, self.width = in_features, out_features, width
        self.net = nn.Sequential(nn.Linear(in_features, width), nn.Tanh(), nn.Linear(width, out_features))

    def forward(self, x):
        return self.net(x)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``lrl_user_net.Net`` in the working directory, as a user keeps it; forgotten again afterwards."""
    (tmp_path / "lrl_user_net.py").write_text(USER_NET)
    (tmp_path / "good.csv").write_text(FILES["good.csv"])
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield "lrl_user_net.Net"
    sys.modules.pop("lrl_user_net", None)


def test_predict_trusts_a_users_network_only_when_named(user_module, tmp_path, capsys):
    assert fit_main(["--data", "good.csv", "--model", user_module, "--max_epochs", "1", "--log_dir", "logs",
                     "--figures", "1"]) == 0
    ckpt = next((tmp_path / "logs").glob("*/checkpoints/last.ckpt"))
    assert predict_error(capsys, ["--ckpt", ckpt, "--x", "1", "2"]) == (
        f"error: --ckpt {ckpt}: model class 'lrl_user_net.Net' is not trusted: loading builds only lr_lightning's "
        "networks and classes you name; if you trust its code, pass trusted=[Net] (predict.py: --trust "
        "lrl_user_net.Net)")
    header, rows = _predict_rows(capsys, ["--ckpt", ckpt, "--x", "1", "2", "--trust", user_module])
    net = sys.modules["lrl_user_net"].Net
    module = RegressionModule.load_from_checkpoint(ckpt, weights_only=True, trusted=[net])
    with torch.no_grad():
        assert header == "a,b,predicted_y" and rows[0][-1] == pytest.approx(module(torch.tensor([[1.0, 2.0]])).item(),
                                                                            rel=1e-5)
    for name, words in (("nowhere.Net", "--trust nowhere.Net: cannot import it"),
                        ("Net", "--trust Net: expected package.module.ClassName"),
                        ("os.path", "--trust os.path: not an nn.Module class")):
        assert predict_error(capsys, ["--ckpt", ckpt, "--x", "1", "2", "--trust", name]).startswith(f"error: {words}")
