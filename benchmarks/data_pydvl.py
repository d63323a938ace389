"""Side by side with pyDVL 0.10.0 on one data-valuation game (issue 15).

The game: ``N_TRAIN`` training points of UCI Adult with 10% of their labels flipped and
``N_TEST`` test points (``benchmarks.data_noisy``'s draw for the seed), the learner
scikit-learn's L2 logistic regression (liblinear, C = 1, ``random_state=0``), the metric test
accuracy. Both libraries value the same points against the same test points with the same
learner; pyDVL's utility is made equal to ours, coalition by coalition, in two places where the
libraries' defaults differ (checked at the start, printed as "utility check"):

- the empty coalition: ours scores the best constant predictor (the majority label: 0.776
  here), pyDVL returns its scorer's ``default``; we pass that number as the default;
- a coalition whose points all have one label: ours scores the constant predictor of that label,
  pyDVL's liblinear fit fails and it returns the scorer's default; pyDVL gets a learner that
  predicts the constant in that case (``ConstantOnOneClass``).

One more row runs pyDVL's TMC with its defaults for both (scorer default 0, the plain learner),
to show what the utility definition alone changes.

Methods, each on the same budget for both (pyDVL's stopping rule ``MaxSamples``):

- permutation Shapley, no truncation (the same estimator on the same game: any disagreement
  beyond sampling noise would be a bug);
- TMC-Shapley, each library's own truncation: ours stops a walk once V of the points added is
  within 0.01 of V(N) for 5 consecutive steps (``tmc_shapley``, patience 5); pyDVL's
  ``TMCShapleyValuation`` default, ``RelativeTruncation(rtol=0.01, burn_in_fraction=0.4)``,
  stops at the first coalition within 1% of V(N) after 40% of the walk;
- Beta(16, 1) Shapley: ours with ``tail=1e-3`` (walks of length K, the marginals past K count 0),
  pyDVL's ``BetaShapleyValuation`` on a ``PermutationSampler`` with ``FixedTruncation`` at the
  same K (the same rule);
- Data Banzhaf by maximum sample reuse (``data_banzhaf``, ``MSRBanzhafValuation``);
- KNN-Shapley, K = 10, exact closed form (``knn_shapley``, ``KNNShapleyValuation``).

Reported per method: Spearman and Kendall rank correlation between the libraries' values; the
same Spearman between two of our runs with seeds 0 and 1 (the sampling noise at this budget);
the share of points whose two values differ by more than 1.96 combined standard errors; the
largest absolute difference; and per library the utility evaluations, the model fits, fits per
second, seconds, and the noisy-label detection F1 (flagging as many points as were flipped) and
AUC. Everything runs in this process on one thread (pyDVL's joblib backend left at one job).

Run: ``make data-pydvl`` (installs pyDVL into ``.venv/pydvl``, see docs/data.md, then runs this
with ``PYTHONPATH=.venv/pydvl``); ``--quick`` for a smaller budget.
"""

import argparse
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import kendalltau, spearmanr
from sklearn.linear_model import LogisticRegression

from benchmarks.data_noisy import N_TEST, sample
from neuronshapley.data import DataGame, beta_shapley, data_banzhaf, knn_shapley, tmc_shapley
from neuronshapley.data.detection import detection_auc, f1_at_count, flip_labels
from neuronshapley.data.semivalues import beta_size_weights

N_TRAIN, NOISE, SEED = 200, 0.1, 0
PERMUTATIONS = 40  # plain permutation Shapley: n fits per walk, the costly row
TMC_PERMUTATIONS = 100
BETA_PERMUTATIONS = 100
BETA_TAIL = 1e-3
# pyDVL's MSR result updater rebuilds the whole result for each of the n updates of a sample,
# O(n^2) per sample: 1,000 samples keep its row under a minute.
BANZHAF_SAMPLES = 1000
KNN_K = 10
Z = 1.96

# pyDVL clones the model for every coalition, so the tallies live outside the instances.
TALLY = {"evaluations": 0, "fits": 0}


class CountingLogisticRegression(LogisticRegression):
    """The benchmark's logistic regression, counting the fits that succeed (pyDVL's side)."""

    def fit(self, x: Any, y: Any, sample_weight: Any = None) -> "CountingLogisticRegression":
        super().fit(x, y, sample_weight)
        TALLY["fits"] += 1
        return self


class ConstantOnOneClass(CountingLogisticRegression):
    """On one label predicts that label, as ``DataGame`` scores such a coalition; else fits."""

    def fit(self, x: Any, y: Any, sample_weight: Any = None) -> "ConstantOnOneClass":
        labels = np.unique(y)
        self.constant_ = labels[0] if len(labels) == 1 else None
        if self.constant_ is None:
            super().fit(x, y, sample_weight)
        else:
            self.classes_ = labels
        return self

    def predict(self, x: Any) -> Any:
        if self.constant_ is not None:
            return np.full(len(x), self.constant_)
        return super().predict(x)


