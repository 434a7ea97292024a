"""The exact solver's refusals: bad input, trainer settings, the clock, and its checkpoints."""

import numpy as np
import pytest
import torch

from lr_lightning.core.cli import fit_main
from lr_lightning.core.data import RegressionDataModule
from lr_lightning.core.predict import predict_main
from tests.bad_input import predict_error, write_bad_files


@pytest.fixture
def folder(tmp_path):
    return write_bad_files(tmp_path)


# ------------------------------------------------------------- --solver exact: what the exact fit cannot run under
def _nan_files(folder):
    x = np.arange(60.0).reshape(20, 3)
    x[5, 1] = np.nan
    np.save(folder / "nan.npy", x)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "y": x[:, 2]}), folder / "nan.parquet")


# (CLI arguments, Trainer arguments for the API's side or None, words both must say); {d} is the folder with FILES.
EXACT_CASES = [
    (["--data", "{d}/constant.csv"], None, "constant.csv: least squares: every column (a, b) is constant"),
    (["--data", "{d}/good.csv", "--data.val_fraction", "0.8", "--data.polynomial_degree", "2"], None,
     "least squares: 4 training rows for 5 coefficients; it needs more rows than coefficients"),
    (["--max_epochs", "0"], {"max_epochs": 0}, ("--max_epochs 0:", "needs at least 1 pass over the data")),
    (["--max_epochs", "1", "--robust"], None, ("--max_epochs 1:", "needs at least 2 passes over the data")),
    (["--max_epochs", "1", "--data.polynomial_degree", "3", "--data", "{d}/wide.csv"], {"max_epochs": 1},
     ("--max_epochs 1:", "needs more passes over the data than max_epochs=1", "raise max_epochs")),
    (["--trainer.limit_train_batches", "0.5"], {"limit_train_batches": 0.5},
     "--trainer.limit_train_batches 0.5: LeastSquaresModule needs every training row in every pass"),
    (["--trainer.overfit_batches", "1"], {"overfit_batches": 1}, "--trainer.overfit_batches 1: LeastSquaresModule "
                                                                 "needs every training row"),
    (["--trainer.max_steps", "1"], {"max_steps": 1}, "--trainer.max_steps 1: LeastSquaresModule stops by itself"),
    (["--trainer.fast_dev_run", "true"], {"fast_dev_run": True},
     "--trainer.fast_dev_run true: runs a batch or a few; LeastSquaresModule needs whole passes"),
    (["--trainer.accumulate_grad_batches", "2"], {"accumulate_grad_batches": 2},
     "--trainer.accumulate_grad_batches 2: LeastSquaresModule takes no gradient steps, so there is nothing to "
     "accumulate"),
    (["--trainer.gradient_clip_val", "1"], {"gradient_clip_val": 1.0},
     "--trainer.gradient_clip_val 1.0: LeastSquaresModule takes no gradient steps, so there is nothing to clip"),
    (["--trainer.min_epochs", "5"], {"min_epochs": 5},
     "--trainer.min_epochs 5: LeastSquaresModule stops as soon as the fit is solved"),
    (["--trainer.max_time", "00:00:00:00"], {"max_time": "00:00:00:00"},
     "--trainer.max_time 00:00:00:00: no time for a single pass over the data"),
    (["--precision", "16-true"], {"precision": "16-true"},
     "--precision 16-true: LeastSquaresModule computes in float64; precision=16-true would round"),
    (["--data.drop_last", "true", "--data.batch_size", "3"], None,
     "--data.drop_last true: drop_last=True with batch_size 3 leaves 1 of the 16 training rows out of every pass"),
    (["--data", "{d}/nan.npy"], None,
     "nan.npy: row 6 (1-based), column 'x1' (column 2 of the file): non-finite value nan"),
    (["--data", "{d}/nan.npy", "--data.in_memory", "true"], None, "nan.npy: row 6 (1-based), column 'x1'"),
    (["--data", "{d}/nan.parquet"], None, "nan.parquet: row 6 (1-based), column 'b': non-finite value nan"),
]


@pytest.fixture
def exact_folder(folder):
    (folder / "constant.csv").write_text("a,b,y\n" + "".join(f"1,2,{i}\n" for i in range(20)))
    # A cubic in a column far from 0: ill-conditioned enough that one pass is not the whole fit.
    (folder / "wide.csv").write_text("x,y\n" + "".join(f"{1000 + i},{i ** 3 + 0.5 * (i % 2)}\n" for i in range(30)))
    _nan_files(folder)
    return folder


