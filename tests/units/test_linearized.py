"""linearized_game: exact where the outputs are linear in the masks, exact at N, the model left as
it came, and a control variate that keeps control_variate_shapley unbiased on a NeuronGame."""

import copy
import itertools
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from neuronshapley.estimators import permutation_shapley
from neuronshapley.estimators.control_variate import control_variate_shapley
from neuronshapley.units import NeuronGame, linearized
from neuronshapley.units.linearized import LinearizedGame, linearized_game
from tests.units._models import Snapshot, fitted, images, seeded, vectors


def _linear_head() -> nn.Module:
    """Units in module "2", whose outputs reach the logits through a Linear only."""
    return seeded(
        lambda: nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 6), nn.Linear(6, 3))
    )


def _all_coalitions(n: int) -> np.ndarray:
    return np.array(list(itertools.product([False, True], repeat=n)))


@pytest.mark.parametrize("metric", ["neg_cross_entropy", "accuracy"])
def test_exact_where_the_outputs_are_linear_in_the_masks(metric: str) -> None:
    """Logits = W (fill + m (a - fill)) + b are linear in m: the first order is everything, so
    the surrogate equals the game on every coalition."""
    x, y = vectors(20, seed=1)
    game = NeuronGame(
        _linear_head(), units="2", data=(x, y), metric=metric, reference=vectors(30, seed=2)[0]
    )
    surrogate = linearized_game(game)
    coalitions = _all_coalitions(game.n_players)
    np.testing.assert_allclose(
        surrogate.value(coalitions), game.value(coalitions), rtol=1e-5, atol=1e-5
    )
    assert surrogate.player_names == game.player_names


def test_exact_at_the_full_model_and_first_order_around_it() -> None:
    """Through a nonlinearity (a CNN's filters) the surrogate is exact at N, and a removal's
    effect on the logits is the gradient times (activation - fill)."""
    x, y = images(16, seed=1)
    game = NeuronGame(
        fitted("cnn"), data=(x, y), metric="neg_cross_entropy", reference=images(30, seed=2)[0]
    )
    surrogate = linearized_game(game, batch_size=5)  # several passes: rows stay in order
    full = np.ones((1, game.n_players), dtype=bool)
    np.testing.assert_allclose(surrogate.value(full), game.value(full), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        surrogate.outputs.numpy(), game.logits().numpy(), rtol=1e-5, atol=1e-5
    )
    # Directional derivative along m_u by central differences of the blended model.
    u = 3
    step = 1e-6
    plus, minus = _blended_logits(game, u, 1.0 + step), _blended_logits(game, u, 1.0 - step)
    numeric = (plus - minus) / (2 * step)
    analytic = surrogate.jacobian[u].view(*surrogate.outputs.shape)
    np.testing.assert_allclose(analytic.numpy(), numeric.numpy(), rtol=1e-4, atol=1e-4)


def _blended_logits(game: NeuronGame, player: int, mask: float) -> torch.Tensor:
    """The logits with unit ``player``'s output fill + mask (activation - fill)."""
    layer_index = int(
        np.searchsorted(np.cumsum([len(lay.indices) for lay in game.layers]), player, side="right")
    )
    layer = game.layers[layer_index]
    column = layer.indices[player - sum(len(lay.indices) for lay in game.layers[:layer_index])]
    # In float64, with a small step: float32 round-off and ReLU kinks within the step would
    # swamp the difference quotient.
    model = copy.deepcopy(game.model).double().eval()
    module = model.get_submodule(layer.path)
    fill = game.fills[layer_index].double()

    def hook(_: nn.Module, __: Any, out: torch.Tensor) -> torch.Tensor:
        blended = out.clone()
        blended[:, column] = fill[column] + mask * (out[:, column] - fill[column])
        return blended

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            return model(game.data.x.double())
    finally:
        handle.remove()


