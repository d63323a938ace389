"""Metrics: what "performance of the network" means in the game.

A built-in metric is vectorised over coalitions: it takes the logits of every coalition at once,
shape ``(n_coalitions, n_examples, n_classes)``, and returns one number per coalition. A user's
metric is any callable ``(logits, targets, batch) -> float`` for *one* coalition (``logits`` of
shape ``(n_examples, n_classes)``, ``batch`` the :class:`~neuronshapley.pytorch.data.Split`), called
once per coalition.

A metric without labels scores what the model outputs on the whole evaluation set at once (a
correlation, a retrieval accuracy, a similarity to fixed references): a callable with one
parameter, ``metric(outputs) -> float``, is called once per coalition with ``outputs`` of shape
``(n_examples, ...)`` (what the game's ``output`` selects, e.g. pooled embeddings), in the order
of the evaluation examples. :func:`from_outputs` wraps one explicitly, and with
``vectorised=True`` takes a function of every coalition's outputs at once, shape
``(n_coalitions, n_examples, ...)`` -> ``(n_coalitions,)``. Such metrics never see labels, and the
game does not check any; the built-in metrics below need labels and check them.

Built-in metrics, by name:

- ``"accuracy"``: fraction of examples classified correctly;
- ``"neg_cross_entropy"``: minus the mean cross-entropy (higher is better, like the others);
- ``"recall:c"`` (or :func:`class_recall`): recall of class ``c``;
- ``"mean_group_recall"`` (or :func:`mean_group_recall`): recall of the positive class (1) in
  each group, averaged over the groups: the fairness metric of section 4.3 of Ghorbani & Zou
  (2020), after Kim et al. (2019);
- ``"worst_group_accuracy"``: the accuracy of the group where it is lowest.

Group metrics need the split's ``groups``; examples in group -1 belong to no group.

A metric may declare the interval its values lie in (``Metric.bounds``): every built-in that
is a fraction declares [0, 1]. Then a marginal contribution V(S + i) - V(S) lies in
[-(hi - lo), hi - lo], so the confidence bounds get a valid range R = 2 (hi - lo) instead of
the observed range, a heuristic (``NeuronGame.marginal_range``). ``neg_cross_entropy`` is
unbounded and declares none; a user's metric declares its own with ``bounds=(lo, hi)``.
"""

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from neuronshapley.pytorch.data import Split

BatchedMetric = Callable[[torch.Tensor, torch.Tensor, Split], torch.Tensor]
# The values of accuracy, recall and their group averages.
FRACTION = (0.0, 1.0)
UserMetric = Callable[[torch.Tensor, torch.Tensor, Split], Any]


@dataclass(frozen=True)
class Metric:
    """A named metric.

    Attributes:
        name: Shown in results and reports.
        batched: Logits ``(n_coalitions, n_examples, n_classes)`` -> values ``(n_coalitions,)``.
        needs_groups: Whether the split must have per-example groups.
        bounds: ``(lo, hi)``, an interval that holds every value of the metric, or ``None``
            if it has none or does not say (module docstring).
    """

    name: str
    batched: BatchedMetric
    needs_groups: bool = False
    bounds: tuple[float, float] | None = None

    # The bounds set the intervals, not the values: a game's fingerprint (what its checkpoints
    # and results are matched by) does not depend on them, as before they existed.
    __fingerprint_ignore__: ClassVar[tuple[str, ...]] = ("bounds",)

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, batch: Split) -> torch.Tensor:
        return self.batched(logits, targets, batch)


def _accuracy(logits: torch.Tensor, targets: torch.Tensor, _: Split) -> torch.Tensor:
    return (logits.argmax(dim=-1) == targets).double().mean(dim=1)


def _neg_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, _: Split) -> torch.Tensor:
    log_probs = F.log_softmax(logits.double(), dim=-1)
    picked = log_probs.gather(-1, targets.expand(logits.shape[0], -1).unsqueeze(-1))
    return picked.squeeze(-1).mean(dim=1)


def accuracy() -> Metric:
    """Fraction of examples whose arg-max logit is the label."""
    return Metric("accuracy", _accuracy, bounds=FRACTION)


