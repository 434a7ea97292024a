"""Loading a checkpoint (lr_lightning/core/loading.py): the network rebuilt from its recipe, trust, normalization."""

import functools
import importlib
import re
import sys
import time

import pytest
import torch
from torch import nn

from lr_lightning import LinearRegression, RegressionModule
from lr_lightning.core.data import SyntheticDataModule
from tests.conftest import make_trainer


def _fit_and_save(module, tmp_path):
    dm = SyntheticDataModule(n_samples=100, n_features=2, val_fraction=0.2)
    trainer = make_trainer(max_epochs=2)
    trainer.fit(module, datamodule=dm)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_checkpoint_rebuilds_the_model_without_passing_it(tmp_path):
    module = RegressionModule(LinearRegression(2, bias=False), optimizer=functools.partial(torch.optim.Adam, lr=0.03))
    path = _fit_and_save(module, tmp_path)
    loaded = RegressionModule.load_from_checkpoint(path, weights_only=True)  # no pickled code needed
    assert isinstance(loaded.model, LinearRegression) and loaded.model.linear.bias is None
    assert loaded.hparams.optimizer == {"class_path": "torch.optim.adam.Adam", "init_args": {"lr": 0.03}}
    x = torch.randn(7, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), module(x))


class Quadratic(nn.Module):
    """A user's own network that follows the convention: init arguments stored as attributes."""

    def __init__(self, in_features: int, hidden: int = 4):
        super().__init__()
        self.in_features, self.hidden = in_features, hidden
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x):
        return self.net(x)


class Opaque(nn.Module):
    """A network whose init arguments cannot be recovered (`width` is not kept)."""

    def __init__(self, width: int):
        super().__init__()
        self.linear = nn.Linear(2, width)
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        return self.out(self.linear(x))


def test_any_conventional_network_round_trips(tmp_path):
    module = RegressionModule(Quadratic(2, hidden=3))
    assert module.hparams.model == {"class_path": f"{__name__}.Quadratic", "init_args": {"in_features": 2, "hidden": 3}}
    path = _fit_and_save(module, tmp_path)
    with pytest.raises(ValueError, match=r"model class 'tests\.core\.test_loading\.Quadratic' is not trusted"):
        RegressionModule.load_from_checkpoint(path)
    loaded = RegressionModule.load_from_checkpoint(path, trusted=[Quadratic])
    assert isinstance(loaded.model, Quadratic) and "trusted" not in loaded.hparams  # trust is never saved
    x = torch.randn(5, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), module(x))


def test_unrecordable_network_warns_and_loads_when_passed(tmp_path):
    with pytest.warns(UserWarning, match="cannot record how to rebuild the model Opaque"):
        module = RegressionModule(Opaque(5))
    assert module.hparams.model is None
    path = _fit_and_save(module, tmp_path)
    with pytest.raises(ValueError, match=r"needs it: RegressionModule.load_from_checkpoint\(path, model=...\)"):
        RegressionModule.load_from_checkpoint(path)
    with pytest.warns(UserWarning):
        loaded = RegressionModule.load_from_checkpoint(path, model=Opaque(5))
    x = torch.randn(5, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), module(x))


