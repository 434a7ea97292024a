"""A hint names the command the user ran: ``python scripts/fit.py ...`` from the script, ``lr-lightning fit ...`` from
the installed command (or ``python -m lr_lightning``, which sets the same :attr:`Parser.command`)."""

import signal
import sys

from lr_lightning.core.commands import Parser, command
from lr_lightning.core.run import _interrupted
from lr_lightning.core.runs import Interrupted


def _stopped(tmp_path):
    checkpoint = tmp_path / "logs/version_0/checkpoints/last.ckpt"
    return Interrupted(signal.SIGINT, checkpoint, epoch=2, step=7)


def test_run_from_the_script_a_hint_names_the_script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "scripts/fit.py"), "--max_epochs", "3", "--resume", "old.ckpt"])
    line = _interrupted(_stopped(tmp_path), None)
    assert line.endswith("continue with: python scripts/fit.py --max_epochs 3 --resume "
                         "logs/version_0/checkpoints/last.ckpt"), line
    assert command("predict") == "python scripts/predict.py"


def test_run_as_lr_lightning_a_hint_names_lr_lightning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(Parser, "command", "lr-lightning fit")  # as lr_lightning.core.main sets it, with sys.argv
    monkeypatch.setattr(sys, "argv", ["lr-lightning fit", "--max_epochs", "3"])
    line = _interrupted(_stopped(tmp_path), None)
    assert line.endswith("continue with: lr-lightning fit --max_epochs 3 --resume "
                         "logs/version_0/checkpoints/last.ckpt"), line
    assert command("predict") == "lr-lightning predict" and command("make_data") == "lr-lightning make-data"

