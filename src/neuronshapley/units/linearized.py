"""A first-order surrogate of a ``NeuronGame``: the model linearised in its unit masks.

Give every unit u a mask m_u in [0, 1] that blends its output with its ablation fill,
a_u(m) = fill_u + m_u (a_u - fill_u): m = 1 is the full model, m_u = 0 ablates u as the game
does. Around the full model the outputs (logits) of example e are, to first order,

    z_e(S) ~ z_e(N) + J_e (1_S - 1),    J_e[:, u] = d z_e / d m_u = sum over positions of
                                        (d z_e / d a_u) (a_u - fill_u),

gradient times (activation minus fill): attribution patching (Nanda 2023; Syed, Rager & Conmy,
"Attribution patching outperforms automated circuit discovery", 2023). J costs one backward pass
per output (class) on the evaluation data, once. The surrogate game scores the linearised
outputs with the game's own metric, or another (``metric=``; ``"soft_accuracy"`` for an accuracy
game): U(S) = metric(z(N) + J (1_S - 1)), a matrix product per coalition instead of a forward
pass. It is linear in S before the metric and not after it
(accuracy's argmax, cross-entropy's softmax), so its marginals vary with the coalition the way
the game's do where the linearisation holds (coalitions near N), which is what a control variate
needs (``estimators.control_variate``); its own Shapley values are not known in closed form and
are estimated from cheap walks of it.

Limits: the linearisation is exact at N and for single removals only to first order; far from N
(small coalitions) it can be far off, and the surrogate then correlates less with the game. It
scores all the evaluation examples, also for a game that draws examples per walk
(``examples_per_walk``): it stays a valid control variate there (any correlated game is), just
a less correlated one.
"""

import time
from typing import Any

import numpy as np
import torch

from neuronshapley._internal.fingerprint import digest
from neuronshapley._internal.validation import check_int
from neuronshapley.games.base import BaseGame
from neuronshapley.pytorch.data import Split, n_examples, split_rows
from neuronshapley.pytorch.metrics import (
    Metric,
    OutputMetric,
    check_declared_bounds,
    check_finite_values,
    check_metric_values,
    resolve_metric,
)
from neuronshapley.typing import CoalitionMatrix, GameValues
from neuronshapley.units.ablation import evaluation_mode, hooked
from neuronshapley.units.game import NeuronGame

_OWNER = "linearized_game"
# Linearised outputs (coalitions x examples x outputs) held at once, in numbers.
_OUTPUT_NUMBERS = 2**24


def _soft_accuracy(logits: torch.Tensor, targets: torch.Tensor, _: Split) -> torch.Tensor:
    """Mean over examples of sigmoid(true logit - largest other logit): accuracy, smoothed."""
    index = targets.expand(logits.shape[0], -1).unsqueeze(-1)
    true = logits.gather(-1, index).squeeze(-1)
    others = logits.scatter(-1, index, -torch.inf).amax(dim=-1)
    return torch.sigmoid((true - others).double()).mean(dim=1)


def soft_accuracy() -> Metric:
    """Accuracy smoothed: the mean of sigmoid(true logit - largest other logit), in (0, 1).

    As the metric of the surrogate of an accuracy game it correlates better with the game's
    marginals than accuracy itself (docs/efficiency.md, "Control variate"): a removal that
    moves a margin without flipping a prediction still moves it.
    """
    return Metric("soft_accuracy", _soft_accuracy, bounds=(0.0, 1.0))