def test_soft_accuracy_scores_the_linearised_margins() -> None:
    x, y = images(16, seed=1)
    game = NeuronGame(fitted("cnn"), data=(x, y), reference=images(30, seed=2)[0])
    surrogate = linearized_game(game, metric="soft_accuracy")
    logits = game.logits().double()
    true = logits.gather(1, y.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, y.view(-1, 1), -torch.inf).amax(dim=1)
    expected = float(torch.sigmoid(true - others).mean())
    full = np.ones((1, game.n_players), dtype=bool)
    np.testing.assert_allclose(surrogate.value(full), [expected], rtol=1e-5)
    assert surrogate.metric.name == "soft_accuracy" and game.metric.name == "accuracy"
    with pytest.raises(ValueError, match="'metric' parameter of linearized_game"):
        linearized_game(game, metric="no_such_metric")


def test_model_left_as_it_came() -> None:
    model = fitted("cnn")
    model.train()
    snapshot = Snapshot(model)
    x, y = images(8, seed=1)
    game = NeuronGame(model, data=(x, y), reference=images(30, seed=2)[0])
    linearized_game(game)
    snapshot.assert_untouched()
    assert all(p.grad is None for p in model.parameters())


def test_works_inside_inference_mode_and_matches_outside() -> None:
    model = fitted("cnn")
    x, y = images(8, seed=1)
    game = NeuronGame(model, data=(x, y), reference=images(30, seed=2)[0])
    outside = linearized_game(game)
    with torch.inference_mode():
        inside = linearized_game(game)
    coalitions = _all_coalitions(4)
    padded = np.ones((len(coalitions), game.n_players), dtype=bool)
    padded[:, :4] = coalitions
    np.testing.assert_array_equal(inside.value(padded), outside.value(padded))


def test_a_plain_callable_surrogate_plays_the_games_players() -> None:
    model = fitted("cnn")
    x, y = images(8, seed=1)
    game = NeuronGame(model, data=(x, y), reference=images(30, seed=2)[0])
    surrogate = linearized_game(game)
    as_game = control_variate_shapley(game, surrogate, 4, seed=0)
    as_callable = control_variate_shapley(game, lambda c: surrogate.value(c), 4, seed=0)
    np.testing.assert_array_equal(as_callable.values, as_game.values)


def test_unbiased_control_variate_on_a_neuron_game() -> None:
    """On a 6-unit MLP game (exact values and marginal variances by enumerating all 720
    orders), the control-variate estimate averaged over 100 seeds is within 4.5 standard errors
    of the exact values, and its variance is less than half of plain sampling's."""
    model = seeded(lambda: nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)))
    x, y = vectors(40, seed=1)
    game = NeuronGame(
        model, data=(x, y), metric="neg_cross_entropy", reference=vectors(30, seed=2)[0]
    )
    surrogate = linearized_game(game)
    n = game.n_players
    marginals = []
    for order in itertools.permutations(range(n)):
        masks = np.ones((n + 1, n), dtype=bool)
        for t, player in enumerate(order):
            masks[t + 1 :, player] = False
        values = game.value(masks)
        row = np.empty(n)
        row[list(order)] = values[:-1] - values[1:]
        marginals.append(row)
    exact, plain_variance = np.mean(marginals, axis=0), np.var(marginals, axis=0)
    seeds, m = 100, 16
    estimates = np.array(
        [
            control_variate_shapley(game, surrogate, m, surrogate_permutations=4 * m, seed=s).values
            for s in range(seeds)
        ]
    )
    error = estimates.mean(axis=0) - exact
    standard_error = estimates.std(axis=0, ddof=1) / np.sqrt(seeds)
    assert np.all(np.abs(error) <= 4.5 * standard_error)
    # The surrogate's marginals correlate with the game's at 0.95-0.99 here: the total variance
    # was measured at 0.25 of plain sampling's; a sample variance over 100 seeds exceeds its
    # mean by a factor 1 + 4.3 sqrt(2 / 99) = 1.61 with probability below 1e-5.
    ratio = estimates.var(axis=0, ddof=1).sum() / (plain_variance / m).sum()
    assert ratio <= 0.5