def learner(cls: type[LogisticRegression] = LogisticRegression) -> LogisticRegression:
    # liblinear shuffles with random_state; fixed so that both libraries fit the same models.
    return cls(C=1.0, solver="liblinear", random_state=0)


def import_pydvl() -> Any:
    try:
        with warnings.catch_warnings():
            # pyDeprecate 0.14 warns about its own old call style, used by pyDVL 0.10.
            warnings.simplefilter("ignore", FutureWarning)
            import pydvl.valuation as valuation
    except ImportError as error:
        raise SystemExit(
            f"pyDVL is not importable ({error}). Run `make data-pydvl`, which installs pyDVL "
            "0.10.0 into .venv/pydvl and runs this benchmark with PYTHONPATH=.venv/pydvl "
            "(docs/data.md says why it is kept out of .venv)."
        ) from None
    return valuation


@dataclass
class Side:
    """One library's run of one method."""

    values: np.ndarray
    stderr: np.ndarray | None
    evaluations: int
    fits: int
    seconds: float
    cpu_seconds: float  # this process's CPU time: less swayed than wall time by others' load


@dataclass
class Row:
    method: str
    budget: str
    ours: Side
    pydvl: Side
    ours_again: Side | None  # ours with seed + 1: the sampling noise


def by_index(result: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """pyDVL's values and standard errors in training-index order."""
    values, stderr = np.empty(n), np.empty(n)
    values[result.indices] = result.values
    stderr[result.indices] = result.stderr
    return values, stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=N_TRAIN)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--permutations", type=int, default=PERMUTATIONS)
    parser.add_argument("--tmc-permutations", type=int, default=TMC_PERMUTATIONS)
    parser.add_argument("--beta-permutations", type=int, default=BETA_PERMUTATIONS)
    parser.add_argument("--banzhaf-samples", type=int, default=BANZHAF_SAMPLES)
    parser.add_argument("--quick", action="store_true", help="100 points, a tenth of the budgets")
    args = parser.parse_args()
    if args.quick:
        args.n_train = 100
        args.permutations, args.tmc_permutations = 8, 10
        args.beta_permutations, args.banzhaf_samples = 10, 200
    torch.set_num_threads(1)
    started = time.perf_counter()
    load_start = os.getloadavg()[0]
    pv = import_pydvl()
    import pydvl
    from pydvl.valuation.types import Sample

    seed, n = args.seed, args.n_train
    x, y_clean, x_test, y_test = sample(seed, n)
    y, flipped = flip_labels(y_clean, NOISE, seed=seed)
    game = DataGame(x, y, x_test, y_test, fit=learner())
    v_empty = float(game.value(np.zeros((1, n), dtype=bool))[0])
    train, test = pv.Dataset(x, y), pv.Dataset(x_test, y_test)

    class CountingUtility(pv.ModelUtility):  # type: ignore[misc,name-defined]
        def __call__(self, sample: Any) -> float:
            TALLY["evaluations"] += 1
            return float(super().__call__(sample))

    def utility(matched: bool = True) -> Any:
        model = learner(ConstantOnOneClass if matched else CountingLogisticRegression)
        scorer = pv.SupervisedScorer("accuracy", test, default=v_empty if matched else 0.0)
        return CountingUtility(model, scorer, catch_errors=True)

    # The two utilities coalition by coalition: empty, one-label and ordinary coalitions.
    rng = np.random.default_rng(seed)
    majority, minority = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    coalitions = [np.array([], dtype=int), majority[:1], majority[:5], minority[:3], np.arange(n)]
    coalitions += [
        np.sort(rng.choice(n, size, replace=False)) for size in (2, 5, 20, n // 2, n - 1)
    ]
    matched, default = utility().with_dataset(train), utility(False).with_dataset(train)
    gaps, default_gaps = [], []
    for points in coalitions:
        mask = np.zeros((1, n), dtype=bool)
        mask[0, points] = True
        ours_value = float(game.value(mask)[0])
        sample_ = Sample(None, points)
        with warnings.catch_warnings():
            # pyDVL warns when the default utility's fit fails on one label (scored 0).
            warnings.simplefilter("ignore", RuntimeWarning)
            gaps.append(abs(ours_value - matched(sample_)))
            default_gaps.append(abs(ours_value - default(sample_)))

    def ours_side(run: Callable[[int], Any], run_seed: int) -> Side:
        fits_before = game.n_fits
        began, cpu_began = time.perf_counter(), time.process_time()
        result = run(run_seed)
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu_began
        return Side(
            result.values,
            result.stderr,
            result.n_evaluations,
            game.n_fits - fits_before,
            seconds,
            cpu,
        )

    def pydvl_side(make: Callable[[Any], Any]) -> Side:
        TALLY.update(evaluations=0, fits=0)
        began, cpu_began = time.perf_counter(), time.process_time()
        valuation = make(utility())
        valuation.fit(train)
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu_began
        values, stderr = by_index(valuation.result, n)
        return Side(values, stderr, TALLY["evaluations"], TALLY["fits"], seconds, cpu)

    def sampled(sampler: Any, samples: int) -> Any:
        return pv.MaxSamples(sampler, samples)

    rows: list[Row] = []

    # Permutation Shapley, no truncation.
    def ours_permutation(s: int) -> Any:
        return tmc_shapley(
            game, tolerance=None, n_permutations=args.permutations, seed=s, value_range=2.0
        )

    def pydvl_permutation(u: Any) -> Any:
        sampler = pv.PermutationSampler(seed=seed)
        return pv.ShapleyValuation(
            u, sampler, sampled(sampler, args.permutations), show_warnings=False
        )

    rows.append(
        Row(
            "permutation Shapley (no truncation)",
            f"{args.permutations} permutations",
            ours_side(ours_permutation, seed),
            pydvl_side(pydvl_permutation),
            ours_side(ours_permutation, seed + 1),
        )
    )

    # TMC, each library's own truncation rule.
    def ours_tmc(s: int) -> Any:
        return tmc_shapley(
            game, tolerance=0.01, n_permutations=args.tmc_permutations, seed=s, value_range=2.0
        )

    def pydvl_tmc(u: Any) -> Any:
        valuation = pv.TMCShapleyValuation(u, seed=seed, show_warnings=False)
        valuation.is_done = sampled(valuation.sampler, args.tmc_permutations)
        return valuation

    tmc_ours = ours_side(ours_tmc, seed)
    rows.append(
        Row(
            "TMC-Shapley (own truncation)",
            f"{args.tmc_permutations} permutations",
            tmc_ours,
            pydvl_side(pydvl_tmc),
            ours_side(ours_tmc, seed + 1),
        )
    )

    # pyDVL's TMC with its default utility (empty and one-label coalitions score 0).
    def pydvl_tmc_default(_: Any) -> Any:
        return pydvl_tmc(utility(False))

    rows.append(
        Row(
            "TMC-Shapley, pyDVL's default utility",
            f"{args.tmc_permutations} permutations",
            tmc_ours,
            pydvl_side(pydvl_tmc_default),
            None,
        )
    )

    # Beta(16, 1): the same walk length K for both.
    weights = beta_size_weights(n, 16.0, 1.0)
    remaining = np.concatenate([np.cumsum(weights[::-1])[::-1], [0.0]])
    walk = int(np.flatnonzero(remaining <= BETA_TAIL)[0])

    def ours_beta(s: int) -> Any:
        return beta_shapley(game, n_permutations=args.beta_permutations, seed=s, tail=BETA_TAIL)

    def pydvl_beta(u: Any) -> Any:
        # FixedTruncation stops once it has been called count >= fraction * n times, after the
        # prefix of that size: evaluated sizes 1 .. K, as ours.
        sampler = pv.PermutationSampler(
            truncation=pv.FixedTruncation(fraction=(walk - 0.5) / n), seed=seed
        )
        return pv.BetaShapleyValuation(
            u, sampler, sampled(sampler, args.beta_permutations), alpha=16, beta=1
        )

    rows.append(
        Row(
            "Beta(16,1) Shapley",
            f"{args.beta_permutations} permutations of {walk} steps",
            ours_side(ours_beta, seed),
            pydvl_side(pydvl_beta),
            ours_side(ours_beta, seed + 1),
        )
    )

    # Data Banzhaf, maximum sample reuse.
    def ours_banzhaf(s: int) -> Any:
        return data_banzhaf(game, n_samples=args.banzhaf_samples, seed=s)

    def pydvl_banzhaf(u: Any) -> Any:
        valuation = pv.MSRBanzhafValuation(u, pv.NoStopping(), seed=seed, show_warnings=False)
        valuation.is_done = sampled(valuation.sampler, args.banzhaf_samples)
        return valuation

    rows.append(
        Row(
            "Data Banzhaf (MSR)",
            f"{args.banzhaf_samples} samples",
            ours_side(ours_banzhaf, seed),
            pydvl_side(pydvl_banzhaf),
            ours_side(ours_banzhaf, seed + 1),
        )
    )

    # KNN-Shapley, closed form.
    began, cpu_began = time.perf_counter(), time.process_time()
    knn_ours = knn_shapley(x, y, x_test, y_test, k=KNN_K).values
    knn_ours_times = (time.perf_counter() - began, time.process_time() - cpu_began)
    from sklearn.neighbors import KNeighborsClassifier

    began, cpu_began = time.perf_counter(), time.process_time()
    knn_valuation = pv.KNNShapleyValuation(
        KNeighborsClassifier(n_neighbors=KNN_K), test, progress=False
    ).fit(train)
    knn_pydvl_times = (time.perf_counter() - began, time.process_time() - cpu_began)
    knn_pydvl, _ = by_index(knn_valuation.result, n)
    rows.append(
        Row(
            f"KNN-Shapley (K={KNN_K}, exact)",
            "closed form",
            Side(knn_ours, None, 0, 0, *knn_ours_times),
            Side(knn_pydvl, None, 0, 0, *knn_pydvl_times),
            None,
        )
    )

    n_flipped = len(flipped)
    print(
        f"Adult, {n} train ({n_flipped} labels flipped) / {N_TEST} test, seed {seed}; logistic "
        f"regression (liblinear, C=1); pyDVL {pydvl.__version__}, numpy {np.__version__}; "
        f"V(empty) = {v_empty:.3f}; utility check on {len(coalitions)} coalitions (empty, one "
        f"label, 2-200 points): largest |ours - pyDVL matched| = {max(gaps):.3g}, "
        f"|ours - pyDVL default| = {max(default_gaps):.3g}\n"
    )
    print(
        "| method | budget | Spearman | Kendall | Spearman ours seed 0 vs 1 | "
        "share apart > 1.96 se | max abs diff | sum of values ours / pyDVL |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        a, b = row.ours.values, row.pydvl.values
        rho = spearmanr(a, b).statistic
        tau = kendalltau(a, b).statistic
        noise = f"{spearmanr(a, row.ours_again.values).statistic:.3f}" if row.ours_again else "-"
        if row.ours.stderr is not None and row.pydvl.stderr is not None:
            se = np.sqrt(row.ours.stderr**2 + row.pydvl.stderr**2)
            apart = f"{np.mean(np.abs(a - b) > Z * se):.2f}"
        else:
            apart = "-"
        print(
            f"| {row.method} | {row.budget} | {rho:.3f} | {tau:.3f} | {noise} | {apart} | "
            f"{np.max(np.abs(a - b)):.2g} | {a.sum():.3f} / {b.sum():.3f} |"
        )
    print(
        "\n| method | evaluations ours / pyDVL | fits ours / pyDVL | fits per second ours / "
        "pyDVL | fits per CPU second ours / pyDVL | seconds ours / pyDVL | CPU seconds ours / "
        "pyDVL | F1 ours / pyDVL | AUC ours / pyDVL |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        o, p = row.ours, row.pydvl

        def rate(side: Side, seconds: float) -> str:
            return f"{side.fits / seconds:,.0f}" if side.fits else "-"

        print(
            f"| {row.method} | {o.evaluations:,} / {p.evaluations:,} | {o.fits:,} / {p.fits:,} | "
            f"{rate(o, o.seconds)} / {rate(p, p.seconds)} | "
            f"{rate(o, o.cpu_seconds)} / {rate(p, p.cpu_seconds)} | "
            f"{o.seconds:.1f} / {p.seconds:.1f} | {o.cpu_seconds:.1f} / {p.cpu_seconds:.1f} | "
            f"{f1_at_count(o.values, flipped):.2f} / {f1_at_count(p.values, flipped):.2f} | "
            f"{detection_auc(o.values, flipped):.2f} / {detection_auc(p.values, flipped):.2f} |"
        )
    # Where the default utility moves the values: pyDVL's two TMC runs walk the same
    # permutations (same seed), so their difference is the utility's doing.
    shift = rows[2].pydvl.values - rows[1].pydvl.values
    by_label = ", ".join(
        f"label {label} ({np.sum(y == label)} points) {shift[y == label].mean():+.4f}"
        for label in np.unique(y)
    )
    print(
        f"\npyDVL's TMC, default utility minus matched utility, mean per point: {by_label}; "
        f"the {n_flipped} flipped points {shift[flipped].mean():+.4f} (their noisy labels: "
        f"{np.bincount(y[flipped], minlength=2).tolist()} of labels 0 / 1)"
    )
    print(
        f"\nwall time {time.perf_counter() - started:.0f} s, CPU {time.process_time():.0f} s; "
        f"load average (1 min) at the start {load_start:.1f}, at the end {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