# ------------------------------------------------------------------------------ trust: loading never runs code
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A real checkpoint of RegressionModule(LinearRegression(2)), to rewrite into crafted ones."""
    return _fit_and_save(RegressionModule(LinearRegression(2)), tmp_path_factory.mktemp("saved"))


def _crafted(saved, tmp_path, change):
    """``saved`` with ``change(checkpoint_dict)`` applied, written as a new file."""
    ckpt = torch.load(saved, weights_only=True)
    change(ckpt)
    path = tmp_path / "crafted.ckpt"
    torch.save(ckpt, path)
    return path


def _recipe(class_path, **init_args):
    return lambda ckpt: ckpt["hyper_parameters"].__setitem__("model", {"class_path": class_path,
                                                                       "init_args": init_args})


def _refusal(class_path):
    name = class_path.rpartition(".")[2]
    return re.escape(f"model class {class_path!r} is not trusted: loading builds only lr_lightning's networks and "
                     f"classes you name; if you trust its code, pass trusted=[{name}] (predict.py: --trust "
                     f"{class_path})")


def test_an_untrusted_class_path_is_refused_before_its_module_is_imported(saved, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "lrl_side_effect.py").write_text(
        f"open({str(marker)!r}, 'w').close()  # importing this module is running code\n"
        "from torch import nn\n\n\nclass Net(nn.Linear):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _crafted(saved, tmp_path, _recipe("lrl_side_effect.Net", in_features=2, out_features=1))
    with pytest.raises(ValueError, match=_refusal("lrl_side_effect.Net")):
        RegressionModule.load_from_checkpoint(path, weights_only=True)
    with pytest.raises(ValueError, match=_refusal("lrl_side_effect.Net")):
        RegressionModule(torch.load(path, weights_only=True)["hyper_parameters"]["model"])
    assert not marker.exists() and "lrl_side_effect" not in sys.modules
    # The module is importable: without the allow-list, loading would have run it.
    monkeypatch.delitem(sys.modules, "lrl_side_effect", raising=False)
    importlib.import_module("lrl_side_effect")
    assert marker.exists()
    monkeypatch.delitem(sys.modules, "lrl_side_effect")


@pytest.mark.parametrize(("class_path", "init_args"), [
    ("subprocess.Popen", lambda marker: {"args": ["touch", str(marker)]}),
    ("builtins.open", lambda marker: {"file": str(marker), "mode": "w"}),
])
def test_a_recipe_naming_any_callable_is_refused_and_runs_nothing(saved, tmp_path, class_path, init_args):
    marker = tmp_path / "pwned"
    path = _crafted(saved, tmp_path, _recipe(class_path, **init_args(marker)))
    with pytest.raises(ValueError, match=_refusal(class_path)):
        RegressionModule.load_from_checkpoint(path, weights_only=True)
    time.sleep(0.2)  # a started process would have had time to touch it
    assert not marker.exists()


class Recorder(nn.Linear):
    """A user's network that records its construction: trusted, it is built; otherwise never called."""

    built = 0

    def __init__(self, in_features: int, out_features: int = 1) -> None:
        super().__init__(in_features, out_features)
        Recorder.built += 1


def test_trusted_classes_are_built_and_trust_is_never_saved(saved, tmp_path):
    path = _crafted(saved, tmp_path, lambda ckpt: (
        _recipe(f"{__name__}.Recorder", in_features=2)(ckpt),
        ckpt["state_dict"].update({"model.weight": ckpt["state_dict"].pop("model.linear.weight"),
                                   "model.bias": ckpt["state_dict"].pop("model.linear.bias")})))
    Recorder.built = 0
    with pytest.raises(ValueError, match=_refusal(f"{__name__}.Recorder")):
        RegressionModule.load_from_checkpoint(path, weights_only=True)
    assert Recorder.built == 0
    loaded = RegressionModule.load_from_checkpoint(path, weights_only=True, trusted=[Recorder])
    assert isinstance(loaded.model, Recorder) and Recorder.built >= 1
    assert set(loaded.hparams) == set(torch.load(saved, weights_only=True)["hyper_parameters"])  # no "trusted"
    # A ready network passed in needs no trust: the caller built it.
    passed = RegressionModule.load_from_checkpoint(saved, weights_only=True, model=LinearRegression(2))
    assert isinstance(passed.model, LinearRegression)


@pytest.mark.parametrize("bad", ["lr_lightning.core.networks.LinearRegression", print, dict])
def test_trusted_takes_nn_module_optimizer_or_scheduler_classes_only(bad):
    with pytest.raises(ValueError, match=r"trusted: expected nn.Module, optimizer or scheduler classes, got "):
        RegressionModule(LinearRegression(1), trusted=[bad])


class NotAModule(nn.Module):
    """Trusted, but its constructor returns something else."""

    def __new__(cls, *args, **kwargs):
        return "not a network"


