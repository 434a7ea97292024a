"""The package's networks refuse sizes and parameter-less networks in words."""

from __future__ import annotations

import pytest
from torch import nn

from lr_lightning import LinearRegression, MLPRegressor, RegressionModule


def test_a_network_without_parameters_and_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="the network Identity has no trainable parameters"):
        RegressionModule(nn.Identity())
    with pytest.raises(ValueError, match="in_features must be a positive whole number, got 0"):
        LinearRegression(0)
    with pytest.raises(ValueError, match=r"hidden must be a list of positive layer widths, e.g. \[64, 64\], got 64"):
        MLPRegressor(2, hidden=64)
