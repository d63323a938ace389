"""The leave-one-out protocols that influence functions are checked against (Koh & Liang):
retraining from the optimum, and from scratch with seeded initialisations."""

import numpy as np
import pytest
import torch
from torch import nn

from neuronshapley.data.loo import fit_lbfgs, leave_one_out, leave_one_out_from_scratch

WEIGHT_DECAY = 1e-2


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.randn(n, 6, generator=generator, dtype=torch.float64) + y[:, None].double()
    return x, y


def linear() -> nn.Module:
    return nn.Linear(6, 3).double()


def tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3)).double()


def test_from_scratch_equals_warm_start_when_the_objective_is_strongly_convex() -> None:
    # Softmax regression with weight decay has one minimum: every seed's fit reaches it, so
    # both protocols must give the same change. Each fit stops where float64 line searches
    # stall (a gradient near 1e-9, below 1e-8) and the objective is WEIGHT_DECAY-strongly
    # convex, so parameters are within 1e-8 / 1e-2 = 1e-6 of the optimum; a test loss moves at
    # most |x| + 1 (under 10 here) per unit of parameters, so two fits differ by under 2e-5.
    train, test = blobs(40, seed=0), blobs(5, seed=1)
    torch.manual_seed(0)
    model = linear()
    assert fit_lbfgs(model, train, weight_decay=WEIGHT_DECAY, max_iter=2000) < 1e-8
    removed = [0, 7, 19]
    warm = leave_one_out(model, train, test, removed, weight_decay=WEIGHT_DECAY)
    scratch = leave_one_out_from_scratch(
        linear, train, test, removed, seeds=[0, 3], weight_decay=WEIGHT_DECAY, max_iter=2000
    )
    assert scratch.shape == (2, 3, 5)
    assert np.abs(warm).max() > 1e-3  # the removals change the test loss well above that
    np.testing.assert_allclose(scratch, np.broadcast_to(warm, scratch.shape), atol=2e-5)


def test_from_scratch_is_deterministic_per_seed_on_a_tiny_mlp() -> None:
    # Same seeds, same initialisations, same full-batch L-BFGS: identical to the last bit.
    train, test = blobs(30, seed=2), blobs(4, seed=3)
    kwargs = {"seeds": [0, 1], "weight_decay": WEIGHT_DECAY, "max_iter": 50}
    first = leave_one_out_from_scratch(tiny_mlp, train, test, [2, 5], **kwargs)
    second = leave_one_out_from_scratch(tiny_mlp, train, test, [2, 5], **kwargs)
    np.testing.assert_array_equal(first, second)
    assert np.isfinite(first).all()


def test_warm_start_on_a_tiny_mlp_matches_a_much_longer_retraining() -> None:
    # From the optimum a removal moves the minimum by O(1/n), so the default retraining must
    # already be where a 20x longer one at a 100x tighter tolerance ends (within 1e-7).
    train, test = blobs(30, seed=4), blobs(4, seed=5)
    torch.manual_seed(0)
    model = tiny_mlp()
    assert fit_lbfgs(model, train, weight_decay=WEIGHT_DECAY, max_iter=3000) < 1e-8
    removed = [1, 11, 23]
    default = leave_one_out(model, train, test, removed, weight_decay=WEIGHT_DECAY)
    longer = leave_one_out(
        model, train, test, removed, weight_decay=WEIGHT_DECAY, max_iter=10_000, tolerance=1e-12
    )
    assert np.abs(longer).max() > 1e-4

    np.testing.assert_allclose(default, longer, atol=1e-7)


def test_from_scratch_names_bad_input() -> None:
    train, test = blobs(10, seed=0), blobs(2, seed=1)
    with pytest.raises(ValueError, match="'seeds' parameter of leave_one_out_from_scratch"):
        leave_one_out_from_scratch(linear, train, test, [0], seeds=[])
    with pytest.raises(TypeError, match="'make_model' parameter"):
        leave_one_out_from_scratch("linear", train, test, [0], seeds=[0])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must return a torch"):
        leave_one_out_from_scratch(lambda: 3, train, test, [0], seeds=[0])  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="'indices'"):
        leave_one_out_from_scratch(linear, train, test, [10], seeds=[0])