@pytest.mark.parametrize("antithetic", [False, True])
def test_walks_scored_on_their_own_examples(antithetic: bool) -> None:
    """With examples_per_walk each walk is scored on its own examples, as permutation_shapley
    scores it: with beta = 0 the two give the same values for the same seed."""
    model = seeded(lambda: nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3)))
    x, y = vectors(40, seed=1)
    game = NeuronGame(
        model,
        data=(x, y),
        metric="neg_cross_entropy",
        reference=vectors(30, seed=2)[0],
        examples_per_walk=8,
    )
    surrogate = linearized_game(game)
    adjusted = control_variate_shapley(game, surrogate, 16, beta=0.0, antithetic=antithetic, seed=3)
    plain = permutation_shapley(game, 16, antithetic=antithetic, seed=3)
    np.testing.assert_allclose(adjusted.values, plain.values, rtol=0, atol=1e-12)


def test_bad_input() -> None:
    with pytest.raises(TypeError, match="'game' parameter of linearized_game must be a NeuronGame"):
        linearized_game("game")  # type: ignore[arg-type]
    x, y = images(4, seed=1)
    game = NeuronGame(fitted("cnn"), data=(x, y), reference=images(30, seed=2)[0])
    with pytest.raises(ValueError, match="'batch_size'"):
        linearized_game(game, batch_size=0)
    assert isinstance(linearized_game(game), LinearizedGame)


def test_a_walk_takes_the_running_sum_and_agrees_with_the_product(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A walk's coalitions (one unit apart) are linearised by a running sum of J's rows instead
    of a product with J (n x width per walk, not n^2 x width: the surrogate's cost at 1,024
    units). Both are z(N) + J (1_S - 1) up to float32 rounding, whose bound for a sum of at
    most n + 1 terms is (n + 1) eps (|z(N)| + sum_u |J_u|) elementwise (Higham, Accuracy and
    Stability of Numerical Algorithms, 2002, section 3.1)."""
    model = seeded(
        lambda: nn.Sequential(
            nn.Linear(8, 48), nn.ReLU(), nn.Linear(48, 48), nn.ReLU(), nn.Linear(48, 3)
        )
    )
    x, y = vectors(20, seed=1)
    game = NeuronGame(model, units=["0", "2"], data=(x, y), reference=vectors(30, seed=2)[0])
    surrogate = linearized_game(game, metric="soft_accuracy")
    n = game.n_players
    order = np.random.default_rng(0).permutation(n)
    walk = np.ones((n + 1, n), dtype=bool)
    for t, unit in enumerate(order):
        walk[t + 1 :, unit] = False  # from N down to the empty set, one unit a step
    # Two walks in one batch, the second from its middle up (a batch straddles walks), with a
    # coalition repeated (no unit changes) and one two units away (one in, one out) from the
    # row before: the running sum restarts where more than one unit changes, and holds.
    up = walk[::-1][n // 2 :]
    swapped = up[2].copy()
    swapped[np.flatnonzero(up[2])[0]] = False
    swapped[np.flatnonzero(up[3] & ~up[2])[0]] = True
    walks = np.concatenate([walk, up[:3], up[2:3], swapped[None], up[3:]])
    scattered = np.random.default_rng(1).random((n + 1, n)) < 0.5
    rows: list[int] = []
    product = linearized._product

    def counted(base: torch.Tensor, jacobian: torch.Tensor, coalitions: np.ndarray) -> Any:
        rows.append(len(coalitions))
        return product(base, jacobian, coalitions)

    monkeypatch.setattr(linearized, "_product", counted)
    base = surrogate.outputs.reshape(-1).double().numpy()
    jacobian = surrogate.jacobian.double().numpy()
    eps = float(np.finfo(np.float32).eps)
    bound = (n + 1) * eps * (np.abs(base) + np.abs(jacobian).sum(axis=0))
    for coalitions, by_product in ((walks, [3]), (scattered, [n + 1])):
        rows.clear()
        got = linearized._linearised(surrogate.outputs.reshape(-1), surrogate.jacobian, coalitions)
        assert rows == by_product  # the walks: only where each starts
        exact = base + (coalitions.astype(np.float64) - 1.0) @ jacobian
        assert (np.abs(got.double().numpy() - exact) <= bound).all()
    # Through the game's interface: the metric of those outputs, row by row.
    one_by_one = np.concatenate([surrogate.value(row[None]) for row in walks])
    np.testing.assert_allclose(surrogate.value(walks), one_by_one, rtol=0, atol=1e-5)
