"""Causal weights on a known residual equal their formula (Wang, Sankaran & Perdikaris 2022)."""

import math

import pytest
import torch

from pinn.training.causal import Causal


def test_causal_weights_on_a_known_residual_equal_the_formula():
    causal = Causal(slices=4, epsilon=2.0)
    t = torch.tensor([0.1, 0.2, 0.3, 0.6, 0.7, 0.9, 0.95, 1.0])  # slices of [0, 1]: 0, 0, 1, 2, 2, 3, 3, 3
    squared = torch.tensor([1.0, 3.0, 0.5, 0.2, 0.4, 4.0, 5.0, 6.0], requires_grad=True)
    loss, w = causal.loss(t, squared, (0.0, 1.0))
    slice_means = [2.0, 0.5, 0.3, 5.0]
    expected_w = [1.0, math.exp(-2.0 * 2.0), math.exp(-2.0 * 2.5), math.exp(-2.0 * 2.8)]
    torch.testing.assert_close(w, torch.tensor(expected_w))
    assert float(loss) == pytest.approx(sum(a * b for a, b in zip(expected_w, slice_means)) / 4)
    loss.backward()  # the weights are constants: d loss / d squared_j = w_slice(j) / (M n_slice(j))
    expected_grad = [expected_w[0] / 8] * 2 + [expected_w[1] / 4] + [expected_w[2] / 8] * 2 + [expected_w[3] / 12] * 3
    torch.testing.assert_close(squared.grad, torch.tensor(expected_grad))


def test_empty_slices_and_bad_settings():
    causal = Causal(slices=3, epsilon=1.0)
    losses = causal.slice_losses(torch.tensor([0.0, 0.1]), torch.tensor([2.0, 4.0]), (0.0, 3.0))
    torch.testing.assert_close(losses, torch.tensor([3.0, 0.0, 0.0]))
    for kwargs in ({"slices": 1}, {"epsilon": 0.0}, {"epsilon": float("nan")}):
        with pytest.raises(ValueError, match="model.causal"):
            Causal(**kwargs)
