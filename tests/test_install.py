"""Installed like a user installs it: a wheel built from this checkout, in a fresh venv, run from an empty folder.

The venv reuses the running interpreter's torch and Lightning (a ``.pth`` line naming its site-packages, added after
the venv's own, so the wheel's ``lr_lightning`` is the one imported), which keeps the test to seconds of installing.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import venv

import pytest

from .conftest import ROOT


@pytest.mark.slow  # ~40 s: builds a wheel, installs it, trains and predicts in new processes
def test_the_wheel_installs_and_its_command_fits_and_predicts_from_an_empty_folder(tmp_path):
    # No PYTHONPATH: with the checkout on it, pip would find the checkout's egg-info and skip the wheel.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(wheels), str(ROOT)], capture_output=True, text=True, timeout=300, env=env)
    if build.returncode != 0 and "No module named pip" in build.stderr:
        pytest.skip("needs pip in the test's Python to build the wheel")
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("lr_lightning-*.whl")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                              str(wheel)], capture_output=True, text=True, timeout=300, env=env)
    assert install.returncode == 0, install.stderr[-2000:]
    # Only now the running site-packages (a pip that saw the checkout's editable install there would skip the wheel)
    (env_dir / own / "_reuse_torch.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    empty = tmp_path / "empty"
    empty.mkdir()
    command = env_dir / "bin" / "lr-lightning"

    def run(*args):
        return subprocess.run([*map(str, args)], cwd=empty, env=env, capture_output=True, text=True, timeout=300)

    where = run(python, "-c", "import lr_lightning; print(lr_lightning.__file__)")
    assert where.stdout.startswith(str(env_dir)), where.stdout + where.stderr  # from the wheel, not the checkout
    fit = run(command, "fit", "--max_epochs", "2", "--progress_bar", "false")
    assert fit.returncode == 0, fit.stderr[-2000:]
    assert "Trained LinearRegression" in fit.stdout
    (ckpt,) = (empty / "lightning_logs").rglob("last.ckpt")
    predict = run(command, "predict", "--ckpt", ckpt, "--x", "1")
    assert predict.returncode == 0, predict.stderr[-2000:]
    assert predict.stdout.strip(), predict.stderr
    helped = run(python, "-m", "lr_lightning", "--help")
    assert helped.returncode == 0 and "predict" in helped.stdout, helped.stdout + helped.stderr
    if (ROOT / "lr_lightning" / "tutorial").is_dir():  # the optional room's command, where the room is not deleted
        assert "from-scratch" in helped.stdout
    version = run(command, "--version")
    assert version.returncode == 0 and version.stdout.startswith("lr-lightning 0.")
    shutil.rmtree(empty / "lightning_logs")
