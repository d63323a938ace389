"""TCAV: testing with concept activation vectors (Kim et al., ICML 2018; the chapter's §10.4).

A *concept* is given by examples (images of 0, 6, 8 and 9 for "closed loops"). At a chosen
layer l, a linear classifier separates the concept examples' activations from those of random
counter-examples; the normal of its boundary, pointing to the concept, is the concept
activation vector (CAV) v. For an example x of class k the directional derivative of the class
logit along v is ``S(x) = grad h_k(f_l(x)) . v``, and the TCAV score of the concept for class k
is the fraction of class-k examples with S(x) > 0.

A single CAV can point anywhere if the concept is not really encoded at l, so the test is done
``n_runs`` times, each against a fresh random counter-example set, and the scores are compared
with those of CAVs trained between two random sets (random-vs-random, a null distribution of
scores): a two-sided t-test of the two sets of ``n_runs`` scores, per class, as the paper does,
with a Bonferroni correction over the classes tested.

This is a small vectorised implementation, not Captum's ``TCAV``: Captum's writes every CAV to
disk under a save path and leaves the significance test to the user; here the activations and
gradients of all examples are computed once, the CAVs come from scikit-learn's
``LogisticRegression``, and the scores of all runs are one matrix product per class.
"""

import difflib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from neuronshapley._internal.optional import require
from neuronshapley._internal.validation import check_int
from neuronshapley.features.inputs import check_model, evaluation_mode

_OWNER = "tcav"
_CHUNK = 256


@dataclass(frozen=True)
class TCAVResult:
    """The TCAV scores of one concept at one layer, with their significance.

    Attributes:
        concept: The concept's name.
        layer: The layer's module name.
        classes: The classes scored, in order.
        scores: Mean TCAV score over the runs, per class.
        concept_scores: Score of each run's concept CAV, shape ``(n_runs, n_classes)``.
        random_scores: Score of each run's random-vs-random CAV, same shape.
        p_values: Two-sided t-test of ``concept_scores`` against ``random_scores``, per class.
        significant: ``p_values < alpha / n_classes`` (Bonferroni over the classes).
        cav_accuracy: Training accuracy of each run's concept classifier (how separable the
            concept is at this layer; near 0.5 means the CAV is noise).
        alpha: The family-wise significance level.
        seed: The seed of the random counter-example sets.
    """

    concept: str
    layer: str
    classes: tuple[int, ...]
    scores: NDArray[np.float64]
    concept_scores: NDArray[np.float64]
    random_scores: NDArray[np.float64]
    p_values: NDArray[np.float64]
    significant: NDArray[np.bool_]
    cav_accuracy: NDArray[np.float64]
    alpha: float
    seed: int

    def rows(self) -> list[dict[str, Any]]:
        """One row per class: score, its spread over runs, the random scores, p, significant."""
        return [
            {
                "class": k,
                "tcav_score": float(self.scores[j]),
                "score_std": float(self.concept_scores[:, j].std(ddof=1)),
                "random_score": float(self.random_scores[:, j].mean()),
                "p_value": float(self.p_values[j]),
                "significant": bool(self.significant[j]),
            }
            for j, k in enumerate(self.classes)
        ]


