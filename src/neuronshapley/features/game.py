"""``FeatureGame``: the input features of one example as players.

The value of a coalition S is the model's output for the target class when the features outside
S are replaced by a baseline (Lundberg & Lee 2017, the "interventional" removal; Ancona et al.
2019 use the same game with a zero baseline). With a background set the value is the average
output over its rows, each row filling the missing features. One call to
:meth:`FeatureGame.value` answers many coalitions in one forward pass: every coalition's masked
inputs (times the background rows) are stacked into one batch, cut only by the memory budget.
"""

from typing import Any

import numpy as np
import torch
from torch import nn

from neuronshapley._internal.devices import available_memory
from neuronshapley._internal.fingerprint import digest
from neuronshapley._internal.validation import check_choice, check_int
from neuronshapley.features.inputs import (
    as_baseline,
    as_example,
    check_model,
    evaluation_mode,
    model_dtype,
    resolve_players,
)
from neuronshapley.games.base import BaseGame
from neuronshapley.typing import CoalitionMatrix, GameValues

_OWNER = "FeatureGame"
OUTPUTS = ("logit", "probability")
_CPU_MEMORY_BUDGET = 64 * 2**20
_MEMORY_BUDGET = 512 * 2**20
TRUNCATION_REASON = (
    "truncation stops a walk once the network is 'dead' (it has lost its performance), which "
    "suits units of a trained network; the output for one class as features are removed has no "
    "dead level (it may rise, fall or cross zero), so truncated walks would bias the values. "
    "Use permutation_shapley (antithetic=True for less variance), tmab_shapley or dasp."
)


