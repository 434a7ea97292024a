"""What a run writes for TensorBoard, read back as TensorBoard reads it: the loss curves, the HPARAMS tab's metric
(the final ``val/loss``, no ``hp_metric`` card, no placeholder -1). Also the Time Series page itself, rendered by a
headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lr_lightning.core.cli import fit_main

from ..conftest import run_main


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for events in sorted(run_dir.glob("events.out.tfevents.*")):  # in the order TensorBoard reads them
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def _fit(tmp_path: Path, *flags: str) -> Path:
    result = run_main(fit_main, "--data", "synthetic", "--max_epochs", "4", "--figures", "0", "--log_dir", "logs",
                      *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return tmp_path / "logs" / "version_0"


@pytest.mark.parametrize("flags", [(), ("--data.test_fraction", "0.2")], ids=["fit", "fit-and-test"])
def test_the_curves_are_one_point_an_epoch_and_nothing_else_is_a_card(tmp_path, flags):
    scalars = _scalars(_fit(tmp_path, *flags))
    # The curves, one point an epoch: the HPARAMS metric written at fit end adds no point (nor does a test stage).
    assert len(scalars["val/loss"]) == 4 and len(scalars["train/loss"]) == 4
    # No `hp_metric` card (Lightning's placeholder -1, or a one-point card sorted before the loss cards) and no
    # `epoch` card; the test stage's loss is its own tag.
    assert "hp_metric" not in scalars and "epoch" not in scalars
    assert ("test/loss" in scalars) == bool(flags)


def test_hparams_tab_has_the_run_with_the_final_val_loss_as_its_metric(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = _fit(tmp_path, "--optimizer.lr", "0.02")
    (events,) = run_dir.glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    # The HPARAMS plugin's three summaries (experiment, session start, session end), written once, at fit end.
    assert sorted(acc.PluginTagToContent("hparams")) == ["_hparams_/experiment", "_hparams_/session_end_info",
                                                         "_hparams_/session_start_info"]
    start = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    # The learning rate given, among the hyperparameters (a number is stored as a little-endian double).
    assert b"lr" in start and struct.pack("<d", 0.02) in start
    # Its metric is the curve the run draws (the tab reads that tag's last value), not a tag of its own.
    experiment = acc.PluginTagToContent("hparams")["_hparams_/experiment"]
    assert b"val/loss" in experiment and b"hp_metric" not in experiment


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render_time_series(log_dir: Path, screenshot: Path | None = None, port: int | None = None) -> str:
    """The DOM of TensorBoard's Time Series page for ``log_dir``, rendered by headless Chromium (and its screenshot,
    1280×900, to ``screenshot``). ``python -m tests.core.test_tensorboard OUT.png`` remakes
    docs/images/tensorboard.png."""
    port = port or _free_port()
    board = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(log_dir), "--port", str(port),
                              "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/?darkMode=false#timeseries"
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=1).read()
                break
            except OSError:
                time.sleep(0.5)
        common = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                  "--window-size=1280,900", "--virtual-time-budget=15000"]
        if screenshot is not None:
            subprocess.run([*common, f"--screenshot={screenshot}", url], check=True, timeout=120,
                           capture_output=True, env={**os.environ, "HOME": str(log_dir)})
        dom = subprocess.run([*common, "--dump-dom", url], check=True, timeout=120, capture_output=True, text=True,
                             env={**os.environ, "HOME": str(log_dir)})
        return dom.stdout
    finally:
        board.terminate()
        board.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no chromium (Debian: apt-get install -y chromium)")
def test_time_series_page_shows_the_loss_cards(tmp_path):
    _fit(tmp_path)
    dom = render_time_series(tmp_path / "logs", tmp_path / "tb.png")
    groups = re.findall(r'class="group-title"[^>]*>([^<]*)<', dom)
    # Cards are grouped by the tag's first part, groups sorted by name: the loss curves' groups, `train` first, and
    # nothing before them (no `epoch` or `hp_metric` group); the training loss's card drawn on the first screen.
    # ("Pinned", TensorBoard's own, holds what a user pins: nothing here.)
    assert [g.strip() for g in groups if g.strip() != "Pinned"][:2] == ["train", "val"], groups
    assert "train/loss" in dom
    assert (tmp_path / "tb.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


if __name__ == "__main__":  # remake docs/images/tensorboard.png: python -m tests.core.test_tensorboard OUT.png
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run_main(fit_main, "--data", "synthetic", "--max_epochs", "30", "--figures", "0", "--log_dir", "logs",
                 cwd=Path(tmp))
        render_time_series(Path(tmp) / "logs", Path(sys.argv[1]).resolve())