@pytest.mark.parametrize(("argv", "trainer", "words"), EXACT_CASES, ids=[" ".join(c[0]) for c in EXACT_CASES])
def test_exact_fit_bad_input_is_one_line_exit_2_and_leaves_no_run_folder(exact_folder, capsys, argv, trainer,
                                                                          words):
    argv = [a.format(d=exact_folder) for a in argv]
    if "--data" not in argv:
        argv = ["--data", str(exact_folder / "good.csv"), *argv]
    logs = exact_folder / "logs"
    assert fit_main(["--solver", "exact", "--accelerator", "cpu", *argv, "--log_dir", str(logs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    words = (words,) if isinstance(words, str) else words
    assert len(err) == 1 and err[0].startswith("error: ") and all(w in err[0] for w in words), err
    assert not logs.exists(), list(logs.rglob("*"))  # no version_N folder, not even --log_dir


@pytest.mark.parametrize(("argv", "trainer", "words"), [c for c in EXACT_CASES if c[1] is not None],
                         ids=[" ".join(c[0]) for c in EXACT_CASES if c[1] is not None])
def test_exact_fit_api_refuses_the_same_trainer_settings_with_a_value_error(exact_folder, argv, trainer, words):
    from lr_lightning.core.data import CSVDataModule
    from lr_lightning.exact.least_squares_module import LeastSquaresModule
    from tests.conftest import make_trainer

    degree = 3 if "--data.polynomial_degree" in argv else None
    dm = CSVDataModule(exact_folder / ("wide.csv" if degree else "good.csv"), polynomial_degree=degree,
                       dtype="float64")
    words = (words,) if isinstance(words, str) else words
    with pytest.raises(ValueError) as e:
        make_trainer(**{"max_epochs": 10, **trainer}).fit(LeastSquaresModule(), datamodule=dm)
    # The API's words are the CLI's after the flag: "--trainer.x 1: <these words>".
    assert all(w.split(": ", 1)[-1] in str(e.value) for w in words if not w.startswith("--")), str(e.value)


def test_exact_fit_stopped_by_the_clock_is_a_value_error_not_a_half_solved_model():
    import datetime

    from lightning.pytorch.callbacks import Timer

    from lr_lightning.exact.least_squares_module import LeastSquaresModule
    from tests.conftest import make_trainer

    x = np.arange(40.0)[:, None]
    dm = RegressionDataModule(x, 3 * x[:, 0] + 1, val_fraction=0, batch_size=8, dtype="float64")
    module = LeastSquaresModule()
    # A microsecond passes the up-front check (it is not zero) and runs out after the first batch (pass 1 is one
    # block here, so it is the first refinement pass that runs out).
    with pytest.raises(ValueError, match=r"max_time=00:00:00:00: ran out in pass \d, before the least-squares fit "
                                         r"was solved"):
        make_trainer(max_epochs=5, callbacks=[Timer(duration=datetime.timedelta(microseconds=1))]).fit(
            module, datamodule=dm)
    assert module.statistics is None


def test_an_exact_checkpoint_is_not_resumed_by_gradient_and_an_unsolved_one_predicts_nothing(folder, capsys):
    from lr_lightning.core.evaluate import evaluate_main

    logs = folder / "logs"
    assert fit_main(["--solver", "exact", "--data", str(folder / "good.csv"), "--log_dir", str(logs)]) == 0
    ckpt = logs / "version_0" / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    # Resuming gradient training from it was a KeyError 'param_groups' deep in Lightning's restore.
    assert fit_main(["--data", str(folder / "good.csv"), "--resume", str(ckpt), "--log_dir", str(logs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --resume {ckpt}: solved exactly (--solver exact), with no optimizer state to continue "
                   "training from; predict with it (predict.py, evaluate.py) or start a new run without --resume"]
    assert sorted(p.name for p in logs.iterdir()) == ["version_0"]
    # An exact run stopped before its solve (SIGTERM) leaves a last.ckpt with zero weights: refused, not predicted.
    state = torch.load(ckpt, weights_only=True)
    state["least_squares"]["solved"] = False
    unsolved = folder / "unsolved.ckpt"
    torch.save(state, unsolved)
    words = "an unfinished exact least-squares fit (least_squares.solved is false"
    assert words in predict_error(capsys, ["--ckpt", unsolved, "--x", "1", "2"])
    assert evaluate_main(["--config", str(logs / "version_0" / "config.yaml"), "--ckpt_path", str(unsolved)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --ckpt_path {unsolved}: {words}"), err
    # The solved one still predicts.
    assert predict_main(["--ckpt", str(ckpt), "--x", "1", "2"]) == 0
