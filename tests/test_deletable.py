"""The optional packages are deletable: a copy of the repository without exact/, tutorial/ and benchmark/ (and their
tests and the scripts that only run them) still imports, collects its tests and trains. `.ci/deletable` makes the
same copy and runs the whole remaining suite there (CI runs it after `make test`)."""

import os
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT

OPTIONAL = ["lr_lightning/exact", "lr_lightning/tutorial", "lr_lightning/benchmark", "tests/exact", "tests/tutorial",
            "tests/benchmark", "scripts/nist.py", "scripts/from_scratch.py", "scripts/benchmark.py",
            "scripts/make_data.py"]


# The checkout's editable install adds a finder to sys.meta_path that maps lr_lightning.* onto the original tree:
# in the copy, `import lr_lightning.exact` would quietly load the original's deleted package. The copy's
# sitecustomize.py (imported at start-up from PYTHONPATH, after the .pth files) drops that finder.
ISOLATE = """import sys

sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in str(getattr(f, "__module__", ""))]
"""


def _copy_without_optional(dst):
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "sitecustomize.py").write_text(ISOLATE)
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for name in files:
        if any(name == p or name.startswith(p + "/") for p in OPTIONAL) or not (ROOT / name).is_file():
            continue
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dst / name)


# What a user runs in the copy, in one new Python (its start-up, importing torch and Lightning, is most of the time):
# which lr_lightning it imports, fit.py trained for one epoch, then fit.py asked for the deleted exact solver.
IN_THE_COPY = """import importlib.util, runpy, sys
import lr_lightning
print(lr_lightning.__file__, importlib.util.find_spec("lr_lightning.exact"))
for argv in ([*sys.argv[1:], "--max_epochs", "1"], [*sys.argv[1:], "--solver", "exact"]):
    sys.argv = ["scripts/fit.py", *argv]
    try:
        runpy.run_path("scripts/fit.py", run_name="__main__")
    except SystemExit as e:
        print("exit", e.code)
"""


def test_the_core_works_with_the_optional_packages_deleted(tmp_path):
    # The copy's whole suite (collection included) runs in CI's .ci/deletable; here, the cheap check that the core
    # imports and trains without the optional packages, about 4 s instead of 16 s for a second collection and fits.
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (git ls-files) to copy")
    copy = tmp_path / "copy"
    _copy_without_optional(copy)
    assert not (copy / "lr_lightning/exact").exists() and (copy / "lr_lightning/core/cli.py").is_file()
    done = subprocess.run([sys.executable, "-c", IN_THE_COPY, "--progress_bar", "false", "--log_dir",
                           str(tmp_path / "logs")], cwd=copy, env={**os.environ, "PYTHONPATH": str(copy)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == f"{copy / 'lr_lightning' / '__init__.py'} None", done.stdout  # the copy's tree, no exact
    assert "Trained LinearRegression" in done.stdout and lines[-2:] == ["exit 0", "exit 2"], done.stdout
    # The exact solver went with its package: one line, exit 2, naming what is left.
    assert done.stderr.strip().splitlines()[-1] == "error: --solver: unknown solver 'exact' (available: gradient)"
