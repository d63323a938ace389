"""The peer benchmark's scoring: precision@k, epsilon-precision@k, budget grids and the point
from which a curve stays above a level (benchmarks/peers.py)."""

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
from benchmarks.peers import (
    METHOD_NAMES,
    Comparison,
    Plan,
    Point,
    Task,
    add_runs,
    anytime_grid,
    at_budget,
    doubling_grid,
    epsilon_precision_at,
    n_hits,
    precision_at,
    reaches,
)

REFERENCE = np.array([0.9, 0.8, 0.7, 0.69, 0.68, 0.1, 0.0])


def test_precision_counts_the_shared_top_k() -> None:
    assert precision_at(REFERENCE, REFERENCE, 3) == 1.0
    swapped = REFERENCE.copy()
    swapped[[2, 5]] = swapped[[5, 2]]  # the 3rd best now looks like the 6th, and back
    assert precision_at(swapped, REFERENCE, 3) == 2 / 3


def test_epsilon_precision_forgives_near_ties_only() -> None:
    near_tie = REFERENCE.copy()
    near_tie[[2, 3]] = near_tie[[3, 2]]  # 0.69 returned instead of 0.70: within 0.02 of the 3rd
    assert precision_at(near_tie, REFERENCE, 3) == 2 / 3
    assert epsilon_precision_at(near_tie, REFERENCE, 3, epsilon=0.02) == 1.0
    assert epsilon_precision_at(near_tie, REFERENCE, 3, epsilon=0.005) == 2 / 3
    far = REFERENCE.copy()
    far[[2, 5]] = far[[5, 2]]  # 0.1 returned: far from the 3rd value
    assert epsilon_precision_at(far, REFERENCE, 3, epsilon=0.02) == 2 / 3


def test_hits_are_the_units_within_epsilon_of_the_kth_value() -> None:
    assert n_hits(REFERENCE, 3, epsilon=0.0) == 3
    assert n_hits(REFERENCE, 3, epsilon=0.02) == 5  # 0.69 and 0.68 are within 0.02 of 0.70
    assert n_hits(REFERENCE, 3, epsilon=1.0) == len(REFERENCE)  # an epsilon that says nothing


def test_grids() -> None:
    assert doubling_grid(2000) == [250, 500, 1000, 2000]
    assert doubling_grid(1500) == [250, 500, 1000, 1500]  # the budget itself is spent too
    grid = anytime_grid(2000)
    assert grid[0] == 250 and grid[-1] == 2000
    assert all(1.3 < b / a < 1.5 for a, b in itertools.pairwise(grid))


def test_at_budget_takes_the_last_point_within_it() -> None:
    points = [Point(e, e * 10, e / 100, np.zeros(2)) for e in (100, 300, 700)]
    assert at_budget(points, 50) is None
    found = at_budget(points, 699)
    assert found is not None and found.evaluations == 300


def test_reaches_needs_the_level_to_hold_from_then_on() -> None:
    rows = [
        {"eps-p@10": p, "budget": b} for b, p in [(1, 0.5), (2, 0.9), (3, 0.8), (4, 0.9), (5, 1.0)]
    ]
    hit = reaches(rows)
    assert hit is not None and hit["budget"] == 4
    assert reaches(rows, level=1.01) is None


def test_added_runs_join_the_kept_curves_in_the_benchmarks_order() -> None:
    """``make bench``'s curves are kept; a method run later (``--methods``) joins them in its
    place among the methods, and its worker time is added."""
    first, last, added = METHOD_NAMES[0], METHOD_NAMES[-1], METHOD_NAMES[3]
    plan = Plan(budget=1_000, random_budget=500, n_seeds=2)
    kept = Comparison("g", 4, 10, plan, {"values": [0.0] * 4})
    point = Point(1_000, 10, 1.0, np.zeros(4))
    kept.curves = {first: [[point]] * 2, last: [[point]] * 2}
    kept.minutes = 3.0
    results = {Task("g", added, seed, 1_000): [point] for seed in (1, 0)}
    results[Task("other game", added, 0, 1_000)] = [point]
    combined = add_runs(kept, results, {task: 30.0 for task in results})
    assert list(combined.curves) == [first, added, last]
    assert len(combined.curves[added]) == 2
    assert combined.minutes == 3.0 + 1.0  # two runs of 30 s on this game


