"""The figures of the paper's studies, drawn headless from small studies of closed-form games.

The studies themselves are tested in tests/applications; here only what is drawn is checked, so
every study is made from additive games (or by hand) without a model to train.
"""

from collections.abc import Callable

import numpy as np
import pytest
from matplotlib.figure import Figure

import neuronshapley as ns
from neuronshapley.applications.adversarial import AdversarialStudy
from neuronshapley.applications.classes import ClassStudy, ClassUnits
from neuronshapley.applications.critical import CriticalStudy, critical_units_study
from neuronshapley.applications.dropout import DropoutStudy, dropout_study
from neuronshapley.applications.fairness import FairnessStudy, GroupReport
from neuronshapley.applications.removal import removal_curve
from neuronshapley.games.closed_form import AdditiveGame
from neuronshapley.report.studies import (
    plot_adversarial,
    plot_class_curves,
    plot_class_depth,
    plot_critical,
    plot_fairness,
    plot_reverse,
    plot_reverse_removal,
    plot_top_removal,
    plot_value_histograms,
)

# Two "models" of 12 units each. A is spread out with one dominant unit; B is flatter.
A = [0.5, 0.2, 0.1, 0.1, 0.05, 0.05, 0.02, 0.02, 0.01, 0.01, 0.005, -0.06]
B = [0.3, 0.2, 0.1, 0.1, 0.1, 0.1, 0.04, 0.04, 0.03, 0.01, -0.01, -0.02]


def valued(weights: list[float]) -> tuple[AdditiveGame, ns.ShapleyResult]:
    game = AdditiveGame(weights)
    return game, ns.exact_shapley(game)


# -- critical units -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def critical() -> CriticalStudy:
    game, result = valued(A)
    # leave-one-out needs only the game's value function: any game will do.
    return critical_units_study(
        game,  # type: ignore[arg-type]
        result,
        k=4,
        baselines=("leave_one_out",),
        n_random=3,
        seed=0,
        reverse_step=3,
    )


def test_critical_plots(critical: CriticalStudy) -> None:
    figure = plot_critical(critical)
    assert isinstance(figure, Figure)
    (axes,) = figure.axes
    labels = [str(line.get_label()) for line in axes.get_lines()]
    assert labels[: len(critical.curves)] == list(critical.curves)
    assert any(label.startswith("random") for label in labels)
    reverse = plot_reverse(critical)
    assert isinstance(reverse, Figure)
    (axes,) = reverse.axes
    assert axes.get_lines()[0].get_label() == "Shapley value, lowest first"


# -- class-specific units -------------------------------------------------------------------------


def test_class_plots() -> None:
    game, result = valued(A)
    layers = ["first", "second"]
    per_class = [
        ClassUnits(
            target_class=label,
            result=result,
            top=list(game.player_names[label : label + 3]),
            overlap_with_global=1,
            recall_before=0.9,
            recall_after=0.2,
            accuracy_before=0.8,
            accuracy_after=0.7,
            curve=removal_curve(game, game.player_names[label : label + 3], 3, n_random=2),
            mean_depth=float(label),
        )
        for label in (0, 1)
    ]
    study = ClassStudy(per_class, list(game.player_names[:3]), 0.5, layers)
    (axes,) = plot_class_curves(study).axes
    assert len(axes.get_lines()) == 4  # per class: its top units, random units
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["class 0", "class 1"]
    (axes,) = plot_class_depth(study).axes
    assert [patch.get_height() for patch in axes.patches] == [0.0, 1.0]
    assert [label.get_text() for label in axes.get_yticklabels()] == layers


# -- fairness -------------------------------------------------------------------------------------


def test_fairness_plot() -> None:
    groups = ("a", "b", "c")
    reports = [
        GroupReport(
            n_removed=removed,
            removed=tuple(f"u{i}" for i in range(removed)),
            group_names=groups,
            accuracy=np.full(3, 0.8),
            recall=np.array([0.5, 0.6, 0.7]) + 0.1 * removed,
            overall_accuracy=0.8 - 0.01 * removed,
            mean_group_recall=0.6 + 0.1 * removed,
            recall_gap=0.2,
        )
        for removed in (0, 1, 2)
    ]
    (axes,) = plot_fairness(FairnessStudy(order=["u0", "u1"], reports=reports)).axes
    lines = axes.get_lines()
    assert len(lines) == 5  # one per group, the mean group recall, the overall accuracy
    assert [str(line.get_label()) for line in lines[:3]] == ["recall a", "recall b", "recall c"]
    assert list(lines[0].get_xdata()) == [0, 1, 2]