def neg_cross_entropy() -> Metric:
    """Minus the mean cross-entropy of the labels (the log-likelihood; higher is better)."""
    return Metric("neg_cross_entropy", _neg_cross_entropy)


def class_recall(target_class: int) -> Metric:
    """Recall of ``target_class``: the accuracy on the examples labelled with it.

    Args:
        target_class: The class, an int >= 0.
    """
    if isinstance(target_class, bool) or not isinstance(target_class, int) or target_class < 0:
        raise ValueError(
            f"The 'target_class' parameter of class_recall must be an int >= 0. "
            f"Got {target_class!r} instead."
        )

    def recall(logits: torch.Tensor, targets: torch.Tensor, batch: Split) -> torch.Tensor:
        members = targets == target_class
        if not members.any():
            raise ValueError(
                f"The metric recall:{target_class} needs examples of class {target_class}, but "
                f"the evaluation data {batch.name!r} has none."
            )
        hits = (logits[:, members].argmax(dim=-1) == target_class).double()
        return hits.mean(dim=1)

    return Metric(f"recall:{target_class}", recall, bounds=FRACTION)


def _group_masks(targets: torch.Tensor, batch: Split, name: str) -> tuple[torch.Tensor, int]:
    if batch.groups is None:
        raise ValueError(
            f"The metric {name} needs a group per example, but the evaluation data "
            f"{batch.name!r} has none: pass data=(x, y, groups) or a Split with groups."
        )
    present = torch.unique(batch.groups[batch.groups >= 0])
    if len(present) == 0:
        raise ValueError(f"The metric {name} found no example in a group (all groups are -1).")
    masks = batch.groups[None, :] == present[:, None]  # (n_groups, n_examples)
    return masks, len(present)


def mean_group_recall(positive_class: int = 1) -> Metric:
    """Recall of ``positive_class`` within each group, averaged over groups (default class 1).

    The fairness metric of section 4.3 of Ghorbani & Zou (2020): a model that misses positives
    in one group scores low even if its overall recall is high. Groups without a positive
    example are left out of the mean.
    """
    name = "mean_group_recall" + ("" if positive_class == 1 else f":{positive_class}")

    def metric(logits: torch.Tensor, targets: torch.Tensor, batch: Split) -> torch.Tensor:
        masks, _ = _group_masks(targets, batch, name)
        positives = masks & (targets == positive_class)[None, :]  # (n_groups, n_examples)
        counts = positives.sum(dim=1)
        positives, counts = positives[counts > 0], counts[counts > 0]
        if len(counts) == 0:
            raise ValueError(f"The metric {name} found no example of class {positive_class}.")
        hits = (logits.argmax(dim=-1) == positive_class).double()  # (n_coalitions, n_examples)
        recalls = hits @ positives.double().T / counts.double()  # (n_coalitions, n_groups)
        return recalls.mean(dim=1)

    return Metric(name, metric, needs_groups=True, bounds=FRACTION)


def worst_group_accuracy() -> Metric:
    """The lowest accuracy over the groups."""

    def metric(logits: torch.Tensor, targets: torch.Tensor, batch: Split) -> torch.Tensor:
        masks, _ = _group_masks(targets, batch, "worst_group_accuracy")
        hits = (logits.argmax(dim=-1) == targets).double()
        accuracies = hits @ masks.double().T / masks.sum(dim=1).double()
        return accuracies.min(dim=1).values

    return Metric("worst_group_accuracy", metric, needs_groups=True, bounds=FRACTION)


@dataclass(frozen=True)
class OutputMetric(Metric):
    """A metric of the outputs alone: no labels needed, none checked (see :func:`from_outputs`)."""


