"""ShapleyResult: rankings, tables, display, merging and persistence."""

import csv
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

import neuronshapley as ns
from tests.damage import DAMAGES, damage

NAMES = ["a", "b", "c", "d", "e", "f"]
# Ties at the top (b, d) and at the bottom (c, e) are broken by index.
VALUES = np.array([1 / 3, 2.0, -1.0, 2.0, -1.0, 0.0])
COLUMNS = ["player", "value", "stderr", "ci_low", "ci_high", "n_samples"]


def make_result(**changes: object) -> ns.ShapleyResult:
    fields: dict[str, object] = {
        "values": VALUES.copy(),
        "stderr": np.array([0.1, 0.2, math.inf, 0.05, 1e-300, 0.0]),
        "ci_low": VALUES - np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
        "ci_high": VALUES + np.array([0.6, 0.5, 0.4, 0.3, 0.2, 0.1]),
        "n_samples": np.array([10, 20, 0, 40, 50, 60], dtype=np.int64),
        "variance": np.array([0.1, 0.8, 0.0, 0.1, 0.0, 0.0]),
        "player_names": list(NAMES),
        "n_evaluations": 1234,
        "estimator": "permutation_shapley",
        "params": {"delta": 0.05, "bound": "bernstein", "value_range": None, "union_bound": False},
        "seed": 7,
        "stop_reason": "n_permutations",
        "elapsed_seconds": 0.5,
        "sample_range": (-2.0, 3.0),
        "diagnostics": {"n_permutations": 60},
    }
    fields.update(changes)
    return ns.ShapleyResult(**fields)  # type: ignore[arg-type]


def soum(names: list[str] | None = None) -> ns.games.SOUM:
    return ns.games.SOUM(n_players=6, n_basis=8, seed=1, player_names=names)


# -- rankings ---------------------------------------------------------------------------------


def test_ranked_player_fields() -> None:
    assert ns.RankedPlayer._fields == (
        "rank",
        "player_index",
        "name",
        "value",
        "ci_low",
        "ci_high",
    )


def test_top_order_and_contents() -> None:
    result = make_result()
    top = result.top(3)
    assert [row.player_index for row in top] == [1, 3, 0]  # b and d tie: lower index first
    assert [row.rank for row in top] == [1, 2, 3]
    assert [row.name for row in top] == ["b", "d", "a"]
    for row in top:
        i = row.player_index
        assert row.value == VALUES[i]
        assert row.ci_low == result.ci_low[i]
        assert row.ci_high == result.ci_high[i]
        assert type(row.rank) is int and type(row.player_index) is int
        assert type(row.value) is float and type(row.ci_low) is float
    np.testing.assert_array_equal(result.top_indices(3), [1, 3, 0])


def test_bottom_order_and_contents() -> None:
    result = make_result()
    bottom = result.bottom(4)
    assert [row.player_index for row in bottom] == [2, 4, 5, 0]  # c and e tie
    assert [row.rank for row in bottom] == [1, 2, 3, 4]
    assert [row.name for row in bottom] == ["c", "e", "f", "a"]
    assert [row.value for row in bottom] == [-1.0, -1.0, 0.0, 1 / 3]
    np.testing.assert_array_equal(result.bottom_indices(4), [2, 4, 5, 0])


def test_full_ranking_is_a_permutation() -> None:
    result = make_result()
    top = result.top(6)
    assert sorted(row.player_index for row in top) == list(range(6))
    assert [row.value for row in top] == sorted(VALUES, reverse=True)
    assert [row.player_index for row in result.bottom(6)] == [2, 4, 5, 0, 1, 3]


@pytest.mark.parametrize("k", [7, 100])
def test_k_larger_than_n_is_clipped(k: int) -> None:
    result = make_result()
    assert len(result.top(k)) == 6
    assert len(result.bottom(k)) == 6
    assert result.top(k) == result.top(6)


def test_k_zero_gives_nothing() -> None:
    assert make_result().top(0) == []
    assert make_result().bottom(0) == []


@pytest.mark.parametrize("method", ["top", "bottom", "top_indices", "bottom_indices"])
def test_negative_k_rejected(method: str) -> None:
    with pytest.raises(ValueError, match=rf"'k' parameter of ShapleyResult\.{method}.*Got -1"):
        getattr(make_result(), method)(-1)


# -- tables -----------------------------------------------------------------------------------


def test_to_csv_round_trip(tmp_path: Path) -> None:
    result = make_result()
    path = tmp_path / "values.csv"
    result.to_csv(path)
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == COLUMNS
    assert len(rows) == 1 + result.n_players
    for i, row in enumerate(rows[1:]):
        assert row[0] == NAMES[i]
        # Floats are written with repr, so they read back bit for bit (inf included).
        assert float(row[1]) == result.values[i]
        assert float(row[2]) == result.stderr[i]
        assert float(row[3]) == result.ci_low[i]
        assert float(row[4]) == result.ci_high[i]
        assert int(row[5]) == result.n_samples[i]


