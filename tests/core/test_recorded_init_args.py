"""A network built in Python whose ``__init__`` arguments are not attributes of the same name (#22 item 12a): it
records them in ``self.init_args`` and round-trips through a checkpoint with ``load_from_checkpoint(trusted=...)``."""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lr_lightning import RegressionModule

from ..conftest import make_trainer


class RecordingNet(nn.Module):
    def __init__(self, n_in: int, width: int) -> None:
        super().__init__()
        self.init_args = {"n_in": n_in, "width": width}  # what model_spec records (no self.n_in, no self.width)
        self.body = nn.Sequential(nn.Linear(n_in, width), nn.Tanh(), nn.Linear(width, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class SilentNet(RecordingNet):  # the same network without the record: nothing to rebuild it from
    def __init__(self, n_in: int, width: int) -> None:
        super().__init__(n_in, width)
        del self.init_args


def test_recorded_init_args_rebuild_the_network_from_its_checkpoint(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(64, 3)
    y = x.sum(1, keepdim=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "cannot record how to rebuild" warning
        module = RegressionModule(RecordingNet(3, 5))
    trainer = make_trainer(max_epochs=2)
    with warnings.catch_warnings():  # Lightning's advice to add DataLoader workers: a test's 64 rows need none
        warnings.filterwarnings("ignore", ".*does not have many workers")
        loader = DataLoader(TensorDataset(x, y), batch_size=16)
        trainer.fit(module, loader, loader)
    trainer.save_checkpoint(tmp_path / "net.ckpt")
    loaded = RegressionModule.load_from_checkpoint(tmp_path / "net.ckpt", trusted=[RecordingNet])
    assert type(loaded.model) is RecordingNet and loaded.model.init_args == {"n_in": 3, "width": 5}
    module.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), module(x))


def test_without_the_record_the_warning_says_what_to_do():
    import pytest

    with pytest.warns(UserWarning, match=r"store its __init__ arguments as a dict self\.init_args"):
        RegressionModule(SilentNet(3, 5))
