"""Figures of the paper's studies (Ghorbani & Zou 2020), drawn from what applications computes.

The studies are computed by :mod:`neuronshapley.applications`; this module only draws them. One
function per figure, each taking a study and returning a ``matplotlib.figure.Figure`` with one
axes (object API, no pyplot; matplotlib, the ``plot`` extra, is imported when a figure is drawn):

- critical units (section 4.1, figure 2a): :func:`plot_critical`, :func:`plot_reverse`;
- class-specific units (section 4.2): :func:`plot_class_curves`, :func:`plot_class_depth`;
- fairness (section 4.3): :func:`plot_fairness`;
- adversarial units (section 4.4): :func:`plot_adversarial`;
- the dropout effect (figure 4): :func:`plot_value_histograms`, :func:`plot_top_removal`,
  :func:`plot_reverse_removal`;
- a transformer's attention heads (issue 13): :func:`plot_head_values`,
  :func:`plot_head_removal`, :func:`plot_values_against_attention`.

What a single unit sees (figure 1) is drawn by :mod:`neuronshapley.report.units`.
"""

from typing import TYPE_CHECKING, Any

import numpy as np

from neuronshapley._internal.validation import check_int
from neuronshapley.applications.removal import RemovalCurve
from neuronshapley.report.plots import FIGSIZE, _figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    # Several studies import torch: only their types are needed here.
    from neuronshapley.applications.adversarial import AdversarialStudy
    from neuronshapley.applications.classes import ClassStudy
    from neuronshapley.applications.critical import CriticalStudy
    from neuronshapley.applications.dropout import DropoutStudy
    from neuronshapley.applications.fairness import FairnessStudy
    from neuronshapley.applications.heads import HeadsStudy


def figure_axes() -> tuple["Figure", Any]:
    """A 6.4 x 4 inch figure with one axes, the size of every study plot."""
    return _figure(FIGSIZE)


# -- critical units (section 4.1) ------------------------------------------------------------------


def plot_critical(study: "CriticalStudy") -> "Figure":
    """The metric as the top units of each ranking are removed, with the random band.

    Args:
        study: A :func:`~neuronshapley.applications.critical.critical_units_study`.

    Returns:
        A figure with one axes: one line per ranking (labelled by its name), the random mean
        (dashed) and a mean +- sd band.
    """
    fig, ax = figure_axes()
    first = next(iter(study.curves.values()))
    counts = first.counts
    for name, curve in study.curves.items():
        style = {"linewidth": 2.2, "color": "tab:red"} if name == "shapley" else {}
        ax.plot(counts, curve.ranked, marker=".", label=name, **style)
    _random_band(ax, first)
    ax.set_title(f"{first.metric} after removing each ranking's top units")
    ax.set_xlabel("Units removed")
    ax.set_ylabel(first.metric)
    ax.legend(fontsize="small")
    return fig


def plot_reverse(study: "CriticalStudy") -> "Figure":
    """The metric as the lowest-valued units are removed first, with the random band.

    Args:
        study: A :func:`~neuronshapley.applications.critical.critical_units_study`.

    Returns:
        A figure with one axes: the reverse curve, random units, the tolerated level
        ``V(N) - drop`` and a marker at ``units_before_drop``.
    """
    fig, ax = figure_axes()
    curve = study.reverse
    ax.plot(curve.counts, curve.ranked, marker=".", color="tab:blue", label=curve.ranking)
    _random_band(ax, curve)
    ax.axhline(
        study.full_value - study.drop,
        color="black",
        linestyle=":",
        linewidth=1.0,
        label=f"full {curve.metric} - {study.drop:g}",
    )
    ax.axvline(
        study.units_before_drop,
        color="tab:green",
        linestyle="--",
        linewidth=1.0,
        label=f"{study.units_before_drop} units removed",
    )
    ax.set_title(f"{curve.metric} as the lowest-valued units are removed")
    ax.set_xlabel("Units removed")
    ax.set_ylabel(curve.metric)
    ax.legend(fontsize="small")
    return fig


def _random_band(ax: Any, curve: RemovalCurve) -> None:
    mean, std = curve.random_mean, curve.random_std
    label = f"random (mean ± sd, {curve.n_random} draws)"
    ax.plot(curve.counts, mean, color="tab:gray", linestyle="--", label=label)
    ax.fill_between(curve.counts, mean - std, mean + std, color="tab:gray", alpha=0.25, lw=0)