def from_outputs(
    function: Callable[[torch.Tensor], Any],
    name: str | None = None,
    *,
    vectorised: bool = False,
    bounds: tuple[float, float] | None = None,
) -> OutputMetric:
    """A label-free metric of the model's outputs on the whole evaluation set.

    Args:
        function: ``function(outputs) -> float`` for one coalition, ``outputs`` of shape
            ``(n_examples, ...)``; or with ``vectorised=True``, ``function(outputs)`` of every
            coalition at once, shape ``(n_coalitions, n_examples, ...)``, returning a tensor of
            shape ``(n_coalitions,)``.
        name: Shown in results. Default: the function's name.
        vectorised: Whether ``function`` scores every coalition in one call. Default False.
        bounds: ``(lo, hi)``, an interval that holds every value ``function`` returns (a
            correlation: ``(-1, 1)``), for confidence bounds with a valid range. Default: not
            declared.
    """
    if not callable(function):
        raise TypeError(
            f"The 'function' parameter of from_outputs must be callable. "
            f"Got {type(function).__name__} instead."
        )
    label = str(name or getattr(function, "__name__", type(function).__name__))
    bounds = check_bounds(bounds, "from_outputs")

    if vectorised:

        def batched(outputs: torch.Tensor, _: torch.Tensor, __: Split) -> torch.Tensor:
            try:
                values = function(outputs)
            except Exception as error:
                raise MetricError(label, 0, error) from error
            if isinstance(values, np.ndarray):
                values = torch.from_numpy(values)
            return values

        return OutputMetric(label, batched, bounds=bounds)

    def per_coalition(outputs: torch.Tensor, _: torch.Tensor, __: Split) -> torch.Tensor:
        values = []
        for row, coalition in enumerate(outputs):
            try:
                value = function(coalition)
            except Exception as error:
                raise MetricError(label, row, error) from error
            values.append(_scalar(value, label))
        return torch.tensor(values, dtype=torch.float64)

    return OutputMetric(label, per_coalition, bounds=bounds)