def tcav(
    model: nn.Module,
    layer: str,
    concept: Any,
    random_examples: Any,
    examples: Any,
    labels: Any,
    *,
    classes: Sequence[int] | None = None,
    concept_name: str = "concept",
    n_runs: int = 10,
    set_size: int | None = None,
    alpha: float = 0.05,
    seed: int = 0,
) -> TCAVResult:
    """TCAV scores of a concept for each class, with the random-CAV significance test.

    Args:
        model: The network, mapping a batch of inputs to ``(batch, n_classes)`` logits. Run in
            eval mode inside a context that restores every submodule's mode; the hook that
            reads the layer is removed afterwards; weights and ``.grad`` are left alone.
        layer: The name of the module whose output is the activation space (as in
            ``model.named_modules()``, e.g. ``"relu2"``).
        concept: Concept examples, a tensor ``(n_concept, *input_shape)``; at least 2.
        random_examples: The pool random counter-example sets are drawn from,
            ``(n_random, *input_shape)``; it needs ``2 * set_size`` examples (a concept-vs-random
            and a random-vs-random CAV per run use disjoint sets).
        examples: The inputs whose directional derivatives are taken, ``(n, *input_shape)``.
        labels: The class of each of ``examples``, ``n`` ints.
        classes: The classes scored. Default ``None``: every class in ``labels``, sorted.
        concept_name: The concept's name, for tables. Default ``"concept"``.
        n_runs: CAVs per kind (concept and random), each with a fresh random set. Default 10.
        set_size: Examples per random set. Default ``None``: ``n_concept``, at most half the
            pool.
        alpha: Family-wise significance level. Default 0.05.
        seed: Seeds the draws of the random sets. Default 0.

    Returns:
        A :class:`TCAVResult`.

    Raises:
        ValueError: an unknown layer (the closest names are listed), inputs of different shapes,
            labels that do not match the examples, a class without examples, too few concept
            or random examples, bad ``n_runs`` or ``alpha``.
    """
    check_model(model, _OWNER)
    module = _module(model, layer)
    concept_t = _batch(concept, "concept", min_rows=2)
    random_t = _batch(random_examples, "random_examples", min_rows=4)
    examples_t = _batch(examples, "examples", min_rows=1)
    shapes = {tuple(t.shape[1:]) for t in (concept_t, random_t, examples_t)}
    if len(shapes) != 1:
        raise ValueError(
            "The 'concept', 'random_examples' and 'examples' parameters of tcav must hold inputs "
            f"of one shape. Got {tuple(concept_t.shape[1:])}, {tuple(random_t.shape[1:])} and "
            f"{tuple(examples_t.shape[1:])} instead."
        )
    labels_a = np.asarray(labels)
    if labels_a.shape != (len(examples_t),) or not np.issubdtype(labels_a.dtype, np.integer):
        raise ValueError(
            f"The 'labels' parameter of tcav must be {len(examples_t)} ints, one per example. "
            f"Got an array of shape {labels_a.shape} and dtype {labels_a.dtype} instead."
        )
    wanted = sorted(set(labels_a.tolist())) if classes is None else [int(k) for k in classes]
    missing = [k for k in wanted if not (labels_a == k).any()]
    if missing or not wanted:
        raise ValueError(
            f"The 'classes' parameter of tcav must name classes that have examples in 'labels'. "
            f"Classes {missing} have none."
        )
    n_runs = int(check_int(n_runs, "n_runs", _OWNER, min_value=2))  # type: ignore[arg-type]
    check_int(seed, "seed", _OWNER, min_value=0)
    if not isinstance(alpha, float | int) or not 0 < alpha < 1:
        raise ValueError(f"The 'alpha' parameter of tcav must be in (0, 1). Got {alpha!r} instead.")
    largest = len(random_t) // 2
    size = min(len(concept_t), largest) if set_size is None else set_size
    check_int(size, "set_size", _OWNER, min_value=2, max_value=largest)
    linear_model = require("sklearn.linear_model", "zoo", "TCAV's linear classifier")
    threadpoolctl = require("threadpoolctl", "zoo", "TCAV's linear classifier")

    with evaluation_mode(model):
        concept_acts = _activations(model, module, concept_t)
        random_acts = _activations(model, module, random_t)
        gradients = {k: _gradients(model, module, examples_t[labels_a == k], k) for k in wanted}
    rng = np.random.default_rng(seed)
    concept_cavs, random_cavs, accuracy = [], [], []
    # Small fits: BLAS threads only contend (a fit took 1.3 s with them on 2 busy cores, 0.04 s
    # without).
    with threadpoolctl.threadpool_limits(1):
        for _ in range(n_runs):
            drawn = rng.permutation(len(random_acts))
            first, second = random_acts[drawn[:size]], random_acts[drawn[size : 2 * size]]
            cav, acc = _cav(linear_model, concept_acts, first)
            concept_cavs.append(cav)
            accuracy.append(acc)
            random_cavs.append(_cav(linear_model, first, second)[0])
    concept_v, random_v = np.stack(concept_cavs), np.stack(random_cavs)
    concept_scores = np.stack([(gradients[k] @ concept_v.T > 0).mean(0) for k in wanted], 1)
    random_scores = np.stack([(gradients[k] @ random_v.T > 0).mean(0) for k in wanted], 1)
    p_values = np.array(
        [_t_test(concept_scores[:, j], random_scores[:, j]) for j in range(len(wanted))]
    )
    return TCAVResult(
        concept=concept_name,
        layer=layer,
        classes=tuple(wanted),
        scores=concept_scores.mean(0),
        concept_scores=concept_scores,
        random_scores=random_scores,
        p_values=p_values,
        significant=p_values < alpha / len(wanted),
        cav_accuracy=np.array(accuracy),
        alpha=float(alpha),
        seed=seed,
    )


