"""scripts/benchmark.py and the exact-solver benchmark: their flags, files and table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from lr_lightning.benchmark.speed import main as benchmark_main
from tests.conftest import one_error_line, run_main, run_script


@pytest.mark.parametrize(("flags", "words"), [
    (["--batch_size", "0"], ["--batch_size: expected a whole number > 0, got '0'"]),
    (["--paths", "[loop,fast]"],
     ["--paths: expected one of loop, dataloader, package, package-k1, barebones, got 'fast'"]),
    (["--paths", "loop", "package"], ["--paths: expected a list [a, b, ...], got 'loop'"]),
    (["--paths", "[]"], ["--paths: expected at least one path, got []"]),
    (["--files", "small"], ["--files: expected a list [a, b, ...] or null, got 'small'"]),
    (["--files", "[missing.npy,big]"], ["--files: missing.npy: no such file"]),
    (["--n-samples", "10"], ["unrecognized arguments: --n-samples"]),
])
def test_benchmark_flag_errors_are_one_line(tmp_path, flags, words):
    one_error_line(run_main(benchmark_main, *flags, cwd=tmp_path), *words)


def test_benchmark_files_runs_each_mode_through_the_package(tmp_path):
    """The child run that --files starts in a fresh process per mode (--one_run), here in this one."""
    from lr_lightning.benchmark.make_data import write_synthetic

    write_synthetic(tmp_path / "data", 3000, 2, shard_rows=1024)
    for mode in ("in-memory", "memory-mapped"):
        result = run_main(benchmark_main, "--one_run", json.dumps([str(tmp_path / "data"), mode]), "--epochs", "2",
                          "--batch_size", "512", "--lr", "0.1", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        out = json.loads(result.stdout.strip().splitlines()[-1])
        assert len(out["times"]) == 2 and out["peak"] > 0 and 0 < out["loss"] < 5, out


def _data(n: int = 50) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 2))
    return x, x @ [1.0, 2.0] + rng.normal(size=n)


def _good_csv(path: Path) -> None:
    x, y = _data()
    path.write_text("a,b,y\n" + "".join(f"{a},{b},{c}\n" for (a, b), c in zip(x, y, strict=True)))


@pytest.mark.parametrize(("rows", "files", "message"), [
    (3, None, "error: --exact_rows 3: needs more rows than coefficients"),
    (2000, "nowhere", "error: --exact_files: nowhere: no such file"),
    (2000, "good.csv", "error: --exact_files: good.csv: expected a .npy file"),
])
def test_exact_benchmark_refuses_bad_flags_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch, rows: int, files: str | None,
                                                       message: str) -> None:
    """``benchmark.py --exact true`` with too few rows was the fit's traceback, and a missing or non-.npy
    ``--exact_files`` a child process's traceback after the whole in-memory comparison had run."""
    from lr_lightning.benchmark import exact

    monkeypatch.chdir(tmp_path)
    _good_csv(tmp_path / "good.csv")
    assert exact.run(rows, 5, 1, None if files is None else Path(files)) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(message) and err.count("\n") == 1, err


@pytest.mark.slow  # 8 s: a new Python, five paths twice
def test_benchmark_prints_one_table_with_every_path(tmp_path):
    result = run_script("benchmark.py", "--n_samples", "4096", "--n_features", "4", "--batch_size", "256",
                        "--epochs", "3", "--repeats", "2", "--threads", "1",
                        "--paths", "[loop, dataloader, package, package-k1, barebones]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r"^(loop|dataloader|package|package-k1|barebones)\s+([\d.]+)\s+([\d,]+)\s+([\d.]+)x\s+([\d.]+)$",
        result.stdout, re.M)}
    assert set(rows) == {"loop", "dataloader", "package", "package-k1", "barebones"}, result.stdout
    # 16 steps an epoch: auto's K is capped at a quarter epoch.
    assert "steps_per_call auto = 4 optimizer steps per call" in result.stdout
    assert rows["loop"][2] == "1.00"
    losses = [float(r[3]) for r in rows.values()]
    assert max(losses) - min(losses) < 0.01 * max(losses)  # the paths train the same model; measured: 0.04 % apart


@pytest.mark.slow  # 6 s: speed.py imports torch and Lightning before it parses
def test_benchmark_script_answers_a_bad_flag_with_one_line(tmp_path):
    result = run_script("benchmark.py", *['--epochs', 'x'], cwd=tmp_path)
    line = "error: --epochs: expected a whole number > 0, got 'x' (see --help)"
    assert (result.returncode, result.stdout, result.stderr.splitlines()) == (2, "", [line])


def test_a_fit_parse_leaves_no_hint_for_the_next_command(tmp_path, capsys):
    # fit's hint maps a nested key to the flag typed (--data.batch_size); the next command's parser must not get it.
    from lr_lightning.core.cli import fit_main

    assert fit_main(["--data.batch_size", "0", "--log_dir", str(tmp_path)]) == 2
    capsys.readouterr()
    assert benchmark_main(["--batch_size", "0"]) == 2
    assert "error: --batch_size: expected a whole number > 0" in capsys.readouterr().err
