"""NIST StRD through scripts/nist.py and through the API with float64 data."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from lr_lightning import LinearRegression, LinearRegressionModule
from lr_lightning.core.data import RegressionDataModule
from lr_lightning.exact.nist import main as nist_main
from tests.conftest import ROOT, SHARED, lbfgs, make_trainer, one_error_line, run_main, run_script

NIST_FOLDER = ROOT.parent / "shared" / "nist-strd"


@pytest.mark.slow  # 10 s: eleven datasets, each trained twice, in a new Python
@pytest.mark.skipif(not NIST_FOLDER.is_dir(), reason=f"NIST StRD data not found at {NIST_FOLDER}")
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


def test_nist_help_answers_without_importing_torch():
    module, flag = "lr_lightning.exact.nist", "--lbfgs_epochs"
    code = (f"import sys\nfrom {module} import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    assert e.code == 0\nprint(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert flag in result.stdout and result.stdout.strip().splitlines()[-1] == "[]"


def test_nist_script_answers_a_bad_flag_with_one_line(tmp_path):
    result = run_script("nist.py", *['--sgd_epochs', '1.5'], cwd=tmp_path)
    line = "error: --sgd_epochs: expected a whole number > 0, got '1.5' (see --help)"
    assert (result.returncode, result.stdout, result.stderr.splitlines()) == (2, "", [line])