class LinearizedGame(BaseGame):
    """U(S) = metric(z(N) + J (1_S - 1)): a ``NeuronGame`` linearised in its unit masks.

    Build it with :func:`linearized_game`. Same players (and names, and groups) as the game.

    Attributes:
        game: The ``NeuronGame`` it approximates.
        outputs: z(N), the full model's outputs, shape ``(n_examples, *output_shape)``.
        jacobian: J as a matrix, shape ``(n_players, n_examples * n_outputs)``: row u is
            d z / d m_u for every example and output.
        seconds: Wall time spent computing J.
    """

    fingerprint_ignores = ("seconds",)

    def __init__(
        self,
        game: NeuronGame,
        outputs: torch.Tensor,
        jacobian: torch.Tensor,
        seconds: float,
        metric: Metric | None = None,
    ) -> None:
        super().__init__(game.n_players, game.player_names)
        self.game = game
        self.metric = game.metric if metric is None else metric
        self.outputs = outputs
        self.jacobian = jacobian
        self.seconds = seconds
        self.player_groups = list(game.player_groups)

    def fingerprint(self) -> str:
        return digest("LinearizedGame", self.game.fingerprint(), self.metric)

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        game = self.game
        split = game.data
        width = self.jacobian.shape[1]
        step = max(1, _OUTPUT_NUMBERS // max(width, 1))
        base = self.outputs.reshape(-1)
        parts = []
        with torch.inference_mode():
            for start in range(0, len(coalitions), step):
                chunk = coalitions[start : start + step]
                linear = _linearised(base, self.jacobian, chunk).view(
                    len(chunk), *self.outputs.shape
                )
                scores = self.metric(linear, split.y, split)
                parts.append(check_metric_values(scores, len(chunk), self.metric.name))
        values = torch.cat(parts).double().cpu().numpy() if parts else np.zeros(0)
        check_finite_values(values, self.metric.name)
        check_declared_bounds(values, self.metric)
        return np.asarray(values, dtype=np.float64)

    def __repr__(self) -> str:
        return f"LinearizedGame({self.game!r})"


def _linearised(
    base: torch.Tensor, jacobian: torch.Tensor, coalitions: CoalitionMatrix
) -> torch.Tensor:
    """z(N) + J (1_S - 1) for each coalition S: shape ``(n_coalitions, n_examples * n_outputs)``.

    A row that differs from the row before it in one unit at most (a walk's coalitions, which
    the estimators batch in walk order) continues a running sum: the row before plus or minus
    one row of J. The others (the first row, the start of the next walk) take a product with J.
    A walk of n units costs n x width that way against n^2 x width by products; at 1,024 units
    the products made the surrogate's walks a third of the game's time (docs/efficiency.md,
    "Control variate"). Both round as float32 sums of as many terms do.
    """
    changes = np.diff(coalitions.astype(np.int8), axis=0)
    starts = np.flatnonzero(np.concatenate([[True], np.count_nonzero(changes, axis=1) > 1]))
    if len(starts) > len(coalitions) // 8:  # scattered coalitions: products throughout
        return _product(base, jacobian, coalitions)
    out = torch.empty(
        len(coalitions), jacobian.shape[1], dtype=jacobian.dtype, device=jacobian.device
    )
    device = jacobian.device
    out[torch.from_numpy(starts).to(device)] = _product(base, jacobian, coalitions[starts])
    # Row r > 0 continues with the unit that changed from row r - 1 (sign 0: none did).
    unit = np.argmax(changes != 0, axis=1)
    sign = torch.from_numpy(changes[np.arange(len(changes)), unit].astype(np.float32))
    for start, end in zip(starts, [*starts[1:], len(coalitions)], strict=True):
        if end - start > 1:
            steps = jacobian.index_select(0, torch.from_numpy(unit[start : end - 1]).to(device))
            steps *= sign[start : end - 1, None].to(device, jacobian.dtype)
            steps[0] += out[start]
            out[start + 1 : end] = steps.cumsum_(dim=0)
    return out


def _product(
    base: torch.Tensor, jacobian: torch.Tensor, coalitions: CoalitionMatrix
) -> torch.Tensor:
    """z(N) + J (1_S - 1) by a product with J (``_linearised``)."""
    removed = torch.from_numpy(coalitions.astype(np.float32) - 1.0)
    return base + removed.to(jacobian.device, jacobian.dtype, non_blocking=True) @ jacobian


def linearized_game(
    game: NeuronGame, *, metric: Any = None, batch_size: int = 256
) -> LinearizedGame:
    """The first-order surrogate of ``game`` (module docstring): a cheap control variate.

    Computes the outputs of the full model and their Jacobian with respect to the unit masks
    (attribution patching: gradient times activation minus fill) on the game's evaluation data,
    one backward pass per output. The model is left as it came: no parameter's ``.grad`` is
    written (``torch.autograd.grad``), its mode is restored, the hooks are removed.

    Args:
        game: A ``NeuronGame``.
        metric: What scores the linearised outputs: ``None`` (default) the game's metric;
            ``"soft_accuracy"`` (:func:`soft_accuracy`, a smoothed accuracy, which correlated
            better with an accuracy game on digits-cnn), or any metric ``NeuronGame`` accepts.
            Any function of the coalition keeps the control variate unbiased; the metric only
            decides how well it correlates.
        batch_size: Examples per forward pass. Default 256.

    Returns:
        A :class:`LinearizedGame` on the game's players; pass it as the ``surrogate`` of
        ``ns.estimators.control_variate_shapley``.

    Raises:
        TypeError: ``game`` is not a ``NeuronGame``.
        ValueError: the model's outputs hold more than 1,024 numbers per example (a backward
            pass per output would cost more than the game).
    """
    if not isinstance(game, NeuronGame):
        raise TypeError(
            f"The 'game' parameter of {_OWNER} must be a NeuronGame. Got {type(game).__name__}."
        )
    size = int(check_int(batch_size, "batch_size", _OWNER, min_value=1))  # type: ignore[arg-type]
    scorer = (
        None
        if metric is None
        else soft_accuracy()
        if metric == "soft_accuracy"
        else resolve_metric(metric, _OWNER)
    )
    if scorer is not None and scorer.needs_groups and game.data.groups is None:
        raise ValueError(
            f"The metric {scorer.name!r} given to {_OWNER} needs a group per example, but the "
            "game's data has none."
        )
    if scorer is not None and not isinstance(scorer, OutputMetric) and not game.data.labelled:
        raise ValueError(
            f"The metric {scorer.name!r} given to {_OWNER} needs labels, but the game's data "
            "has none: pass a label-free metric (outputs) -> float."
        )
    started = time.perf_counter()
    outputs, jacobians = [], []
    for inputs in split_rows(game.data.x, size):
        z, jacobian = _jacobian(game, inputs)
        outputs.append(z)
        jacobians.append(jacobian)
    out = torch.cat(outputs)  # (n_examples, *output_shape)
    # (n_examples, n_outputs, n_players) -> (n_players, n_examples * n_outputs)
    matrix = torch.cat(jacobians).reshape(-1, game.n_players).T.contiguous()
    return LinearizedGame(game, out, matrix, time.perf_counter() - started, scorer)


def _jacobian(game: NeuronGame, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """z(N) of ``inputs`` and d z / d m, shape ``(n_examples, n_outputs, n_players)``."""
    # Every tensor made here must be a normal one, even when the caller is inside
    # torch.inference_mode(): a copy made under it would still be an inference tensor.
    with torch.inference_mode(False):
        return _jacobian_outside_inference(game, inputs)


def _jacobian_outside_inference(game: NeuronGame, inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    count = n_examples(inputs)
    # Tensors made under inference mode (the fills) cannot take part in autograd: copies can.
    fills = [fill.clone() for fill in game.fills]
    inputs = _usable(inputs)
    masks = [
        torch.ones(count, len(layer.indices), device=game.device, requires_grad=True)
        for layer in game.layers
    ]

    def blend(index: int) -> Any:
        layer, fill = game.layers[index], fills[index]

        def transform(activation: torch.Tensor) -> torch.Tensor:
            full = torch.ones(count, layer.size, device=activation.device, dtype=activation.dtype)
            columns = torch.as_tensor(layer.indices, device=activation.device)
            full = full.index_copy(1, columns, masks[index].to(activation.dtype))
            if layer.group > 1:
                full = full.repeat_interleave(layer.group, dim=1)
            shape = [count] + [1] * (activation.dim() - 1)
            shape[layer.channel_dim % activation.dim()] = full.shape[1]
            return fill + (activation - fill) * full.view(shape)

        return transform

    with (
        evaluation_mode(game.model),
        torch.inference_mode(False),
        torch.enable_grad(),
        hooked(game.model, game.layers, [blend(i) for i in range(len(game.layers))]),
    ):
        result = game._call(inputs)
        out = game._select(result, inputs)
        flat = out.reshape(count, -1)
        if flat.shape[1] > 1024:
            raise ValueError(
                f"{_OWNER} takes one backward pass per output number, and the model gives "
                f"{flat.shape[1]} per example (at most 1,024): select fewer outputs with the "
                "game's 'output' parameter."
            )
        rows = []
        for k in range(flat.shape[1]):
            # Examples do not interact (evaluation mode), so the gradient of the sum over
            # examples holds each example's own row.
            grads = torch.autograd.grad(flat[:, k].sum(), masks, retain_graph=True)
            rows.append(torch.cat([g.detach() for g in grads], dim=1))
    jacobian = torch.stack(rows, dim=1)  # (examples, outputs, players)
    return out.detach(), jacobian


def _usable(inputs: Any) -> Any:
    """``inputs`` with any inference-mode tensor copied, so that autograd can record on it."""
    if isinstance(inputs, torch.Tensor):
        return inputs.clone() if inputs.is_inference() else inputs
    if isinstance(inputs, dict):
        return {key: _usable(value) for key, value in inputs.items()}
    if isinstance(inputs, tuple):
        return tuple(_usable(value) for value in inputs)
    return inputs
