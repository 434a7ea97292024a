"""The networks: linear regression as a plain ``nn.Module`` (stage 4 of the tutorial), and an MLP.

:class:`RegressionModule` trains any ``nn.Module`` mapping ``(N, in)`` to ``(N, out)``; a
new network is a new class here (or anywhere importable: ``fit.py --model package.module.Class``).
"""

from __future__ import annotations

import torch
from torch import nn


class LinearRegression(nn.Module):
    """``y = x @ W.T + b`` with one ``nn.Linear`` inside.

    The init arguments are kept as attributes of the same name (scikit-learn's convention): from Python, that is how
    :class:`RegressionModule` records in its checkpoint how to rebuild the model (from the command line, the
    config's ``class_path``/``init_args`` is the record).

    Args:
        in_features: input columns (on the command line: linked from the data).
        out_features: outputs, one per target (linked from the data).
        bias: fit an intercept (on the command line: ``--data.bias``, since centring the data depends on it).

    >>> model = LinearRegression(in_features=3)
    >>> model(torch.zeros(8, 3)).shape
    torch.Size([8, 1])
    """

    def __init__(self, in_features: int, out_features: int = 1, bias: bool = True) -> None:
        super().__init__()
        _check_sizes(in_features, out_features)
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be true or false, got {bias!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.bias = bias
        self.linear = nn.Linear(in_features, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def _positive_int(value: object) -> bool:
    # At most 2**31 - 1: beyond that torch cannot even describe the layer's shape (and no memory could hold it).
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**31


def _check_sizes(in_features: object, out_features: object) -> None:
    for name, value in (("in_features", in_features), ("out_features", out_features)):
        if not _positive_int(value):
            raise ValueError(f"{name} must be a positive whole number, got {value!r}")


ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}


class MLPRegressor(nn.Module):
    """A multilayer perceptron for regression: ``Linear -> activation`` per hidden layer, then a ``Linear`` out.

    The second network in the package, to show that nothing else changes when the network does: the same
    ``RegressionModule``, datamodules, ``scripts/fit.py --model MLPRegressor --model.hidden [64,64]``, checkpoints
    and ``scripts/predict.py`` train and serve it. Like ``LinearRegression`` it keeps its init arguments as
    attributes, so checkpoints record how to rebuild it.

    Args:
        in_features: input columns (linked from the data on the command line).
        hidden: the hidden layers' widths.
        out_features: outputs, one per target (linked from the data).
        activation: ``relu``, ``tanh``, ``gelu`` or ``silu``.

    >>> model = MLPRegressor(in_features=2, hidden=(16, 8), out_features=3)
    >>> model(torch.zeros(5, 2)).shape
    torch.Size([5, 3])
    """

    def __init__(self, in_features: int, hidden: tuple[int, ...] | list[int] = (64, 64), out_features: int = 1,
                 activation: str = "relu") -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        if not (isinstance(hidden, (list, tuple)) and hidden and all(_positive_int(h) for h in hidden)):
            raise ValueError(f"hidden must be a list of positive layer widths, e.g. [64, 64], got {hidden!r}")
        _check_sizes(in_features, out_features)
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.hidden = list(hidden)  # a list, as YAML configs and checkpoint hyperparameters hold it
        layers: list[nn.Module] = []
        for width_in, width_out in zip([in_features, *hidden], hidden, strict=False):
            layers += [nn.Linear(width_in, width_out), ACTIVATIONS[activation]()]
        layers.append(nn.Linear(hidden[-1], out_features))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def single_linear(model: nn.Module) -> nn.Linear | None:
    """The one ``nn.Linear`` that holds all of ``model``'s parameters, if there is such a layer: a network the
    package can read as coefficients (found without running it)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if len(linears) != 1 or {id(p) for p in model.parameters()} != {id(p) for p in linears[0].parameters()}:
        return None
    return linears[0]
