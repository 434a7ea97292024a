"""What a hostile tester found in the command line, each pinned: --plot with the exact solver, hostile YAML configs,
and messages that must say which row, column, file or key, in one convention."""

from __future__ import annotations

import struct
import time

import pytest

from lr_lightning.core.cli import fit_main

from .conftest import run_main


def _png_size(path):
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", head
    return struct.unpack(">II", head[16:24])


def test_plot_with_the_exact_solver_draws_the_fit(tmp_path):
    # Was silently ignored: no file, no word.
    (tmp_path / "d.csv").write_text("x,y\n" + "".join(f"{i},{3 * i + 1 + (i % 3)}\n" for i in range(30)))
    done = run_main(fit_main, "--solver", "exact", "--data", "d.csv", "--plot", "fit.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Plot: fit.png" in done.stdout.splitlines()
    # The fit panel alone (6 x 4.5 inches at 100 dpi): there is no loss curve to draw beside it.
    assert _png_size(tmp_path / "fit.png") == (600, 450)


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


# ----------------------------------------------------------------------------- one way to say where a value is
def test_the_same_bad_value_is_placed_the_same_way_in_every_format(tmp_path):
    """Data row 3 (header excluded) holds a NaN: the CSV says its line (4), the others row 3, counted from 1, and say
    so. (They said line 4, row 2 and row 2: a user could not tell which.)"""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lr_lightning.core.data import CSVDataModule, NpyDataModule, ParquetDataModule, RegressionDataModule

    data = np.arange(20.0).reshape(10, 2)
    data[2, 0] = np.nan
    (tmp_path / "d.csv").write_text("a,y\n" + "".join(f"{a},{y}\n" for a, y in data))
    np.save(tmp_path / "d.npy", data)
    pq.write_table(pa.table({"a": data[:, 0], "y": data[:, 1]}), tmp_path / "d.parquet")
    expected = {
        "csv": "d.csv: line 4, column 'a': 'nan' is not a finite number",
        "npy": "d.npy: row 3 (1-based), column 'x0' (column 1 of the file): non-finite value nan",
        "parquet": "d.parquet: row 3 (1-based), column 'a': non-finite value nan",
        "array": "x: non-finite value nan at row 3 (1-based)",
    }
    build = {"csv": lambda: CSVDataModule(tmp_path / "d.csv"), "npy": lambda: NpyDataModule(tmp_path / "d.npy"),
             "parquet": lambda: ParquetDataModule(tmp_path / "d.parquet"),
             "array": lambda: RegressionDataModule(data[:, :1], data[:, 1])}
    for kind, make in build.items():
        with pytest.raises(ValueError) as e:
            make().setup()
        assert expected[kind] in str(e.value), (kind, str(e.value))


@pytest.mark.parametrize(("x", "y", "words"), [
    # y named by its pandas name, as x by its names (it was "column 0" beside x's "column 'b'")
    ([1.0, 2.0, 3.0], "series", "y: non-finite value inf at row 3 (1-based), column 'price'"),
    ([1.0, 2.0, 3.0], [1.0, 2.0, float("inf")], "y: non-finite value inf at row 3 (1-based)"),
    # strings: which value is not a number (it said only "got values of dtype <U1")
    ([["1", "2"], ["3", "four"], ["5", "6"]], [1.0, 2.0, 3.0],
     "row 2, column 2 (both 1-based): 'four' is not a number"),
])
def test_least_squares_says_where_a_bad_value_is(x, y, words):
    import pandas as pd

    from lr_lightning.exact.solver import least_squares

    y = pd.Series([1.0, 2.0, float("inf")], name="price") if y == "series" else y
    with pytest.raises(ValueError) as e:
        least_squares(x, y)
    assert words in str(e.value), str(e.value)


def test_a_datamodule_of_strings_says_which_value_is_not_a_number():
    import pandas as pd

    from lr_lightning import RegressionDataModule

    x = pd.DataFrame({"size": ["1", "2", "lots"], "age": ["3", "4", "5"]})
    with pytest.raises(ValueError, match=r"^x: expected an array of real numbers; row 3 \(1-based\), column 'size': "
                                         r"'lots' is not a number$"):
        RegressionDataModule(x, [1.0, 2.0, 3.0], val_fraction=0)


@pytest.mark.parametrize(("content", "words"), [
    (b'{"state_dict": {}}\n',
     "not a checkpoint written by fit.py (it is a JSON file; torch.save writes a zip archive)"),
    (b"", "not a checkpoint written by fit.py (it is an empty file; torch.save writes a zip archive)"),
    (b"a,b\n1,2\n", "not a checkpoint written by fit.py (it is a text file; torch.save writes a zip archive)"),
])
def test_predict_on_a_file_that_is_no_checkpoint_says_so(tmp_path, content, words):
    # A JSON file was "objects that only code could rebuild; refused unread": words for a malicious pickle.
    from lr_lightning.core.predict import predict_main

    (tmp_path / "model.json").write_bytes(content)
    done = run_main(predict_main, "--ckpt", "model.json", "--x", "1", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.splitlines() == [f"error: --ckpt model.json: {words}"], done.stderr


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

    from lr_lightning.core.cli import make_trainer, parse
    from lr_lightning.core.commands import UsageError

    _, cfg = parse("fit", ["--max_epochs", "1"])
    cfg.trainer.barebones = True  # past the flag check, as a Trainer argument the check does not know would be
    with pytest.raises(UsageError) as e:
        make_trainer(cfg, cfg.trainer, TensorBoardLogger(tmp_path / "logs", name="", version=0), [], False, False)
    assert "logger=TensorBoardLogger)" in str(e.value) and " object at 0x" not in str(e.value), str(e.value)