def test_to_csv_quotes_awkward_names(tmp_path: Path) -> None:
    names = ["layer,1:0", 'say "hi"', "new\nline", "d", "e", "f"]
    result = make_result(player_names=names)
    result.to_csv(tmp_path / "values.csv")
    with open(tmp_path / "values.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert [row[0] for row in rows[1:]] == names


def test_to_frame() -> None:
    pd = pytest.importorskip("pandas")
    result = make_result()
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == COLUMNS
    assert len(frame) == result.n_players
    assert list(frame["player"]) == NAMES
    np.testing.assert_array_equal(frame["value"].to_numpy(), result.values)
    np.testing.assert_array_equal(frame["stderr"].to_numpy(), result.stderr)
    np.testing.assert_array_equal(frame["ci_low"].to_numpy(), result.ci_low)
    np.testing.assert_array_equal(frame["ci_high"].to_numpy(), result.ci_high)
    np.testing.assert_array_equal(frame["n_samples"].to_numpy(), result.n_samples)
    assert frame["n_samples"].dtype == np.int64


# -- display ----------------------------------------------------------------------------------


def test_repr_of_a_real_run() -> None:
    game = soum(["in", "hid.0", "hid.1", "hid.2", "out.0", "out.1"])
    result = ns.permutation_shapley(game, 8, seed=0)
    best = result.top(1)[0].name
    text = repr(result)
    assert "permutation_shapley" in text
    assert "6 players" in text
    assert "stopped: n_permutations" in text
    assert best in text
    assert "95% interval" in text  # delta=0.05
    # Five players shown, largest first, then a pointer to the rest.
    shown = [line.split()[1] for line in text.splitlines()[2:7]]
    assert shown == [row.name for row in result.top(5)]
    assert "1 more" in text


def test_repr_of_a_constructed_result() -> None:
    text = repr(make_result(estimator="tmab_shapley", stop_reason="separated"))
    first_line = text.splitlines()[0]
    assert "tmab_shapley" in first_line
    assert "6 players" in first_line
    assert "1,234 evaluations" in first_line
    assert "stopped: separated" in first_line
    assert text.splitlines()[2].split()[:2] == ["1", "b"]


def test_repr_of_an_exact_result() -> None:
    text = repr(ns.exact_shapley(soum()))
    assert "exact_shapley" in text
    assert "stopped: complete" in text


# -- merging ----------------------------------------------------------------------------------


def test_merge_refuses_different_player_names() -> None:
    a = ns.permutation_shapley(soum(), 4, seed=1)
    b = ns.permutation_shapley(soum([f"q{i}" for i in range(6)]), 4, seed=2)
    with pytest.raises(ValueError, match="different players"):
        a.merge(b)


def test_merge_refuses_different_delta() -> None:
    a = ns.permutation_shapley(soum(), 4, seed=1, delta=0.05)
    b = ns.permutation_shapley(soum(), 4, seed=2, delta=0.1)
    with pytest.raises(ValueError, match=r"different 'delta': 0\.05 and 0\.1"):
        a.merge(b)


@pytest.mark.parametrize(
    ("key", "first", "second"),
    [("bound", "bernstein", "normal"), ("value_range", None, 2.0), ("union_bound", False, True)],
)
def test_merge_refuses_different_interval_settings(key: str, first: object, second: object) -> None:
    a = ns.permutation_shapley(soum(), 4, seed=1, **{key: first})  # type: ignore[arg-type]
    b = ns.permutation_shapley(soum(), 4, seed=2, **{key: second})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=rf"different {key!r}"):
        a.merge(b)


# -- persistence ------------------------------------------------------------------------------


def test_save_into_a_nested_path_that_does_not_exist(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    assert not target.parent.exists()
    result = make_result()
    assert result.save(target) == target
    assert (target / "result.json").is_file()
    assert (target / "result.npz").is_file()
    assert not list(target.glob("*.tmp"))  # no temporary files left behind
    loaded = ns.ShapleyResult.load(target)
    np.testing.assert_array_equal(loaded.values, result.values)
    np.testing.assert_array_equal(loaded.stderr, result.stderr)  # inf survives
    assert loaded.player_names == NAMES
    assert loaded.sample_range == (-2.0, 3.0)
    assert loaded.params == result.params
    assert loaded.diagnostics == result.diagnostics


def test_save_overwrites_an_earlier_result(tmp_path: Path) -> None:
    make_result().save(tmp_path)
    make_result(values=VALUES + 1.0, stop_reason="max_evaluations").save(tmp_path)
    loaded = ns.ShapleyResult.load(tmp_path)
    np.testing.assert_array_equal(loaded.values, VALUES + 1.0)
    assert loaded.stop_reason == "max_evaluations"


@pytest.mark.parametrize("version", [99, 0, None, "1"])
def test_load_rejects_a_wrong_format_version(tmp_path: Path, version: object) -> None:
    make_result().save(tmp_path)
    meta_path = tmp_path / "result.json"
    meta = json.loads(meta_path.read_text())
    meta["format_version"] = version
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"format version {version!r}; .* reads versions 1, 2"):
        ns.ShapleyResult.load(tmp_path)


