"""Every ready run in configs/ parses and trains one fast_dev_run step (litgpt's test_config_hub idea); a YAML added
there later is tested too. The exact solver's configs (configs/exact_*.yaml) are tested with it, in
test_exact_configs.py. Also the Trainer's callbacks and logger taken from a config or flag."""

from pathlib import Path

import pytest

from lr_lightning.core.cli import fit_main

from .conftest import ROOT, one_error_line, run_main

CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml") if not p.name.startswith("exact_"))
# What makes a config cheap to test: one process (a DDP config is parsed and run with one device).
CHEAP = ["--devices", "1"]


def fast_dev_run(config: Path, tmp_path: Path, *extra: str):
    # From the repository root, as the README runs them (a config's data path is relative to it); logs in tmp_path.
    return run_main(fit_main, "--config", str(config), "--trainer.fast_dev_run", "1", "--log_dir",
                    str(tmp_path / "logs"), "--progress_bar", "false", *extra, cwd=ROOT)


def test_configs_are_found() -> None:
    assert {"tutorial.yaml", "synthetic_mlp.yaml", "csv_standardized.yaml", "ddp.yaml"} <= {p.name for p in CONFIGS}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_config_trains_one_step(config: Path, tmp_path: Path) -> None:
    result = fast_dev_run(config, tmp_path, *(CHEAP if "devices" in config.read_text() else ()))
    assert result.returncode == 0, result.stderr
    assert "Trained" in result.stdout
    assert (tmp_path / "logs" / "version_0" / "config.yaml").is_file()


def one_epoch(config: Path, tmp_path: Path, *extra: str):
    # fast_dev_run logs nothing (Lightning swaps the logger for a dummy): a short epoch, for what the logger writes.
    return run_main(fit_main, "--config", str(config), "--max_epochs", "1", "--trainer.limit_train_batches", "2",
                    "--log_dir", str(tmp_path / "logs"), "--progress_bar", "false", *extra, cwd=ROOT)


def test_csv_logger_from_the_config_replaces_tensorboard(tmp_path: Path) -> None:
    result = one_epoch(ROOT / "configs" / "synthetic_mlp.yaml", tmp_path)
    assert result.returncode == 0, result.stderr
    run = tmp_path / "logs" / "version_0"
    assert (run / "metrics.csv").is_file()
    assert not list(run.glob("events.out.tfevents.*"))
    assert f"Logs: {run}" in result.stdout
    assert "tensorboard --logdir" not in result.stdout


def test_tensorboard_is_the_default_logger(tmp_path: Path) -> None:
    result = one_epoch(ROOT / "configs" / "tutorial.yaml", tmp_path)
    assert list((tmp_path / "logs" / "version_0").glob("events.out.tfevents.*"))
    assert "tensorboard --logdir" in result.stdout


def test_callbacks_flag_adds_to_the_runs_own(tmp_path: Path) -> None:
    result = fast_dev_run(ROOT / "configs" / "tutorial.yaml", tmp_path, "--trainer.callbacks+=ModelSummary",
                          "--trainer.callbacks.max_depth", "2", "--max_epochs", "1")
    assert result.returncode == 0, result.stderr
    assert "Checkpoints: last" in result.stdout  # the run's own callbacks are still there


@pytest.mark.parametrize("flag", [["--trainer.logger", "my_loggers.Logger"],
                                  ["--trainer.callbacks+=tests.test_configs.Mine"]])
def test_untrusted_callback_or_logger_is_refused(flag: list[str], tmp_path: Path) -> None:
    result = run_main(fit_main, *flag, "--log_dir", str(tmp_path / "logs"), cwd=ROOT)
    one_error_line(result, "--trust")
    assert not (tmp_path / "logs").exists()


def test_trusted_callback_runs(tmp_path: Path) -> None:
    result = fast_dev_run(ROOT / "configs" / "tutorial.yaml", tmp_path, "--trainer.callbacks+=tests.test_configs.Mine",
                          "--trust", "[tests.test_configs.Mine]")
    assert result.returncode == 0, result.stderr
    assert "Mine saw the fit start" in result.stdout


import lightning as L  # noqa: E402


class Mine(L.Callback):
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        print("Mine saw the fit start")