# -- class-specific units (section 4.2) ------------------------------------------------------------


def plot_class_curves(study: "ClassStudy") -> "Figure":
    """Each class's recall as its own top units are removed, against random units.

    Args:
        study: A :func:`~neuronshapley.applications.classes.class_specific_units` study.

    Returns:
        A figure with one axes: a solid line per class (its top units removed) and a dashed
        line of the same colour (as many random units, mean over the draws).
    """
    fig, ax = figure_axes()
    for i, entry in enumerate(study.per_class):
        colour = f"C{i % 10}"
        curve = entry.curve
        ax.plot(
            curve.counts,
            curve.ranked,
            marker=".",
            color=colour,
            label=f"class {entry.target_class}",
        )
        ax.plot(curve.counts, curve.random_mean, linestyle="--", color=colour, alpha=0.6)
    ax.set_title("Recall of each class as its top units are removed (dashed: random units)")
    ax.set_xlabel("Units removed")
    ax.set_ylabel("recall of the class")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize="small", ncol=2)
    return fig


def plot_class_depth(study: "ClassStudy") -> "Figure":
    """Where the class-specific top units sit: the mean layer position of each class's top units.

    Args:
        study: A :func:`~neuronshapley.applications.classes.class_specific_units` study.

    Returns:
        A figure with one bar per class and a horizontal line at the global top units' mean
        position (0 = the first layer).
    """
    fig, ax = _figure((FIGSIZE[0], 3.6))
    labels = [str(entry.target_class) for entry in study.per_class]
    ax.bar(labels, [entry.mean_depth for entry in study.per_class], color="tab:blue")
    ax.axhline(
        study.global_mean_depth,
        color="tab:red",
        linestyle="--",
        label=f"global top {len(study.global_top)}",
    )
    ax.set_yticks(range(len(study.layer_names)), study.layer_names)
    ax.set_ylim(-0.3, len(study.layer_names) - 0.7)
    ax.set_title("Mean layer of each class's top units")
    ax.set_xlabel("class")
    ax.legend(fontsize="small")
    return fig


# -- fairness (section 4.3) ------------------------------------------------------------------------


def plot_fairness(study: "FairnessStudy") -> "Figure":
    """Each group's recall and the overall accuracy as the most negative units are removed.

    Args:
        study: A :func:`~neuronshapley.applications.fairness.fairness_study`.

    Returns:
        A figure with one axes: a line per group's recall, the mean group recall (thick) and
        the overall accuracy (black, dashed), against the number of units removed.
    """
    fig, ax = figure_axes()
    removed = [report.n_removed for report in study.reports]
    recalls = np.array([report.recall for report in study.reports])
    for g, name in enumerate(study.reports[0].group_names):
        ax.plot(removed, recalls[:, g], marker=".", label=f"recall {name}")
    ax.plot(
        removed,
        [report.mean_group_recall for report in study.reports],
        linewidth=2.5,
        color="tab:red",
        label="mean group recall",
    )
    ax.plot(
        removed,
        [report.overall_accuracy for report in study.reports],
        linestyle="--",
        color="black",
        label="overall accuracy",
    )
    ax.set_title("Held-out data as the most negative units are removed")
    ax.set_xlabel("Units removed (most negative value first)")
    ax.set_ylabel("recall / accuracy")
    ax.legend(fontsize="small")
    return fig


# -- adversarial units (section 4.4) ---------------------------------------------------------------