def _takes_outputs_only(function: Callable[..., Any]) -> bool:
    """Whether ``function`` takes one argument (outputs), not (logits, targets, batch)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature: the old form
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    return len(positional) == 1 and not variadic


class MetricError(RuntimeError):
    """A user's metric raised; the original exception is the ``__cause__``.

    Attributes:
        metric: The metric's name.
        coalition: The row of the batch of coalitions it raised on.
    """

    def __init__(self, metric: str, coalition: int, error: BaseException) -> None:
        super().__init__(
            f"The metric you passed ({metric!r}) raised {type(error).__name__} on coalition "
            f"{coalition}: {error}"
        )
        self.metric = metric
        self.coalition = coalition


class MetricBoundsError(MetricError):
    """A metric returned a value outside the bounds it declares (``Metric.bounds``)."""

    def __init__(self, metric: str, message: str) -> None:
        RuntimeError.__init__(self, message)
        self.metric = metric
        self.coalition = -1


def from_user(
    function: UserMetric, name: str | None = None, *, bounds: tuple[float, float] | None = None
) -> Metric:
    """Wrap a callable ``(logits, targets, batch) -> float`` scoring one coalition.

    ``bounds``: ``(lo, hi)``, an interval that holds every value ``function`` returns, for
    confidence bounds with a valid range; default: not declared.

    The values are made on the CPU, where the user's floats are (the game moves them once per
    batch). An exception from ``function`` comes out as a :class:`MetricError` naming the
    coalition (its row in ``logits``), with the original as its ``__cause__``.
    """
    label = str(name or getattr(function, "__name__", type(function).__name__))
    bounds = check_bounds(bounds, "from_user")

    def batched(logits: torch.Tensor, targets: torch.Tensor, batch: Split) -> torch.Tensor:
        values = []
        for row, coalition in enumerate(logits):
            try:  # free when nothing raises
                value = function(coalition, targets, batch)
            except Exception as error:
                raise MetricError(label, row, error) from error
            values.append(_scalar(value, label))
        return torch.tensor(values, dtype=torch.float64)

    return Metric(label, batched, bounds=bounds)


def check_bounds(bounds: Any, owner: str) -> tuple[float, float] | None:
    """``bounds`` as ``(lo, hi)`` floats with lo < hi, both finite; or ``None``."""
    if bounds is None:
        return None
    try:
        if isinstance(bounds, str | bytes):
            raise TypeError
        lo, hi = (float(end) for end in bounds)
    except (TypeError, ValueError):
        raise ValueError(
            f"The 'bounds' parameter of {owner} must be a pair (lo, hi) of numbers. "
            f"Got {bounds!r} instead."
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(
            f"The 'bounds' parameter of {owner} must be finite with lo < hi. "
            f"Got {bounds!r} instead."
        )
    return lo, hi


def _scalar(value: Any, name: str) -> float:
    if isinstance(value, torch.Tensor | np.ndarray):
        if np.prod(value.shape, dtype=np.int64) != 1:
            raise ValueError(
                f"The metric {name!r} must return one number per call (a float or a tensor with "
                f"one element). Got {type(value).__name__} of shape {tuple(value.shape)} instead."
            )
        value = value.item()
    if isinstance(value, str | bytes):
        raise TypeError(f"The metric {name!r} must return a float. Got {type(value).__name__}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(
            f"The metric {name!r} must return a float. Got {type(value).__name__} instead."
        ) from None
    if not math.isfinite(number):
        raise ValueError(f"The metric {name!r} returned a non-finite value ({number!r}).")
    return number


_NAMED: dict[str, Callable[[], Metric]] = {
    "accuracy": accuracy,
    "neg_cross_entropy": neg_cross_entropy,
    "mean_group_recall": mean_group_recall,
    "worst_group_accuracy": worst_group_accuracy,
}
METRIC_NAMES = (*_NAMED, "recall:<class>")


def resolve_metric(metric: Any, owner: str = "NeuronGame") -> Metric:
    """A :class:`Metric` from a name, a ``Metric`` or a user callable."""
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        if metric in _NAMED:
            return _NAMED[metric]()
        if metric.startswith("recall:") and metric[len("recall:") :].isdigit():
            return class_recall(int(metric[len("recall:") :]))
        raise ValueError(
            f"The 'metric' parameter of {owner} must be one of {', '.join(METRIC_NAMES)} or a "
            f"callable (logits, targets, batch) -> float or (outputs) -> float. Got {metric!r} "
            "instead."
        )
    if callable(metric):
        return from_outputs(metric) if _takes_outputs_only(metric) else from_user(metric)
    raise TypeError(
        f"The 'metric' parameter of {owner} must be a metric name or a callable "
        f"(logits, targets, batch) -> float or (outputs) -> float. Got {type(metric).__name__} "
        "instead."
    )


def check_metric_values(
    values: torch.Tensor, n_coalitions: int, name: str, *, finite: bool = True
) -> torch.Tensor:
    """Values of a batched metric, checked: one finite number per coalition.

    ``finite=False`` checks the shape only, which needs no host-device synchronisation: a game
    on a GPU checks the values once per batch with :func:`check_finite_values` on the copy it
    brings to the host anyway.
    """
    if not isinstance(values, torch.Tensor) or values.shape != (n_coalitions,):
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(
            f"The metric {name!r} must return one value per coalition, shape ({n_coalitions},). "
            f"Got {shape} instead."
        )
    if finite and not torch.isfinite(values).all():
        raise ValueError(f"The metric {name!r} returned a non-finite value (NaN or inf).")
    return values


def check_declared_bounds(values: np.ndarray, metric: Metric) -> None:
    """Values outside the bounds a metric declares would void every interval that uses them."""
    if metric.bounds is None or not len(values):
        return
    lo, hi = metric.bounds
    low, high = float(values.min()), float(values.max())
    if low < lo or high > hi:
        raise MetricBoundsError(
            metric.name,
            f"The metric {metric.name!r} declares that its values lie in [{lo:g}, {hi:g}], but "
            f"it returned {low if low < lo else high!r}. Fix the metric or its 'bounds' (the "
            "confidence intervals rely on them)",
        )


def check_finite_values(values: np.ndarray, name: str) -> None:
    """Refuse a non-finite value among metric values already on the host."""
    if not np.isfinite(values).all():
        first = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(
            f"The metric {name!r} returned a non-finite value (NaN or inf): "
            f"{values[first]!r} for coalition {first}."
        )