def test_bad_methods_are_refused_before_anything_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt ``--methods`` (or one with ``--from-saved``, which runs nothing) is refused at
    once, not after the engine part has run for minutes and rewritten docs/benchmarks.md."""
    from benchmarks import run

    def ran(*args: object) -> list[str]:
        raise AssertionError("the benchmark ran before its arguments were checked")

    monkeypatch.setattr(run, "engine_sections", ran)
    monkeypatch.setattr(run, "peer_sections", ran)
    for argv in (
        ["--methods", "ours nope"],
        ["--from-saved", "--methods", METHOD_NAMES[0]],
        ["--no-peers", "--methods", METHOD_NAMES[0]],
        ["--quick", "--wide"],
    ):
        monkeypatch.setattr(sys, "argv", ["benchmarks.run", *argv])
        with pytest.raises(SystemExit, match=r"--methods|--wide"):
            run.main()


def test_every_plan_names_benchmark_games_and_methods() -> None:
    from benchmarks import games, peers

    for plans in (peers.FULL, peers.WIDE, peers.QUICK):
        for name, plan in plans.items():
            assert name in games.GAMES
            assert set(plan.only or ()) <= set(METHOD_NAMES)


def test_methods_need_the_kept_curves(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``--methods`` adds to the last full run's curves: without them it says what is missing
    (and runs nothing), rather than failing on a missing file after its runs."""
    from benchmarks import run

    def ran(*args: object) -> list[str]:
        raise AssertionError("the benchmark ran without the curves it adds to")

    monkeypatch.setattr(run, "engine_sections", ran)
    monkeypatch.setattr(run, "peer_sections", ran)
    monkeypatch.setattr(run, "RESULTS", tmp_path)
    monkeypatch.setattr(run, "ROOT", tmp_path.parent)
    monkeypatch.setattr(sys, "argv", ["benchmarks.run", "--methods", METHOD_NAMES[0]])
    with pytest.raises(SystemExit, match=r"missing: .*digits-cnn\.pickle.*make bench"):
        run.main()