def plot_adversarial(study: "AdversarialStudy") -> "Figure":
    """The attacks' success and the clean accuracy as the top adversarial units are removed.

    Args:
        study: An :func:`~neuronshapley.applications.adversarial.adversarial_study`.

    Returns:
        A figure with one axes: the original attack (values half, red), the same attack on
        held-out examples, each transfer attack (dashed), the clean accuracy (black), the
        adversarial examples' true-label accuracy (dotted) and the white-box success on the
        repaired model (a star).
    """
    fig, ax = figure_axes()
    counts = study.counts
    ax.plot(
        counts,
        study.success_values_half,
        marker=".",
        linewidth=2.2,
        color="tab:red",
        label="attack success (values half)",
    )
    ax.plot(
        counts, study.success_held_out, marker=".", color="tab:orange", label="attack (held-out)"
    )
    # Colours the fixed curves do not use, so that a transfer curve is never mistaken for one.
    colours = ("tab:green", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
    for number, (name, success) in enumerate(study.transfer_success.items()):
        ax.plot(
            counts,
            success,
            marker=".",
            linestyle="--",
            color=colours[number % len(colours)],
            label=f"transfer from {name}",
        )
    ax.plot(counts, study.clean_accuracy, marker=".", color="black", label="clean accuracy")
    ax.plot(
        counts,
        study.adversarial_true_label_accuracy,
        marker=".",
        linestyle=":",
        color="tab:blue",
        label="adversarial true-label accuracy",
    )
    ax.plot(
        [study.whitebox_removed],
        [study.whitebox_success],
        marker="*",
        markersize=12,
        linestyle="none",
        color="tab:purple",
        label="white-box attack on the repaired model",
    )
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Removing the top adversarial units (epsilon={study.epsilon:g})")
    ax.set_xlabel("Units removed")
    ax.set_ylabel("Rate")
    ax.legend(fontsize="small")
    return fig


# -- the dropout effect (figure 4) -----------------------------------------------------------------


def plot_value_histograms(study: "DropoutStudy", *, bins: int = 30) -> "Figure":
    """Overlaid histograms of every model's values, on shared bins (figure 4a).

    Args:
        study: A :func:`~neuronshapley.applications.dropout.dropout_study`.
        bins: Number of bins spanning all models' values. Default 30.

    Returns:
        A figure with one axes: one filled histogram per model (labelled by its name) and two
        dotted lines at ``-near_zero`` and ``+near_zero``.
    """
    check_int(bins, "bins", "plot_value_histograms", min_value=1)
    fig, ax = figure_axes()
    everything = np.concatenate([model.values for model in study.models.values()])
    edges = np.histogram_bin_edges(everything, bins=bins)
    for i, (name, model) in enumerate(study.models.items()):
        ax.hist(
            model.values,
            bins=edges,
            histtype="stepfilled",
            alpha=0.45,
            color=f"C{i}",
            edgecolor=f"C{i}",
            label=f"{name} (sd {model.value_sd:.3g})",
        )
    for side in (-1, 1):
        ax.axvline(side * study.near_zero, color="black", linestyle=":", linewidth=1.0)
    ax.set_title("Shapley values of the units")
    ax.set_xlabel("Shapley value")
    ax.set_ylabel("Units")
    ax.legend(fontsize="small")
    return fig


def plot_top_removal(study: "DropoutStudy") -> "Figure":
    """The metric as each model's highest-valued units are removed, with random bands (4b).

    Args:
        study: A :func:`~neuronshapley.applications.dropout.dropout_study`.

    Returns:
        A figure with one axes: per model, the ranked curve (solid, labelled by the model's
        name) and its random mean (dashed) with a mean +- sd band.
    """
    return _plot_curves(
        study,
        {name: model.top for name, model in study.models.items()},
        "after removing the highest-valued units",
    )


def plot_reverse_removal(study: "DropoutStudy") -> "Figure":
    """The metric as each model's lowest-valued units are removed first (figure 4c).

    Args:
        study: A :func:`~neuronshapley.applications.dropout.dropout_study`.

    Returns:
        A figure with one axes: per model, the reverse curve (solid, labelled by the model's
        name), its random mean (dashed) with a mean +- sd band, and a vertical dotted line at
        its ``units_before_drop``.
    """
    fig = _plot_curves(
        study,
        {name: model.reverse for name, model in study.models.items()},
        "as the lowest-valued units are removed",
    )
    ax = fig.axes[0]
    for i, model in enumerate(study.models.values()):
        ax.axvline(model.units_before_drop, color=f"C{i}", linestyle=":", linewidth=1.0)
    return fig


def _plot_curves(study: "DropoutStudy", curves: dict[str, RemovalCurve], what: str) -> "Figure":
    fig, ax = figure_axes()
    metric = next(iter(curves.values())).metric
    for i, (name, curve) in enumerate(curves.items()):
        color = f"C{i}"
        ax.plot(curve.counts, curve.ranked, marker=".", color=color, label=name)
        mean, std = curve.random_mean, curve.random_std
        ax.plot(
            curve.counts,
            mean,
            color=color,
            linestyle="--",
            linewidth=1.0,
            label=f"{name}: random units ({curve.n_random} draws)",
        )
        ax.fill_between(curve.counts, mean - std, mean + std, color=color, alpha=0.15, lw=0)
    ax.set_title(f"{metric} {what}")
    ax.set_xlabel("Units removed")
    ax.set_ylabel(metric)
    ax.legend(fontsize="small")
    return fig


# -- attention heads (issue 13) --------------------------------------------------------------------


def plot_head_values(study: "HeadsStudy") -> "Figure":
    """Every head's value on a grid: one row per attention block, one column per head.

    Args:
        study: A :func:`~neuronshapley.applications.heads.heads_study`.

    Returns:
        A figure with one axes: the values coloured around 0 (red positive, blue negative),
        the top heads marked "+" and the most negative "-".
    """
    blocks = list(dict.fromkeys(study.blocks))
    heads = [int(name.rpartition(":h")[2]) for name in study.names]
    grid = np.full((len(blocks), max(heads) + 1), np.nan)
    position = {}
    for name, block, head, value in zip(
        study.names, study.blocks, heads, study.values, strict=True
    ):
        grid[blocks.index(block), head] = value
        position[name] = (blocks.index(block), head)
    fig, ax = figure_axes()
    scale = float(np.nanmax(np.abs(grid))) or 1.0
    image = ax.imshow(grid, cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto")
    fig.colorbar(image, ax=ax, label="Shapley value")
    for names, mark in ((study.top, "+"), (study.most_negative, "-")):
        for name in names:
            row, column = position[name]
            ax.text(column, row, mark, ha="center", va="center", fontsize=11, weight="bold")
    ax.set_xticks(range(grid.shape[1]))
    ax.set_yticks(range(len(blocks)), [_short_block(block) for block in blocks])
    ax.set_xlabel("Head")
    ax.set_title(f"Head values on {study.valuing} (+ top {study.k}, - {study.k} most negative)")
    return fig


def plot_head_removal(study: "HeadsStudy") -> "Figure":
    """The valuing metric as heads are removed: highest first, lowest first, and random.

    Args:
        study: A :func:`~neuronshapley.applications.heads.heads_study`.

    Returns:
        A figure with one axes: the two ranked curves and the random mean with a +- sd band.
    """
    fig, ax = figure_axes()
    counts = study.counts
    ax.plot(
        counts, study.curves["highest first"], marker=".", color="tab:red", label="highest first"
    )
    ax.plot(
        counts, study.curves["lowest first"], marker=".", color="tab:blue", label="lowest first"
    )
    mean, std = study.curves["random (mean)"], study.curves["random (sd)"]
    label = f"random (mean ± sd, {study.n_random} draws)"
    ax.plot(counts, mean, color="tab:gray", linestyle="--", label=label)
    ax.fill_between(counts, mean - std, mean + std, color="tab:gray", alpha=0.25, lw=0)
    ax.set_title(f"Spearman on {study.valuing} as heads are removed")
    ax.set_xlabel("Heads removed")
    ax.set_ylabel(f"Spearman ({study.valuing})")
    ax.legend(fontsize="small")
    return fig


def plot_values_against_attention(study: "HeadsStudy") -> "Figure":
    """Each head's Shapley value against its mean attention entropy.

    Args:
        study: A :func:`~neuronshapley.applications.heads.heads_study`.

    Returns:
        A figure with one axes: one point per head, coloured by block, with the Spearman rank
        correlation in the title.
    """
    fig, ax = figure_axes()
    blocks = list(dict.fromkeys(study.blocks))
    for i, block in enumerate(blocks):
        mine = np.array([b == block for b in study.blocks])
        ax.scatter(
            study.patterns.entropy[mine],
            study.values[mine],
            s=18,
            color=f"C{i}",
            label=_short_block(block),
        )
    ax.axhline(0.0, color="black", linewidth=0.6)
    rho = study.rank_correlation["entropy"]
    shown = "undefined" if rho is None else f"{rho:+.2f}"
    ax.set_title(f"Value against attention entropy (Spearman {shown})")
    ax.set_xlabel("Mean attention entropy (nats)")
    ax.set_ylabel("Shapley value")
    ax.legend(fontsize="x-small", ncols=2)
    return fig


def _short_block(block: str) -> str:
    """``encoder.layer.3.attention`` -> ``layer 3``; other names unchanged."""
    parts = block.split(".")
    numbers = [part for part in parts if part.isdigit()]
    return f"layer {numbers[-1]}" if numbers else block
