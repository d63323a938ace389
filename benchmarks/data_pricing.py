"""Pricing data sources on UCI Adult: payments, efficiency, and §10.5's caveat (issue 15).

The chapter's Example 10.2.1 pays each annotator its Shapley value in the game "test metric of
a model fitted on the annotators' data"; §10.5 warns that a payment averages away synergy. This
prints, as markdown tables (copied to docs/data.md):

1. Annotators: six annotators label disjoint shares of 100 Adult training points each, with
   label-flip rates 0, 0, 10, 20, 30 and 100% (the last one adversarial: every label flipped).
   Payments, standalone and leave-one-out values, and the efficiency check, for seed 0 and as
   mean +- sd over the seeds.
2. A redundant copy: annotator 1's points sold again under another name.
3. Synergy: a source holding only ``<=50K`` points and one holding only ``>50K`` points (each
   alone fits the constant predictor, worth nothing), first on their own, then in a market with
   two ordinary sources; their interaction index, payments against standalone values, and the
   pair a buyer of two sources would pick by standalone value, by payment and by V.
4. The chapter's Problem 10.5.1 (a table of measured values, no data) through the same code.

Learner: scikit-learn's L2 logistic regression (liblinear, C = 1, tol 1e-8, random_state 0). Metric:
balanced accuracy (the mean recall of the two classes) on 2,000 test points: Adult is 76% ``<=50K``,
so plain accuracy pays the constant predictor 0.76, and a one-class source would be worth
+0 or -0.5 depending on its class; balanced accuracy puts every constant predictor at 0.5, so
"worth nothing alone" reads as 0. Section 3 also shows plain accuracy. Every payment is exact
(all coalitions enumerated, each model fitted once).

Run: ``.venv/bin/python -m benchmarks.data_pricing`` (``--seeds 0`` for a quick look).
"""

import argparse
import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

from neuronshapley.data import PricingResult, price_sources
from neuronshapley.data.detection import flip_labels
from neuronshapley.data.game import accuracy
from neuronshapley.data.pricing import price_game
from neuronshapley.games.closed_form import dataset_pricing_game
from neuronshapley.zoo.datasets import adult

N_PER_ANNOTATOR, N_TEST = 100, 2000
FLIP_RATES = (0.0, 0.0, 0.1, 0.2, 0.3, 1.0)
N_ONE_CLASS, N_MIXED = 150, 100
Metric = Callable[[Any, Any], float]


def learner() -> LogisticRegression:
    # A tight tolerance: the same points in another row order (a copy) give the same fit.
    return LogisticRegression(C=1.0, solver="liblinear", tol=1e-8, random_state=0)