def test_control_variate_points_pay_for_the_surrogates_jacobian(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each budget's run stands for a run from scratch, so each point's seconds include the
    surrogate's linearisation (as the runner's docstring says), not only its walks: with a
    clock that moves only while the surrogate is built, every point shows that time."""
    from benchmarks import peers

    import neuronshapley as ns

    class Clock:
        now = 0.0

        def perf_counter(self) -> float:
            return self.now

    clock = Clock()

    class Game(ns.games.BaseGame):
        n_forward_examples = 0

        def _value(self, coalitions: np.ndarray) -> np.ndarray:
            return coalitions.sum(axis=1).astype(float) ** 2

    def linearized_game(game: ns.games.Game, metric: str) -> ns.games.Game:
        clock.now += 5.0  # the Jacobian
        return ns.games.SOUM.from_basis(6, [[0, 1], [2, 3, 4]], [1.0, 2.0])

    monkeypatch.setattr(peers, "time", clock)
    monkeypatch.setattr(ns.units, "linearized_game", linearized_game)
    runner = peers.control_variate(antithetic=False, truncation=0.1)
    points = list(runner(peers.Counter(Game(6)), 0, 400))  # type: ignore[arg-type]
    assert len(points) >= 2
    assert all(point.seconds == 5.0 for point in points)


def test_methods_are_not_added_to_curves_of_other_budgets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Curves kept from a run with another budget or other seeds cannot be read side by side
    with new ones: ``--methods`` says so and runs nothing."""
    from benchmarks import peers, run

    def ran(*args: object) -> list[str]:
        raise AssertionError("the benchmark ran on top of curves of other budgets")

    monkeypatch.setattr(run, "engine_sections", ran)
    monkeypatch.setattr(run, "peer_sections", ran)
    monkeypatch.setattr(run, "RESULTS", tmp_path)
    for name, plan in peers.FULL.items():
        kept = plan if name != "digits-cnn" else Plan(plan.budget // 2, plan.random_budget, 3)
        peers.save(Comparison(name, 4, 10, kept, {"values": [0.0] * 4}), tmp_path)
    (tmp_path / "run.json").write_text("{}")
    monkeypatch.setattr(sys, "argv", ["benchmarks.run", "--methods", METHOD_NAMES[0]])
    with pytest.raises(SystemExit, match=r"digits-cnn.*budget 2,500 -> 5,000; n_seeds 3 -> 5"):
        run.main()
    assert peers.budgets_changed(peers.FULL["digits-cnn"], peers.FULL["digits-cnn"]) == []


def test_a_cached_reference_is_kept_for_the_same_game_with_other_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Weights trained on another CPU differ in their last bits, not in the game: the values
    on the probe coalitions decide whether the cached reference still holds."""
    import torch
    from benchmarks import games

    import neuronshapley as ns
    from tests.units._models import TinyMLP, trained, vectors

    monkeypatch.setattr(games, "REFERENCE_DIR", tmp_path)
    monkeypatch.setattr(games, "GAMES", {"tiny": games.BenchGame("tiny", 40, 2)})
    model = trained(TinyMLP, vectors(64, seed=0))
    data, reference = vectors(40, seed=1), vectors(30, seed=2)[0]
    cached = games.reference("tiny", ns.NeuronGame(model, data=data, reference=reference))
    assert cached is not None and len(cached["probe"]) == games.N_PROBES

    def game_with(noise: float) -> ns.NeuronGame:
        other = trained(TinyMLP, vectors(64, seed=0))
        with torch.no_grad():
            for parameter in other.parameters():
                parameter.mul_(1 + noise)
        return ns.NeuronGame(other, data=data, reference=reference)

    last_bits = game_with(1e-7)
    assert games.weights_digest(last_bits) != cached["settings"]["weights_sha256"]
    assert games.reference("tiny", last_bits, compute=False) == cached
    assert games.reference("tiny", game_with(0.3), compute=False) is None  # another game


def test_the_benchmark_games_run_on_their_pinned_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Training is not bit-reproducible across CPUs, so the weights a reference was computed on
    are stored with it: a machine whose zoo trains other weights still plays the same game."""
    import torch
    from benchmarks import games

    import neuronshapley as ns
    from neuronshapley.pytorch.data import Bundle, Split
    from tests.units._models import TinyMLP, trained, vectors

    splits = {name: Split(*vectors(40, seed=seed)) for seed, name in enumerate(["a", "b", "c"])}
    machines = iter([1, 2])  # each "machine" trains its own weights

    def zoo_load(name: str) -> tuple[torch.nn.Module, Bundle]:
        model = trained(TinyMLP, vectors(64, seed=0), seed=next(machines))
        return model, Bundle(splits["a"], splits["b"], splits["c"], classes=("0", "1", "2"))

    monkeypatch.setattr(ns.zoo, "load", zoo_load)
    monkeypatch.setattr(games, "REFERENCE_DIR", tmp_path)
    monkeypatch.setattr(games, "GAMES", {"tiny": games.BenchGame("tiny", 40, 2)})
    first = games.build("tiny")
    cached = games.reference("tiny", first)
    pinned = torch.load(games.weights_path("tiny"), weights_only=True)
    assert all(torch.equal(pinned[k], v) for k, v in first.model.state_dict().items())

    second = games.build("tiny")  # another machine's training, then the pinned weights
    assert games.weights_digest(second) == cached["settings"]["weights_sha256"]
    assert games.reference("tiny", second, compute=False) == cached