# -- adversarial units ----------------------------------------------------------------------------


def test_adversarial_plot() -> None:
    game, result = valued(A)
    counts = np.array([0, 1, 2, 3], dtype=np.int64)
    falling = np.array([0.9, 0.5, 0.3, 0.2])
    study = AdversarialStudy(
        result=result,
        order=list(game.player_names),
        counts=counts,
        success_values_half=falling,
        success_held_out=falling + 0.05,
        clean_accuracy=np.full(4, 0.8),
        adversarial_true_label_accuracy=1 - falling,
        transfer_success={"other cnn": falling / 2},
        whitebox_removed=3,
        whitebox_success=0.4,
        rank_correlation=None,
        epsilon=0.5,
        steps=5,
        step_size=0.125,
        bounds=None,
        seed=0,
        n_values_examples=30,
        n_held_out_examples=30,
    )
    figure = plot_adversarial(study)
    assert isinstance(figure, Figure)
    (ax,) = figure.axes
    # values half, held-out, one transfer, clean accuracy, true-label accuracy, white-box.
    assert len(ax.lines) == 6
    assert list(ax.lines[0].get_xdata()) == list(study.counts)


# -- the dropout effect ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dropout() -> DropoutStudy:
    return dropout_study({"A": valued(A), "B": valued(B)}, k=10, n_random=3, seed=0)


Plot = Callable[[DropoutStudy], Figure]


@pytest.mark.parametrize(
    ("plot", "n_lines", "n_patches", "n_bands"),
    [
        (plot_value_histograms, 2, 2, 0),  # a histogram per model, +-near_zero lines
        (plot_top_removal, 4, 0, 2),  # per model: ranked, random mean, random band
        (plot_reverse_removal, 6, 0, 2),  # ... and a line at units_before_drop
    ],
)
def test_dropout_plots(
    dropout: DropoutStudy, plot: Plot, n_lines: int, n_patches: int, n_bands: int
) -> None:
    figure = plot(dropout)
    assert isinstance(figure, Figure)
    (axes,) = figure.axes
    assert len(axes.get_lines()) == n_lines
    assert len(axes.patches) == n_patches
    assert len(axes.collections) == n_bands
    legend = axes.get_legend()
    assert legend is not None
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels[0].startswith("A")
    assert any(label.startswith("B") for label in labels)


def test_reverse_plot_marks_units_before_drop(dropout: DropoutStudy) -> None:
    lines = plot_reverse_removal(dropout).axes[0].get_lines()
    marks = [float(np.asarray(line.get_xdata())[0]) for line in lines[-2:]]
    assert marks == [dropout.models["A"].units_before_drop, dropout.models["B"].units_before_drop]


def test_histograms_check_their_bins(dropout: DropoutStudy) -> None:
    with pytest.raises(ValueError, match="'bins' parameter of plot_value_histograms"):
        plot_value_histograms(dropout, bins=0)


def test_interaction_figures() -> None:
    from neuronshapley.applications.interactions import greedy_removal_order, values_after_removal
    from neuronshapley.estimators.interactions import (
        exact_interactions,
        permutation_interactions,
    )
    from neuronshapley.report.interactions import plot_interaction_matrix, plot_removal_orders

    game = ns.games.SOUM(7, n_basis=12, seed=1, max_order=2)
    sampled = permutation_interactions(game, n_permutations=50, seed=0)
    fig = plot_interaction_matrix(sampled)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [label.get_text() for label in ax.get_yticklabels()] == game.player_names
    assert ax.images[0].get_clim()[0] == -ax.images[0].get_clim()[1]  # symmetric around 0
    assert "permutation_interactions" in ax.get_title()
    exact = plot_interaction_matrix(exact_interactions(game), title="exact")
    assert exact.axes[0].get_title() == "exact"
    greedy = greedy_removal_order(game, 3)
    shapley = values_after_removal(game, ["p0", "p1", "p2"], "index order")
    fig = plot_removal_orders([greedy, shapley], metric="accuracy")
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["greedy on the game", "index order"]
    np.testing.assert_allclose(lines[0].get_ydata(), greedy.values)
