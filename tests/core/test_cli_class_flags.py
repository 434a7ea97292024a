"""--module and --loss given a class that is not one: one line naming the flag, exit 2 (not jsonargparse's dump)."""

import sys

import pytest

from lr_lightning.core.cli import fit_main

NETS = ("from torch import nn\n\nclass TabMLP(nn.Module):\n"
        "    def __init__(self, in_features: int, out_features: int = 1):\n"
        "        super().__init__()\n        self.net = nn.Linear(in_features, out_features)\n")


@pytest.mark.parametrize(("flags", "words"), [
    (["--module", "nosuch.Mod"], "--module: cannot use 'nosuch.Mod' (No module named 'nosuch')"),
    (["--module", "hfix_nets.TabMLP"], "--module: 'hfix_nets.TabMLP' is not a RegressionModule subclass"),
    (["--loss", "hfix_nets.TabMLP"], "--loss hfix_nets.TabMLP: TabMLP takes in_features (a network?); --loss "
                                     "expects a loss, an nn.Module called as loss(prediction, target)"),
])
def test_a_class_of_the_wrong_kind_is_one_line(tmp_path, capsys, monkeypatch, flags, words):
    (tmp_path / "hfix_nets.py").write_text(NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "hfix_nets", raising=False)
    assert fit_main([*flags, "--max_epochs", "1", "--log_dir", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {words}"), err
    assert not (tmp_path / "logs").exists()
