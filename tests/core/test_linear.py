"""LinearRegression (lr_lightning/core/linear.py): an affine map with the shapes README gives."""

import torch

from lr_lightning import LinearRegression


def test_forward_is_affine_map_with_shapes():
    model = LinearRegression(3, 2)
    x = torch.randn(5, 3)
    y = model(x)
    assert y.shape == (5, 2)
    torch.testing.assert_close(y, x @ model.linear.weight.T + model.linear.bias)


def test_no_bias():
    model = LinearRegression(1, bias=False)
    assert model.linear.bias is None
    assert [name for name, _ in model.named_parameters()] == ["linear.weight"]
    assert model(torch.zeros(4, 1)).abs().max() == 0