@pytest.mark.parametrize(("recipe", "words"), [
    ({"class_path": "lr_lightning.core.networks.LinearRegression", "init_args": {"in_features": 2}, "code": "x"},
     "model recipe: expected {'class_path': ..., 'init_args': {...}}, got"),
    ({"class_path": 3, "init_args": {}}, "model recipe: class_path must be a class name like 'package.module.Class'"),
    ({"class_path": "lr_lightning.core.networks.LinearRegression", "init_args": "in_features=2"},
     "model recipe for lr_lightning.core.networks.LinearRegression: init_args must be a mapping of names to plain "
     "values"),
    ({"class_path": "lr_lightning.core.networks.LinearRegression", "init_args": {"in_features": torch.ones(1)}},
     "model recipe for lr_lightning.core.networks.LinearRegression: init_args must be a mapping of names to plain "
     "values"),
    ({"class_path": "lr_lightning.core.networks.LinearRegression", "init_args": {"in_features": 2, "depth": 3}},
     "model recipe for lr_lightning.core.networks.LinearRegression: cannot build it from init_args"),
    ({"class_path": f"{__name__}.NotAModule", "init_args": {}},
     f"model recipe for {__name__}.NotAModule: built a str, not an nn.Module"),
    ("lr_lightning.core.networks.LinearRegression", "model: expected an nn.Module or a recipe"),
])
def test_a_malformed_recipe_is_one_clear_error(recipe, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        RegressionModule(recipe, trusted=[NotAModule])


@pytest.mark.parametrize(("change", "words"), [
    (lambda sd: sd.__setitem__("model.linear.weight", torch.zeros(1, 3)),
     "state_dict: 'model.linear.weight' has shape (1, 3) in the checkpoint, (1, 2) in the network LinearRegression "
     "rebuilt here"),
    (lambda sd: sd.pop("model.linear.bias"),
     "state_dict does not fit the network LinearRegression: missing 'model.linear.bias'"),
    (lambda sd: sd.__setitem__("model.extra", torch.zeros(1)),
     "state_dict does not fit the network LinearRegression: unexpected 'model.extra'"),
])
def test_weights_that_do_not_fit_the_rebuilt_network_are_one_clear_error(saved, tmp_path, change, words):
    path = _crafted(saved, tmp_path, lambda ckpt: change(ckpt["state_dict"]))
    with pytest.raises(ValueError, match=re.escape(words)):
        RegressionModule.load_from_checkpoint(path, weights_only=True)


def _spec(**changes):
    spec = {"polynomial_degree": None, "bias": True, "centre": [0.0, 0.0], "scale": [1.0, 1.0],
            "feature_mean": [0.5, -1.0], "feature_scale": [2.0, 3.0], "y_mean": [1.0], "y_scale": [4.0]}
    return {k: v for k, v in (spec | changes).items() if v != "drop"}


@pytest.mark.parametrize(("spec", "words"), [
    ([1.0, 2.0], "normalization: expected a mapping with the keys polynomial_degree, bias, centre"),
    (_spec(y_scale="drop", centre="drop"), "normalization: missing key(s) centre, y_scale"),
    (_spec(polynomial_degree=0), "normalization: polynomial_degree must be None or an integer >= 1, got 0"),
    (_spec(bias="yes"), "normalization: bias must be true or false, got 'yes'"),
    (_spec(feature_mean=[0.0, float("nan")]), "normalization: feature_mean must be a non-empty list of finite numbers"),
    (_spec(y_mean=["1"]), "normalization: y_mean must be a non-empty list of finite numbers"),
    (_spec(y_scale=[0.0]), "normalization: y_scale must hold numbers > 0 (they divide)"),
    (_spec(feature_scale=[1.0]), "normalization: feature_scale has 1 values, expected 2 (2 input column(s), "
                                 "polynomial_degree None, 1 output(s))"),
    (_spec(polynomial_degree=2), "normalization: feature_mean has 2 values, expected 4"),
])
def test_a_bad_normalization_is_one_clear_error(saved, tmp_path, spec, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        RegressionModule(LinearRegression(2), normalization=spec)
    path = _crafted(saved, tmp_path, lambda ckpt: ckpt["hyper_parameters"].__setitem__("normalization", spec))
    with pytest.raises(ValueError, match=re.escape(words)):
        RegressionModule.load_from_checkpoint(path, weights_only=True)


def test_a_valid_normalization_is_applied():
    module = RegressionModule(LinearRegression(2), normalization=_spec())  # centred: a model with an intercept
    nn.init.ones_(module.model.linear.weight)
    nn.init.zeros_(module.model.linear.bias)
    with torch.no_grad():  # ((x - mean) / scale) summed, then * 4 + 1
        assert module(torch.tensor([[2.5, 2.0]])).item() == pytest.approx(((2.5 - 0.5) / 2 + 3.0 / 3) * 4 + 1)


def test_a_normalization_with_more_outputs_than_the_network_is_refused_not_broadcast():
    module = RegressionModule(LinearRegression(2), normalization=_spec(y_mean=[0.0, 0.0], y_scale=[1.0, 1.0]))
    with pytest.raises(ValueError, match=re.escape("the network has 1 output(s), its normalization (y_mean) 2")):
        module(torch.zeros(3, 2))