class Adult:
    """The standardised Adult arrays, loaded once."""

    def __init__(self) -> None:
        bundle = adult()
        self.x = bundle.train.x.numpy().astype(np.float64)
        self.y = bundle.train.y.numpy()
        self.x_test = bundle.test.x.numpy().astype(np.float64)
        self.y_test = bundle.test.y.numpy()

    def split(self, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(a random order of the training rows, test rows) for a seed."""
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(self.x))
        test = rng.choice(len(self.x_test), size=N_TEST, replace=False)
        return order, test, self.y_test[test]


def annotator_data(
    data: Adult, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, noisy y, source names, test x, test y: six annotators of 100 points each."""
    order, test, y_test = data.split(seed)
    rows = order[: N_PER_ANNOTATOR * len(FLIP_RATES)]
    x, y = data.x[rows], data.y[rows].copy()
    sources = np.repeat([f"ann{a + 1}" for a in range(len(FLIP_RATES))], N_PER_ANNOTATOR)
    for a, rate in enumerate(FLIP_RATES):
        mine = np.flatnonzero(sources == f"ann{a + 1}")
        y[mine] = flip_labels(y[mine], rate, seed=1000 * seed + a)[0]
    return x, y, sources, data.x_test[test], y_test


def market_data(
    data: Adult, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, y, sources, test x, test y: two one-class sources and two ordinary ones (clean)."""
    order, test, y_test = data.split(seed)
    pool = order[N_PER_ANNOTATOR * len(FLIP_RATES) :]  # not the annotators' points
    low = pool[data.y[pool] == 0][:N_ONE_CLASS]
    high = pool[data.y[pool] == 1][:N_ONE_CLASS]
    mixed = pool[-2 * N_MIXED :]
    rows = np.concatenate([low, high, mixed])
    sources = np.array(
        ["only<=50K"] * N_ONE_CLASS
        + ["only>50K"] * N_ONE_CLASS
        + ["mixed1"] * N_MIXED
        + ["mixed2"] * N_MIXED
    )
    return data.x[rows], data.y[rows], sources, data.x_test[test], y_test


def price(
    x: np.ndarray,
    y: np.ndarray,
    sources: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    metric: Metric = balanced_accuracy_score,
) -> PricingResult:
    return price_sources(x, y, x_test, y_test, sources, fit=learner(), metric=metric)


def f(value: float, digits: int = 4) -> str:
    return f"{value:+.{digits}f}"


def pricing_table(result: PricingResult, extra: dict[str, Sequence[str]] | None = None) -> None:
    extra = extra or {}
    heads = ["source", *extra, "points", "payment", "share of gain", "standalone", "leave-one-out"]
    print("| " + " | ".join(heads) + " |")
    print("|" + " --- |" * len(heads))
    for i, row in enumerate(result.table()):
        cells = [row.source, *(column[i] for column in extra.values())]
        points = "-" if row.n_points is None else str(row.n_points)
        cells += [points, f(row.payment), f"{row.share:.0%}", f(row.standalone)]
        cells.append(f(row.leave_one_out))
        print("| " + " | ".join(cells) + " |")
    print(
        f"\nV(∅) = {result.value_empty:.4f}, V(N) = {result.value_full:.4f}; sum of payments "
        f"{result.total_payment:.15f} against V(N) - V(∅) = {result.gain:.15f} "
        f"(gap {result.efficiency_gap:.1e}); {result.n_fits} "
        f"{'fits' if result.n_points is not None else 'coalitions read'}, "
        f"{result.seconds:.2f} s.\n"
    )


def pairs_table(result: PricingResult) -> None:
    print("| pair | interaction index | V(pair) |")
    print("| --- | --- | --- |")
    for pair in result.pairs():
        v = result.value_of([pair.first, pair.second])
        print(f"| {pair.first} + {pair.second} | {f(pair.value)} | {v:.4f} |")
    print()


def buyer(result: PricingResult) -> None:
    """Which two sources to buy: by standalone value, by payment, and the best pair by V."""
    names = list(result.sources)

    def top_two(scores: np.ndarray) -> list[str]:
        return [names[i] for i in np.argsort(-scores, kind="stable")[:2]]

    best = max(itertools.combinations(names, 2), key=lambda p: result.value_of(p))
    print("| a buyer of two sources picks | the pair | V(pair) |")
    print("| --- | --- | --- |")
    for rule, pair in (
        ("the two best alone (standalone)", top_two(result.standalone)),
        ("the two best paid (Shapley)", top_two(result.payments)),
        ("the best pair (every pair's V)", list(best)),
    ):
        print(f"| {rule} | {' + '.join(pair)} | {result.value_of(pair):.4f} |")
    print()


def section_annotators(data: Adult, seeds: Sequence[int]) -> None:
    rates = [f"{rate:.0%}" for rate in FLIP_RATES]
    print(f"### 1. Six annotators (seed {seeds[0]})\n")
    per_seed = []
    started = time.perf_counter()
    for seed in seeds:
        per_seed.append(price(*annotator_data(data, seed)))
    first = per_seed[0]
    pricing_table(first, {"labels flipped": rates})
    payments = np.array([r.payments for r in per_seed])
    standalone = np.array([r.standalone for r in per_seed])
    loo = np.array([r.leave_one_out for r in per_seed])
    gaps = [abs(r.efficiency_gap) for r in per_seed]
    fits = sum(r.n_fits for r in per_seed)
    print(f"Over seeds {list(seeds)} (mean ± sd; a fresh draw of points and flips per seed):\n")
    print("| annotator | labels flipped | payment | standalone | leave-one-out |")
    print("| --- | --- | --- | --- | --- |")
    for i, name in enumerate(first.sources):
        cells = [
            f"{np.mean(v[:, i]):+.4f} ± {np.std(v[:, i], ddof=1) if len(seeds) > 1 else 0:.4f}"
            for v in (payments, standalone, loo)
        ]
        print(f"| {name} | {rates[i]} | " + " | ".join(cells) + " |")
    adversary = len(FLIP_RATES) - 1
    least = sum(int(p.argmin() == adversary) for p in payments)
    negative = sum(int(p[adversary] < 0) for p in payments)
    # The three cleanest (0, 0, 10% flipped) all paid above the three noisiest (20, 30, 100%).
    split = sum(int(p[:3].min() > p[3:].max()) for p in payments)
    rho = [spearmanr(FLIP_RATES, p).statistic for p in payments]
    print(
        f"\nThe adversarial annotator is paid least in {least}/{len(seeds)} seeds and less "
        f"than nothing in {negative}/{len(seeds)}; the three cleanest annotators are all paid "
        f"more than the three noisiest in {split}/{len(seeds)}; Spearman correlation of payment "
        f"and flip rate {np.mean(rho):+.2f} on average (per seed {min(rho):+.2f} to "
        f"{max(rho):+.2f}). Largest |efficiency gap| {max(gaps):.1e}. {fits} fits, "
        f"{time.perf_counter() - started:.1f} s in all.\n"
    )


def section_copy(data: Adult, seeds: Sequence[int]) -> None:
    print("### 2. A redundant copy: ann1's points sold again as ann1-copy\n")
    print(
        "| seed | ann1 paid, alone in the market | ann1 paid, with the copy | ann1-copy paid | "
        "ann1 + copy | V(N) without / with the copy | interaction ann1, copy |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    started, fits = time.perf_counter(), 0
    ratios = []
    for seed in seeds:
        x, y, sources, x_test, y_test = annotator_data(data, seed)
        before = price(x, y, sources, x_test, y_test)
        twin = sources == "ann1"
        after = price(
            np.concatenate([x, x[twin]]),
            np.concatenate([y, y[twin]]),
            np.concatenate([sources, np.full(int(twin.sum()), "ann1-copy")]),
            x_test,
            y_test,
        )
        fits += before.n_fits + after.n_fits
        a, c = after.sources.index("ann1"), after.sources.index("ann1-copy")
        original = before.payments[before.sources.index("ann1")]
        ratios.append(after.payments[a] / original)
        print(
            f"| {seed} | {f(original)} | {f(after.payments[a])} | {f(after.payments[c])} | "
            f"{f(after.payments[a] + after.payments[c])} | {before.value_full:.4f} / "
            f"{after.value_full:.4f} | {f(after.interaction('ann1', 'ann1-copy'))} |"
        )
    print(
        f"\nann1's payment with its copy over without: {np.mean(ratios):.2f} on average "
        f"(range {min(ratios):.2f}-{max(ratios):.2f}). {fits} fits, "
        f"{time.perf_counter() - started:.1f} s.\n"
    )


def section_synergy(data: Adult, seeds: Sequence[int]) -> None:
    seed = seeds[0]
    x, y, sources, x_test, y_test = market_data(data, seed)
    pair = np.isin(sources, ["only<=50K", "only>50K"])
    print(f"### 3. Synergy: two one-class sources (seed {seed})\n")
    print("(a) The two alone:\n")
    alone = price(x[pair], y[pair], sources[pair], x_test, y_test)
    pricing_table(alone)
    print(
        f"Interaction index {f(alone.interaction('only<=50K', 'only>50K'))}: the whole gain "
        "is synergy, and Shapley splits it equally.\n"
    )
    print("(b) In a market with two ordinary sources:\n")
    market = price(x, y, sources, x_test, y_test)
    pricing_table(market)
    pairs_table(market)
    buyer(market)
    print("(c) The same market valued with plain accuracy (Adult is 76% <=50K):\n")
    plain = price(x, y, sources, x_test, y_test, metric=accuracy)
    pricing_table(plain)
    pairs_table(plain)
    fits = alone.n_fits + market.n_fits + plain.n_fits
    seconds = alone.seconds + market.seconds + plain.seconds
    print(f"Over seeds {list(seeds)} (balanced accuracy, the market of (b)):\n")
    print(
        "| seed | interaction of the one-class pair | most synergistic pair? | payment "
        "only<=50K | payment only>50K | V(best pair by payment) | V(best pair) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for other in seeds:
        result = market if other == seed else price(*market_data(data, other))
        if other != seed:
            fits, seconds = fits + result.n_fits, seconds + result.seconds
        top = result.pairs()[0]
        paid = [result.sources[i] for i in np.argsort(-result.payments, kind="stable")[:2]]
        best = max(itertools.combinations(result.sources, 2), key=lambda p: result.value_of(p))
        low, high = (result.sources.index(s) for s in ("only<=50K", "only>50K"))
        print(
            f"| {other} | {f(result.interaction('only<=50K', 'only>50K'))} | "
            f"{'yes' if (top.first, top.second) == ('only<=50K', 'only>50K') else 'no'} | "
            f"{f(result.payments[low])} | {f(result.payments[high])} | "
            f"{result.value_of(paid):.4f} | {result.value_of(best):.4f} |"
        )
    print(f"\n{fits} fits, {seconds:.1f} s for section 3.\n")


def section_problem() -> None:
    print("### 4. The chapter's Problem 10.5.1 (three datasets, a table of scores)\n")
    result = price_game(dataset_pricing_game())
    pricing_table(result)
    pairs_table(result)
    buyer(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    started = time.perf_counter()
    data = Adult()
    print(f"(Adult loaded in {time.perf_counter() - started:.1f} s)\n")
    section_annotators(data, args.seeds)
    section_copy(data, args.seeds)
    section_synergy(data, args.seeds)
    section_problem()
    print(f"wall time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
