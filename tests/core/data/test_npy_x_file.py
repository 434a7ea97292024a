"""A single .npy file named x.npy (or x-NNN.npy) holds features only: read with its y file, refused without one."""

import numpy as np
import pytest

from lr_lightning.core.cli import fit_main
from lr_lightning.core.data import NpyDataModule


def _x(n=20, width=3):
    return np.random.default_rng(0).standard_normal((n, width))


@pytest.mark.parametrize("name", ["x.npy", "x-000.npy", "x_train.npy"])
def test_an_x_file_without_its_y_file_is_refused(tmp_path, name):
    np.save(tmp_path / name, _x())
    with pytest.raises(ValueError, match=rf"{name} without y{name[1:]} beside it; an x file holds features only"):
        NpyDataModule(tmp_path / name)


def test_an_x_file_is_read_with_the_y_file_beside_it(tmp_path):
    x = _x()
    np.save(tmp_path / "x-000.npy", x)
    np.save(tmp_path / "y-000.npy", x[:, :1] * 2)
    dm = NpyDataModule(tmp_path / "x-000.npy", in_memory=True, val_fraction=0.0, test_fraction=0.0)
    assert dm.n_features == 3 and dm.target_names == ["y"]
    xs, ys = dm.raw_split("train", ordered=True)
    np.testing.assert_array_equal(ys.numpy(), x[:, :1] * 2)


def test_other_names_keep_the_target_in_the_last_column(tmp_path):
    np.save(tmp_path / "xs.npy", _x())  # not x / x-NNN: features and target together, as before
    assert NpyDataModule(tmp_path / "xs.npy").n_features == 2


def test_fit_refuses_an_x_file_in_one_line(tmp_path, capsys):
    np.save(tmp_path / "x.npy", _x())
    assert fit_main(["--data", str(tmp_path / "x.npy"), "--log_dir", str(tmp_path / "logs"), "--max_epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x.npy without y.npy beside it" in err[0], err
