"""The heads study on a tiny randomly initialised BERT (built from a config, nothing downloaded):
removal and repair scores against the game's own values, attention patterns against a hand
computation, and the model left as it came."""

import copy
from typing import Any

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from neuronshapley.applications.heads import attention_patterns, heads_study
from neuronshapley.estimators import exact_shapley
from neuronshapley.units import NeuronGame
from neuronshapley.zoo.minilm import mean_pooled, spearman_similarity
from neuronshapley.zoo.wordsim import WordPairs

transformers = pytest.importorskip(
    "transformers",
    reason="transformers is not installed: pip install 'neuronshapley[transformers]'",
)

VOCAB, LENGTH = 40, 5
SPECIAL = (1, 2, 0)  # "[CLS]", "[SEP]", "[PAD]"


@pytest.fixture(scope="module")
def bert() -> nn.Module:
    config = transformers.BertConfig(
        hidden_size=12, num_hidden_layers=2, num_attention_heads=3, intermediate_size=24,
        vocab_size=VOCAB, max_position_embeddings=16,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


def words(n: int, seed: int) -> dict[str, torch.Tensor]:
    """``n`` "words": [CLS] 1 to 3 word pieces [SEP], padded to LENGTH."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros(n, LENGTH, dtype=torch.long)
    mask = torch.zeros(n, LENGTH, dtype=torch.long)
    for row in range(n):
        pieces = int(torch.randint(1, 4, (1,), generator=generator))
        ids[row, : pieces + 2] = torch.cat(
            [torch.tensor([1]), torch.randint(3, VOCAB, (pieces,), generator=generator),
             torch.tensor([2])]
        )  # fmt: skip
        mask[row, : pieces + 2] = 1
    return {"input_ids": ids, "attention_mask": mask}


def rated_pairs(
    n_words: int, n_pairs: int, seed: int, name: str
) -> tuple[WordPairs, tuple[str, ...]]:
    rng = np.random.default_rng(seed)
    names = tuple(f"w{i:02d}" for i in range(n_words))
    chosen = [rng.choice(n_words, 2, replace=False) for _ in range(n_pairs)]
    pairs = WordPairs(
        name,
        tuple(names[a] for a, _ in chosen),
        tuple(names[b] for _, b in chosen),
        rng.uniform(0, 10, n_pairs),
    )
    return pairs, names


@pytest.fixture(scope="module")
def game(bert: nn.Module) -> NeuronGame:
    pairs, names = rated_pairs(12, 30, seed=0, name="valuing")
    return NeuronGame(
        bert,
        units="heads:encoder.layer.*.attention",
        data=words(12, seed=1),
        reference=words(20, seed=2),
        metric=spearman_similarity(pairs, names),
        output=mean_pooled,
    )


@pytest.fixture(scope="module")
def held_out() -> dict[str, tuple[Any, Any]]:
    pairs, names = rated_pairs(10, 25, seed=3, name="other")
    return {"other": (words(10, seed=4), spearman_similarity(pairs, names))}


def test_scores_are_the_games_values_of_the_removals(
    game: NeuronGame, held_out: dict[str, tuple[Any, Any]]
) -> None:
    result = exact_shapley(game)
    study = heads_study(game, result, held_out, special_ids=SPECIAL, k=2, n_random=3, seed=0)
    values = np.asarray(result.values)
    highest, lowest = np.argsort(-values, kind="stable"), np.argsort(values, kind="stable")
    assert study.top == [game.player_names[i] for i in highest[:2]]
    assert study.most_negative == [game.player_names[i] for i in lowest[:2]]
    assert study.n_negative == int(np.sum(values < 0))
    full, empty = game.value(np.ones((1, 6), bool))[0], game.value(np.zeros((1, 6), bool))[0]
    assert list(study.counts) == [0, 1, 2, 3, 5, 6]
    for curve in ("highest first", "lowest first", "random (mean)"):
        assert study.curves[curve][0] == pytest.approx(full)
        assert study.curves[curve][-1] == pytest.approx(empty)
    assert study.curves["highest first"][2] == pytest.approx(game.value_without(study.top))
    valuing = study.scores["valuing"]
    assert valuing["none"] == pytest.approx(full)
    assert valuing["top 2"] == pytest.approx(game.value_without(study.top))
    assert valuing["2 most negative"] == pytest.approx(game.value_without(study.most_negative))
    other_game = game.with_data(*held_out["other"])
    assert study.scores["other"]["none"] == pytest.approx(other_game.value_without([]))
    assert study.scores["other"]["top 2"] == pytest.approx(other_game.value_without(study.top))
    # Efficiency of the exact values: they add up to V(N) - V(empty).
    assert values.sum() == pytest.approx(full - empty, abs=1e-9)
    again = heads_study(game, result, held_out, special_ids=SPECIAL, k=2, n_random=3, seed=0)
    assert again.scores == study.scores and again.random_sd == study.random_sd
    rows = study.score_table()
    assert [row["role"] for row in rows] == ["valuing", "held out"]
    assert rows[0]["2 random (sd)"] == study.random_sd["valuing"]
    # The random rows: draws of the seed's generator, one permutation each (as the curves').
    rng = np.random.default_rng(0)
    draws = [rng.permutation(6)[:2] for _ in range(3)]
    random = [game.value_without([game.player_names[i] for i in draw]) for draw in draws]
    assert valuing["2 random"] == pytest.approx(np.mean(random))
    assert study.random_sd["valuing"] == pytest.approx(np.std(random, ddof=1))


def test_attention_patterns_match_a_hand_computation(bert: nn.Module, game: NeuronGame) -> None:
    before = {key: value.clone() for key, value in bert.state_dict().items()}
    implementation = bert.config._attn_implementation
    inputs = words(12, seed=1)
    patterns = attention_patterns(game, inputs, SPECIAL)
    eager = copy.deepcopy(bert)  # its own config: switching it leaves bert's alone
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        attentions = eager(**inputs, output_attentions=True).attentions
    layer, head = 1, 2  # the player encoder.layer.1.attention:h2
    assert game.player_names[3 + head] == "encoder.layer.1.attention:h2"
    entropies, shares = [], []
    for row in range(12):
        length = int(inputs["attention_mask"][row].sum())
        for query in range(length):
            p = attentions[layer][row, head, query, :length].double()
            entropies.append(float(-(p * p.log()).sum()))
            shares.append(float(p[1 : length - 1].sum()))  # between [CLS] and [SEP]
    assert patterns.entropy[3 + head] == pytest.approx(np.mean(entropies), abs=1e-6)
    assert patterns.content_share[3 + head] == pytest.approx(np.mean(shares), abs=1e-6)
    assert np.all(patterns.entropy >= 0) and np.all(patterns.entropy <= np.log(LENGTH) + 1e-9)
    # The game's model is left as it came: same weights, attention kernel and no hooks.
    assert bert.config._attn_implementation == implementation
    assert all(torch.equal(value, before[key]) for key, value in bert.state_dict().items())
    assert not any(module._forward_hooks or module._forward_pre_hooks for module in bert.modules())


def test_rank_correlation_is_scipys(game: NeuronGame) -> None:
    result = exact_shapley(game)
    study = heads_study(game, result, {}, special_ids=SPECIAL, k=1, n_random=2)
    expected = stats.spearmanr(result.values, study.patterns.entropy).statistic
    assert study.rank_correlation["entropy"] == pytest.approx(expected)
    assert list(study.scores) == ["valuing"]


def test_players_must_be_heads(bert: nn.Module) -> None:
    pairs, names = rated_pairs(12, 30, seed=0, name="valuing")
    neurons = NeuronGame(
        bert,
        units="mlp:encoder.layer.0.output:0-3",
        data=words(12, seed=1),
        reference=words(20, seed=2),
        metric=spearman_similarity(pairs, names),
        output=mean_pooled,
    )
    result = exact_shapley(neurons)
    with pytest.raises(
        ValueError, match=r"attention heads as players.*'encoder\.layer\.0\.output:n0'"
    ):
        heads_study(neurons, result, {}, special_ids=SPECIAL, k=1)
