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


@pytest.mark.slow  # ~20 s: a new Python collects the suite, then fit.py runs twice
def test_the_core_works_with_the_optional_packages_deleted(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (git ls-files) to copy")
    copy = tmp_path / "copy"
    _copy_without_optional(copy)
    assert not (copy / "lr_lightning/exact").exists() and (copy / "lr_lightning/core/cli.py").is_file()
    env = {**os.environ, "PYTHONPATH": str(copy)}

    def run(*args):
        return subprocess.run([sys.executable, *args], cwd=copy, env=env, capture_output=True, text=True,
                              timeout=300)

    isolated = run("-c", "import importlib.util, lr_lightning; print(lr_lightning.__file__); "
                         "print(importlib.util.find_spec('lr_lightning.exact'))")
    assert isolated.stdout.split() == [str(copy / "lr_lightning" / "__init__.py"), "None"], isolated.stdout
    collected = run("-m", "pytest", "-q", "--collect-only", "-p", "no:cacheprovider", "tests", "lr_lightning")
    assert collected.returncode == 0, collected.stdout[-3000:]
    fit = run("scripts/fit.py", "--max_epochs", "2", "--progress_bar", "false", "--log_dir", str(tmp_path / "logs"))
    assert fit.returncode == 0, fit.stderr[-2000:]
    assert "Trained LinearRegression" in fit.stdout
    # The exact solver went with its package: one line, exit 2, naming what is left.
    exact = run("scripts/fit.py", "--solver", "exact", "--log_dir", str(tmp_path / "logs"))
    assert exact.returncode == 2 and exact.stderr.strip() == \
        "error: --solver: unknown solver 'exact' (available: gradient)"