def test_merged_result_remembers_its_seeds() -> None:
    game = ns.games.SOUM(n_players=6, n_basis=10, seed=0)
    runs = [ns.permutation_shapley(game, 10, seed=seed) for seed in (1, 2, 3)]
    merged = runs[0].merge(runs[1])
    assert merged.seeds() == [1, 2]
    assert merged.merge(runs[2]).n_samples.tolist() == [30] * 6
    with pytest.raises(ValueError, match="seed 1"):
        merged.merge(runs[0])


def test_top_and_bottom_have_a_table_view() -> None:
    result = ns.exact_shapley(ns.games.dataset_pricing_game())
    top = result.top(2)
    assert isinstance(top, list)
    frame = top.to_frame()
    assert list(frame.index) == [1, 2]
    assert list(frame["name"]) == [row.name for row in top]
    assert frame["value"].tolist() == [row.value for row in top]
    assert result.bottom(1).to_frame()["value"].iloc[0] == result.values.min()


# -- damaged files: one clear line, never a traceback or a wrong table ------------------------


@pytest.mark.parametrize("file", ["result.json", "result.npz"])
@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_file_is_one_clear_error(tmp_path: Path, file: str, how: str) -> None:
    make_result().save(tmp_path)
    damage(tmp_path / file, how)
    with pytest.raises(ValueError, match=rf"{file}") as error:
        ns.ShapleyResult.load(tmp_path)
    assert "\n" not in str(error.value)


def test_files_of_two_different_saves_are_not_read_as_one(tmp_path: Path) -> None:
    """A save cut between its two files (or files copied from elsewhere) is refused."""
    three, four = tmp_path / "three", tmp_path / "four"
    ns.ShapleyResult.from_values([1.0, 2.0, 3.0]).save(three)
    ns.ShapleyResult.from_values([1.0, 2.0, 3.0, 4.0]).save(four)
    (three / "result.npz").write_bytes((four / "result.npz").read_bytes())
    with pytest.raises(ValueError, match=r"does not belong to .*result\.json"):
        ns.ShapleyResult.load(three)


def test_arrays_that_disagree_in_length_are_refused() -> None:
    with pytest.raises(ValueError, match="3 player names for 2 values"):
        ns.ShapleyResult.from_values([1.0, 2.0], player_names=["a", "b", "c"])


def test_from_values_builds_an_exact_result_with_groups(tmp_path: Path) -> None:
    result = ns.ShapleyResult.from_values(
        [0.5, -1.0, 2.0], ["conv1:0", "conv1:1", "fc:0"], groups=["conv1", "conv1", "fc"]
    )
    assert [row.name for row in result.top(2)] == ["fc:0", "conv1:0"]
    np.testing.assert_array_equal(result.ci_low, result.values)
    result.save(tmp_path)
    loaded = ns.ShapleyResult.load(tmp_path)
    assert loaded.groups == ["conv1", "conv1", "fc"]
    assert loaded.interval_guarantee == "given values"


def test_the_interval_guarantee_says_per_player_or_simultaneous() -> None:
    game = ns.games.AdditiveGame([1.0, 2.0, 3.0])
    per_player = ns.permutation_shapley(game, n_permutations=4, seed=0, value_range=3.0)
    assert per_player.interval_guarantee.startswith("95% for each player on its own")
    assert "finite-sample" in per_player.interval_guarantee
    joint = ns.permutation_shapley(game, n_permutations=4, seed=0, union_bound=True, value_range=3)
    assert joint.interval_guarantee.startswith("95% for all players at once")
    # The normal interval is asymptotic and never joint, delta divided or not.
    normal = ns.permutation_shapley(
        game, n_permutations=4, seed=0, union_bound=True, bound="normal"
    )
    assert normal.interval_guarantee.startswith("95% normal approximation for each player")
    assert "asymptotic" in normal.interval_guarantee and "not joint" in normal.interval_guarantee


def test_a_range_the_samples_exceed_voids_the_printed_guarantee() -> None:
    game = ns.games.sparse_soum(30, n_large=3, seed=0)
    wrong = ns.permutation_shapley(game, n_permutations=20, seed=0, value_range=0.05)
    assert "wider than the range 0.05: that range is wrong" in wrong.interval_guarantee
    right = ns.permutation_shapley(
        game, n_permutations=20, seed=0, value_range=game.marginal_range()
    )
    assert "range is wrong" not in right.interval_guarantee


def test_a_truncated_result_of_an_earlier_version_says_its_bias_is_not_included() -> None:
    result = ns.truncated_shapley(
        ns.games.sparse_soum(30, n_large=3, seed=0), n_permutations=8, seed=0
    )
    assert result.params["truncation_bias"] == "bounded"
    params = {k: v for k, v in result.params.items() if k != "truncation_bias"}
    old = dataclasses.replace(result, params=params, diagnostics={})
    assert "plain truncation, its bias not included" in old.interval_guarantee
    with pytest.raises(ValueError, match="different 'truncation_bias'"):
        dataclasses.replace(old, seed=1).merge(result)