class FeatureGame(BaseGame):
    """The game "model output for ``target`` when only the features in S are kept".

    Args:
        model: The network; it takes a batch of examples shaped like ``x`` with a leading batch
            axis and returns ``(batch, n_outputs)`` (or ``(batch,)`` for one output). It is left
            as it came in: evaluated in eval mode inside a context that restores every
            submodule's mode, without gradients, never modified.
        x: One example, without its batch axis (e.g. shape ``(13,)``, ``(1, 40)``, ``(1, 8, 8)``).
        baseline: What a removed feature becomes: ``"zero"`` (default), a number, a tensor of
            x's shape (one value per feature, e.g. the training mean) or a background set of
            shape ``(m, *x.shape)``, in which case V(S) is the mean output over its m rows.
        target: The output whose value is explained, an int in ``[0, n_outputs - 1]``. Default
            ``None``: the model's predicted class on ``x`` (0 for a model with one output).
        groups: ``None`` (default: every feature is a player), a label per feature (a sequence
            of ``x.numel()`` labels or an array of x's shape; the players are the distinct
            labels, in order of first appearance, named by them; see :func:`image_patches`) or a
            list of index arrays into ``x.reshape(-1)`` covering every feature exactly once
            (players ``group0, group1, ...``).
        output: ``"logit"`` (default, the pre-softmax output, as DASP uses) or
            ``"probability"`` (softmax over the outputs; needs at least two).
        memory_budget: Bytes of activations one forward pass may hold. Default ``None``: 64
            MiB on the CPU, 512 MiB elsewhere.

    Attributes:
        players: Which flat features each player holds (``members``) and the reverse map.
        player_groups: With ``groups``, each player's label; ``None`` without.
        baseline_kind: ``"zero"``, ``"constant"``, ``"per_feature"`` or ``"background"``.
        rows_per_pass: Model inputs per forward pass under the memory budget.
        supports_truncation: ``False``: truncated estimators refuse this game (see
            ``truncation_reason``).

    Raises:
        ValueError: a baseline of the wrong shape, a target out of range, groups that do not
            cover every feature exactly once, a non-finite ``x`` or baseline.
    """

    supports_truncation = False
    truncation_reason = TRUNCATION_REASON

    def __init__(
        self,
        model: nn.Module,
        x: Any,
        baseline: Any = "zero",
        target: int | None = None,
        groups: Any = None,
        output: str = "logit",
        *,
        memory_budget: int | None = None,
    ) -> None:
        device = check_model(model, _OWNER)
        check_choice(output, "output", _OWNER, OUTPUTS)
        check_int(memory_budget, "memory_budget", _OWNER, min_value=1, allow_none=True)
        self.model = model
        self.x = as_example(x, _OWNER, device, model_dtype(model))
        self.background, self.baseline_kind = as_baseline(baseline, self.x, _OWNER)
        self.players = resolve_players(groups, tuple(self.x.shape), _OWNER)
        super().__init__(len(self.players.members), self.players.names)
        self.player_groups = list(self.players.names) if self.players.grouped else None
        self.output = output
        full, bytes_per_row = self._probe()
        self.n_outputs = int(full.shape[-1])
        if output == "probability" and self.n_outputs < 2:
            raise ValueError(
                f"output='probability' needs a model with at least two outputs (a softmax over "
                f"classes); this model has {self.n_outputs}. Use output='logit'."
            )
        if target is None:
            target = int(full[0].argmax()) if self.n_outputs > 1 else 0
        self.target: int = check_int(  # type: ignore[assignment]
            target, "target", _OWNER, min_value=0, max_value=self.n_outputs - 1
        )
        if memory_budget is None:
            memory_budget = _CPU_MEMORY_BUDGET if device.type == "cpu" else _MEMORY_BUDGET
        free = available_memory(device)
        if free is not None:
            memory_budget = min(memory_budget, free // 2)
        self.rows_per_pass = max(1, memory_budget // max(bytes_per_row, 1))
        self._owner_of = torch.from_numpy(self.players.owner_of).to(device)

    def _probe(self) -> tuple[torch.Tensor, int]:
        """The model's outputs on ``x`` (shape ``(1, n_outputs)``) and activation bytes per row."""
        sizes: list[int] = []

        def count(_module: nn.Module, _inputs: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor):
                sizes.append(out.numel() * out.element_size())

        handles = [module.register_forward_hook(count) for module in self.model.modules()]
        try:
            outputs = self._forward(self.x[None])
        except RuntimeError as error:
            raise ValueError(
                f"The model passed to {_OWNER} cannot take the example 'x' of shape "
                f"{tuple(self.x.shape)} (with a batch axis in front): {error}"
            ) from error
        finally:
            for handle in handles:
                handle.remove()
        bytes_per_row = sum(sizes) + 3 * self.x.numel() * self.x.element_size()
        return outputs, bytes_per_row

    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """The model's outputs ``(rows, n_outputs)`` on a batch, the model left untouched."""
        with evaluation_mode(self.model), torch.inference_mode():
            out = self.model(inputs)
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"The model passed to {_OWNER} must return a tensor of shape (batch, n_outputs). "
                f"Got {type(out).__name__} instead."
            )
        if out.dim() == 1 and len(out) == len(inputs):
            out = out[:, None]
        if out.dim() != 2 or len(out) != len(inputs):
            raise ValueError(
                f"The model passed to {_OWNER} must return shape (batch, n_outputs) (or "
                f"(batch,)) for a batch of {len(inputs)} examples. Got shape "
                f"{tuple(out.shape)} instead."
            )
        return out

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        n_rows = len(self.background)
        x = self.x.reshape(1, 1, -1)
        background = self.background.reshape(1, n_rows, -1)
        per_pass = max(1, self.rows_per_pass // n_rows)
        values = np.empty(len(coalitions), dtype=np.float64)
        for start in range(0, len(coalitions), per_pass):
            chunk = torch.from_numpy(coalitions[start : start + per_pass]).to(x.device)
            kept = chunk[:, self._owner_of][:, None, :]  # (chunk, 1, features)
            inputs = torch.where(kept, x, background).reshape(-1, *self.x.shape)
            out = self._forward(inputs)
            if self.output == "probability":
                out = torch.softmax(out.double(), dim=-1)
            scores = out[:, self.target].double().reshape(len(chunk), n_rows).mean(dim=1)
            values[start : start + len(chunk)] = scores.cpu().numpy()
        return values

    def fingerprint(self) -> str:
        """The model (type and state), x, the baseline, target, players and output, by content."""
        # digest hashes tensors and modules by content (bfloat16 included).
        return digest(
            _OWNER,
            self.model,
            self.x,
            self.background,
            self.target,
            list(self.players.members),
            self.player_names,
            self.output,
        )

    def __repr__(self) -> str:
        return (
            f"FeatureGame(n_players={self.n_players}, target={self.target}, "
            f"baseline={self.baseline_kind!r}, output={self.output!r})"
        )