def _module(model: nn.Module, layer: Any) -> nn.Module:
    names = dict(model.named_modules())
    if not isinstance(layer, str) or layer not in names or layer == "":
        close = difflib.get_close_matches(str(layer), [n for n in names if n], n=3)
        hint = f" Closest: {', '.join(close)}." if close else ""
        raise ValueError(
            f"The 'layer' parameter of tcav must name a submodule of the model (as in "
            f"model.named_modules()). Got {layer!r} instead.{hint}"
        )
    return names[layer]


def _batch(value: Any, name: str, min_rows: int) -> torch.Tensor:
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if tensor.dim() < 2 or len(tensor) < min_rows:
        raise ValueError(
            f"The {name!r} parameter of tcav must be a batch of at least {min_rows} inputs "
            f"(shape (n, *input_shape)). Got shape {tuple(tensor.shape)} instead."
        )
    return tensor.detach().float()


def _activations(model: nn.Module, module: nn.Module, inputs: torch.Tensor) -> NDArray[Any]:
    """The layer's outputs on ``inputs``, flattened: ``(n, d)`` float64."""
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    try:
        with torch.no_grad():
            for start in range(0, len(inputs), _CHUNK):
                model(inputs[start : start + _CHUNK])
    finally:
        handle.remove()
    return torch.cat([a.reshape(len(a), -1) for a in seen]).double().cpu().numpy()


def _gradients(
    model: nn.Module, module: nn.Module, inputs: torch.Tensor, target: int
) -> NDArray[Any]:
    """d logit_target / d (layer output) for each input, flattened: ``(n, d)`` float64."""
    leaves: list[torch.Tensor] = []

    def replace(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> torch.Tensor:
        # The layer's output becomes a leaf, so the gradient is taken with respect to it
        # alone, whether or not the weights require gradients, and nothing reaches .grad.
        leaf = out.detach().requires_grad_(True)
        leaves.append(leaf)
        return leaf

    rows = []
    handle = module.register_forward_hook(replace)
    try:
        with torch.enable_grad():
            for start in range(0, len(inputs), _CHUNK):
                leaves.clear()
                logits = model(inputs[start : start + _CHUNK])
                # Examples do not interact in eval mode: the gradient of the sum is per example.
                (grad,) = torch.autograd.grad(logits[:, target].sum(), leaves[0])
                rows.append(grad.reshape(len(grad), -1))
    finally:
        handle.remove()
    return torch.cat(rows).double().cpu().numpy()


def _cav(linear_model: Any, positive: NDArray[Any], negative: NDArray[Any]) -> tuple[Any, float]:
    """The unit normal of a logistic regression separating ``positive`` from ``negative``."""
    features = np.concatenate([positive, negative])
    target = np.r_[np.ones(len(positive)), np.zeros(len(negative))]
    # One scalar scale keeps the solver well conditioned and the direction unchanged.
    scale = float(features.std()) or 1.0
    classifier = linear_model.LogisticRegression(max_iter=2000)
    with warnings.catch_warnings():
        # A separable set has no finite optimum: lbfgs stops at max_iter with the direction
        # already found, which is all a CAV needs.
        warnings.filterwarnings("ignore", message="lbfgs failed to converge")
        classifier.fit(features / scale, target)
    weights = classifier.coef_[0]
    accuracy = float(classifier.score(features / scale, target))
    return weights / (np.linalg.norm(weights) or 1.0), accuracy


def _t_test(a: NDArray[Any], b: NDArray[Any]) -> float:
    """Two-sided p of Student's t-test (equal variances) of two samples of equal size."""
    stats = require("scipy.stats", "zoo", "TCAV's significance test")
    n = len(a)
    pooled = (a.var(ddof=1) + b.var(ddof=1)) / 2
    difference = float(a.mean() - b.mean())
    if pooled <= 0:  # both constant: certain if they differ, no evidence if they do not
        return 0.0 if difference != 0 else 1.0
    t = difference / np.sqrt(pooled * 2 / n)
    return float(2 * stats.t.sf(abs(t), 2 * n - 2))
