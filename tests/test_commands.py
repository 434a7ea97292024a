"""``lr-lightning COMMAND`` and ``python -m lr_lightning COMMAND``: the subcommands, --version, and the rooms'
subcommands going with their folders."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

import lr_lightning
from lr_lightning.core.main import CORE_COMMANDS, commands, main

from .conftest import ROOT

# These tests are about the optional rooms' commands: a copy without the rooms (.ci/deletable) skips them.
needs_rooms = pytest.mark.skipif(any(importlib.util.find_spec(f"lr_lightning.{room}") is None
                                     for room in ("exact", "tutorial", "benchmark")),
                                 reason="the optional rooms (exact, tutorial, benchmark) are deleted in this copy")


@needs_rooms
def test_help_lists_the_core_and_the_rooms_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ["fit", "evaluate", "predict", "export", "from-scratch", "nist", "make-data", "benchmark"]:
        assert f"\n  {name} " in out, name


def test_version_is_the_packages(capsys):
    assert main(["--version"]) == 0
    version = re.search(r'^version = "(.*)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert capsys.readouterr().out == f"lr-lightning {version}\n" and lr_lightning.__version__ == version


def test_no_command_and_an_unknown_command_are_one_line_exit_2(capsys):
    assert main([]) == 2
    assert "usage: lr-lightning COMMAND" in capsys.readouterr().err
    assert main(["fitt"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 'fitt' is not an installed command") and err.count("\n") == 1


def test_a_subcommand_runs_the_script_with_its_name_in_the_usage(capsys):
    assert main(["predict", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: lr-lightning predict")
    assert main(["predict", "--x", "1"]) == 2  # the same one-line errors as scripts/predict.py
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--ckpt" in err and err.count("\n") == 1
    from lr_lightning.core.commands import Parser

    assert Parser.command is None  # scripts/*.py called later in this process say their own names again


def test_every_command_points_at_a_function(capsys):
    import importlib

    for name, (target, text) in commands().items():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), name
        assert text and "\n" not in text


@needs_rooms
def test_nist_without_its_files_says_where_they_are_looked_for_and_where_to_get_them(tmp_path, capsys):
    assert main(["nist", "--data_dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "none") in err
    assert "https://www.itl.nist.gov/div898/strd/" in err and "LR_LIGHTNING_NIST_DIR" in err
    # The environment variable is the default: an empty folder there is named, with the files it lacks.
    env = {**os.environ, "LR_LIGHTNING_NIST_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "lr_lightning", "nist"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith(f"error: --data_dir {tmp_path}: no Norris.dat") and run.stderr.count("\n") == 1


@needs_rooms
def test_a_deleted_room_takes_its_commands_and_leaves_fit(tmp_path):
    copy = tmp_path / "lr_lightning"
    shutil.copytree(ROOT / "lr_lightning", copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(copy / "exact")
    shutil.rmtree(copy / "tutorial")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "lr_lightning", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    gone = run("nist", "--data_dir", ".")
    assert gone.returncode == 2 and gone.stderr.startswith("error: 'nist' is not an installed command")
    assert gone.stderr.count("\n") == 1 and "Traceback" not in gone.stderr
    listed = run("--help")
    assert listed.returncode == 0 and "from-scratch" not in listed.stdout and "make-data" in listed.stdout
    fit = run("fit", "--help")
    assert fit.returncode == 0 and fit.stdout.startswith("usage: lr-lightning fit"), fit.stderr[-2000:]
    assert set(CORE_COMMANDS) <= set(commands())


def test_gpu_check_dry_run_says_what_it_would_run_without_a_gpu(tmp_path):
    if shutil.which("bash") is None:
        import pytest

        pytest.skip("needs bash")
    script = str(ROOT / "scripts" / "gpu_check.sh")
    dry = subprocess.run(["bash", script, "--dry-run", "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert dry.returncode == 0, dry.stderr
    for part in ["-m gpu", "--accelerator gpu", "--data.n_samples 1000000 --data.n_features 16",
                 'set_sync_debug_mode("error")', "--data.n_samples 2000000 --data.n_features 40", "--devices 2",
                 "benchmark --accelerator gpu", str(tmp_path / "gpu-report.md")]:
        assert part in dry.stdout, part
    limits = [int(s) for s in re.findall(r"at most (\d+)s", dry.stdout)]
    assert len(limits) == 6 and sum(limits) <= 8 * 60  # one call of at most 8 minutes
    assert not list(tmp_path.iterdir())  # a dry run writes nothing
    helped = subprocess.run(["bash", script, "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: scripts/gpu_check.sh")
    bad = subprocess.run(["bash", script, "--nope"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_set_up_takes_the_cpu_index_when_it_answers_and_the_registry_when_not(tmp_path):
    import functools
    import http.server
    import threading

    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "index.html").write_text("<html></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {**os.environ, "PATH": "/usr/bin:/bin", "TORCH_PIP_ARGS": ""}  # no nvidia-smi on this PATH

    def dry(index):
        return subprocess.run(["bash", str(ROOT / "scripts/install_torch.sh"), sys.executable, "--dry-run"],
                              cwd=ROOT, env={**env, "TORCH_CPU_INDEX": index}, capture_output=True, text=True,
                              timeout=60)

    try:
        up = dry(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
    assert up.returncode == 0 and "torch's CPU build from http://127.0.0.1" in up.stdout
    assert f"--index-url=http://127.0.0.1:{server.server_port}" in up.stdout
    down = dry(f"http://127.0.0.1:{server.server_port}")  # the server is gone: the registry's build, said so
    assert down.returncode == 0 and "did not answer in 5 s: torch from the registry" in down.stdout
    assert "--index-url" not in down.stdout


def test_help_into_a_closed_pipe_is_not_a_traceback():
    # `python -m lr_lightning --help | head -1`: the reader leaves before the usage is written.
    proc = subprocess.Popen([sys.executable, "-m", "lr_lightning", "--help"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0 and stderr == ""
