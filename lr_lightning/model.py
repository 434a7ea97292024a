"""The network: linear regression as a plain ``nn.Module``.

This is stage 4 of the tutorial, and the only file to replace when you want a different network:
:class:`~lr_lightning.module.RegressionModule` trains any ``nn.Module`` mapping ``(N, in)`` to ``(N, out)``.
"""

from __future__ import annotations

import torch
from torch import nn


class LinearRegression(nn.Module):
    """``y = x @ W.T + b`` with one ``nn.Linear`` inside.

    The init arguments are kept as attributes of the same name (scikit-learn's convention), which is how
    :class:`~lr_lightning.module.RegressionModule` records in its checkpoint how to rebuild the model.

    >>> model = LinearRegression(in_features=3)
    >>> model(torch.zeros(8, 3)).shape
    torch.Size([8, 1])
    """

    def __init__(self, in_features: int, out_features: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.bias = bias
        self.linear = nn.Linear(in_features, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)
