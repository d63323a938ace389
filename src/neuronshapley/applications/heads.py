"""Attention heads of a transformer: their values, removal, repair and attention patterns.

The study of issue 13 on the bundled encoder (``zoo.load("minilm")``): the heads are valued for
a whole-set metric on one benchmark (MEN: the Spearman correlation of the embeddings' cosine
similarities with people's ratings); the heads with the highest and the most negative values
are removed, and the encoder so repaired is scored on the valuing benchmark and on benchmarks
the values never saw, beside as many random heads (several draws, mean and sd).

And the comparison "attention weights are not explanations" (Jain & Wallace, 2019; the
chapter's point that where a head looks says little about what it contributes): each head's
Shapley value beside two importances read off its attention weights, the mean entropy of its
attention distributions and the share of attention it puts on content tokens (not ``[CLS]``,
``[SEP]`` or padding), with the Spearman rank correlation between each and the values.
"""

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray

from neuronshapley._internal.optional import require
from neuronshapley._internal.validation import as_generator, check_int
from neuronshapley.pytorch.data import ModelInputs
from neuronshapley.results.result import ShapleyResult
from neuronshapley.typing import Seed
from neuronshapley.units.ablation import evaluation_mode
from neuronshapley.units.game import NeuronGame

_OWNER = "heads_study"
CURVE_COUNTS = (0, 1, 2, 3, 5, 10, 20, 40)
"""Heads removed at the points of the removal curves (and every head, the last point)."""


@dataclass(frozen=True)
class AttentionPatterns:
    """What each head's attention weights look like on some inputs (no ablation).

    Attributes:
        entropy: Mean entropy (nats) of each head's attention distribution over the keys,
            averaged over the real (non-padding) query tokens of every example, shape
            ``(n_heads,)``; low is focused, ``log(length)`` is uniform.
        content_share: Mean share of each head's attention on content tokens (real tokens other
            than the given special ones), over the same queries, shape ``(n_heads,)``.
    """

    entropy: NDArray[np.float64]
    content_share: NDArray[np.float64]


@dataclass(frozen=True)
class HeadsStudy:
    """Values, removal and repair of a transformer's heads, and their attention patterns.

    Attributes:
        names: The heads (``"<block>:h<index>"``), as the game's players.
        blocks: The attention block of each head, in the model's order.
        values: Shapley value of each head, aligned with ``names``.
        k: Heads removed by the repairs.
        top: The ``k`` heads with the highest values, highest first.
        most_negative: The ``k`` heads with the lowest values, lowest first.
        n_negative: How many heads have a negative value.
        counts: Heads removed at each point of :attr:`curves` (increasing, from 0).
        curves: ``"highest first"``, ``"lowest first"`` -> the valuing metric after removing
            that many heads in that order; ``"random (mean)"`` and ``"random (sd)"`` over
            :attr:`n_random` random orders.
        scores: Benchmark -> removal (``"none"``, ``"top k"``, ``"k most negative"``,
            ``"k random"``) -> metric; ``"k random"`` is the mean over the draws.
        random_sd: Benchmark -> standard deviation of the metric over the random draws.
        n_random: Random draws (each removes ``k`` uniformly random heads).
        valuing: The benchmark the values were computed on.
        patterns: Attention entropy and content share of each head.
        rank_correlation: ``"entropy"``, ``"content share"`` -> Spearman rank correlation of
            that importance with the values (``None`` where either is constant).
    """

    names: list[str]
    blocks: list[str]
    values: NDArray[np.float64]
    k: int
    top: list[str]
    most_negative: list[str]
    n_negative: int
    counts: NDArray[np.int64]
    curves: dict[str, NDArray[np.float64]]
    scores: dict[str, dict[str, float]]
    random_sd: dict[str, float]
    n_random: int
    valuing: str
    patterns: AttentionPatterns
    rank_correlation: dict[str, float | None]

    @property
    def removals(self) -> tuple[str, str, str, str]:
        """The row names of :attr:`scores`' inner dicts, in order."""
        k = self.k
        return ("none", f"top {k}", f"{k} most negative", f"{k} random")

    def table(self) -> list[dict[str, Any]]:
        """One row per head: name, block, value, rank, entropy and content share."""
        order = np.argsort(-self.values, kind="stable")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(1, len(order) + 1)
        return [
            {
                "head": name,
                "block": block,
                "value": float(self.values[i]),
                "rank": int(rank[i]),
                "attention entropy": float(self.patterns.entropy[i]),
                "content share": float(self.patterns.content_share[i]),
            }
            for i, (name, block) in enumerate(zip(self.names, self.blocks, strict=True))
        ]

    def score_table(self) -> list[dict[str, Any]]:
        """One row per benchmark: the metric after each removal (random: mean and sd)."""
        rows = []
        for benchmark, scores in self.scores.items():
            row: dict[str, Any] = {
                "benchmark": benchmark,
                "role": "valuing" if benchmark == self.valuing else "held out",
            }
            row.update({removal: scores[removal] for removal in self.removals})
            row[f"{self.k} random (sd)"] = self.random_sd[benchmark]
            rows.append(row)
        return rows


def head_index(game: NeuronGame) -> tuple[list[str], NDArray[np.intp], NDArray[np.intp]]:
    """The attention blocks of a game's heads, and each head's block number and head number.

    Raises:
        ValueError: If a player is not a head (named ``"<block>:h<index>"`` by
            ``ns.units.attention_heads``).
    """
    blocks: list[str] = []
    block_of, head_of = [], []
    for name, block in zip(game.player_names, game.unit_layers, strict=True):
        prefix, _, head = name.rpartition(":h")
        if not head.isdigit() or prefix != block:
            raise ValueError(
                f"The game passed to {_OWNER} must have attention heads as players "
                "(units=ns.units.attention_heads(model), named '<block>:h<index>'). Got the "
                f"player {name!r} instead."
            )
        if block not in blocks:
            blocks.append(block)
        block_of.append(blocks.index(block))
        head_of.append(int(head))
    return blocks, np.asarray(block_of, dtype=np.intp), np.asarray(head_of, dtype=np.intp)


def attention_patterns(
    game: NeuronGame, inputs: Mapping[str, torch.Tensor], special_ids: Sequence[int]
) -> AttentionPatterns:
    """Each head's mean attention entropy and share of attention on content tokens.

    The weights come from a copy of the game's model switched to eager attention (fused
    attention kernels do not return them); the game's model is not touched. The model's
    ``attentions`` must be one per attention block of the game's heads, in order.

    Args:
        game: A game whose players are the model's attention heads.
        inputs: Tokenized examples (``input_ids``, ``attention_mask``, ...).
        special_ids: Token ids that are not content (e.g. ``[CLS]`` and ``[SEP]``).
    """
    blocks, block_of, head_of = head_index(game)
    model: Any = copy.deepcopy(game.model)
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    batch = {key: value.to(game.device) for key, value in inputs.items()}
    with evaluation_mode(model), torch.inference_mode():
        attentions = model(**batch, output_attentions=True).attentions
    if attentions is None or len(attentions) != len(blocks):
        raise ValueError(
            f"{_OWNER} needs the model's attention weights, one tensor per attention block "
            f"({len(blocks)}); the model returned {0 if attentions is None else len(attentions)}."
        )
    real = batch["attention_mask"].bool()
    special = torch.tensor(list(special_ids), device=game.device)
    content = real & ~torch.isin(batch["input_ids"], special)
    queries = real.double()  # (n, length): the real query tokens
    entropy = np.empty(len(block_of))
    share = np.empty(len(block_of))
    per_block_entropy, per_block_share = [], []
    for weights in attentions:  # (n, heads, queries, keys)
        p = weights.double()
        h = -torch.xlogy(p, p).sum(dim=-1)  # (n, heads, queries)
        on_content = (p * content[:, None, None, :].double()).sum(dim=-1)
        scale = queries[:, None, :]
        per_block_entropy.append((h * scale).sum(dim=(0, 2)) / scale.sum(dim=(0, 2)))
        per_block_share.append((on_content * scale).sum(dim=(0, 2)) / scale.sum(dim=(0, 2)))
    for j, (block, head) in enumerate(zip(block_of, head_of, strict=True)):
        entropy[j] = float(per_block_entropy[block][head])
        share[j] = float(per_block_share[block][head])
    return AttentionPatterns(entropy=entropy, content_share=share)


def heads_study(
    game: NeuronGame,
    result: ShapleyResult,
    evaluations: Mapping[str, tuple[ModelInputs, Any]],
    *,
    special_ids: Sequence[int],
    k: int = 10,
    n_random: int = 10,
    seed: Seed = 0,
    valuing: str = "valuing",
) -> HeadsStudy:
    """Remove a transformer's top, most negative and random heads; compare with attention.

    Args:
        game: The game the heads were valued on (players: the heads; ``game.metric`` the
            valuing benchmark's metric).
        result: The heads' values (players in the game's order).
        evaluations: Held-out benchmark name -> ``(inputs, metric)`` to score the repaired
            encoder on (through ``game.with_data``: the same ablation fills).
        special_ids: Token ids that are not content, for the attention content share.
        k: Heads removed by each repair. Default 10.
        n_random: Random draws of ``k`` heads (and random orders of the removal curve).
            Default 10.
        seed: Seed of the random draws. Default 0.
        valuing: The valuing benchmark's name in the tables. Default ``"valuing"``.

    Returns:
        A :class:`HeadsStudy`.
    """
    stats = require("scipy.stats", "zoo", "The heads study's rank correlations")
    if list(result.player_names) != list(game.player_names):
        raise ValueError(
            f"The 'result' parameter of {_OWNER} must hold the values of the game's players, in "
            "its order."
        )
    blocks, block_of, _ = head_index(game)
    n = game.n_players
    check_int(k, "k", _OWNER, min_value=1, max_value=n)
    check_int(n_random, "n_random", _OWNER, min_value=2)
    rng = as_generator(seed, _OWNER)
    values = np.asarray(result.values, dtype=np.float64)
    # Ties keep the players' order both ways (the metric moves in steps of ranks: ties happen).
    by_value = np.argsort(-values, kind="stable")
    lowest_first = np.argsort(values, kind="stable")
    top, lowest = by_value[:k], lowest_first[:k]
    draws = [rng.permutation(n) for _ in range(n_random)]

    def without(players: NDArray[np.intp]) -> NDArray[np.bool_]:
        coalition = np.ones(n, dtype=bool)
        coalition[players] = False
        return coalition

    # Removal curves on the valuing data: both orders and the random ones in one batched call.
    counts = np.asarray(sorted({c for c in CURVE_COUNTS if c < n} | {n}), dtype=np.int64)
    orders = [by_value, lowest_first, *draws]
    rows = [without(order[:count]) for order in orders for count in counts]
    curve_values = np.asarray(game.value(np.stack(rows)), dtype=np.float64)
    curve_values = curve_values.reshape(len(orders), len(counts))
    random_curves = curve_values[2:]
    curves = {
        "highest first": curve_values[0],
        "lowest first": curve_values[1],
        "random (mean)": random_curves.mean(axis=0),
        "random (sd)": random_curves.std(axis=0, ddof=1),
    }

    # The repairs, on the valuing benchmark and every held-out one.
    repairs = np.stack(
        [without(np.array([], dtype=np.intp)), without(top), without(lowest)]
        + [without(draw[:k]) for draw in draws]
    )
    removals = ("none", f"top {k}", f"{k} most negative", f"{k} random")
    scores: dict[str, dict[str, float]] = {}
    random_sd: dict[str, float] = {}
    games = {valuing: game}
    games.update(
        {name: game.with_data(inputs, metric) for name, (inputs, metric) in evaluations.items()}
    )
    for name, scored in games.items():
        got = np.asarray(scored.value(repairs), dtype=np.float64)
        scores[name] = dict(zip(removals, [*got[:3], float(got[3:].mean())], strict=True))
        random_sd[name] = float(got[3:].std(ddof=1))

    patterns = attention_patterns(game, cast(dict[str, torch.Tensor], game.data.x), special_ids)
    correlation = {
        "entropy": _rank_correlation(stats, values, patterns.entropy),
        "content share": _rank_correlation(stats, values, patterns.content_share),
    }
    names = list(game.player_names)
    return HeadsStudy(
        names=names,
        blocks=[blocks[b] for b in block_of],
        values=values,
        k=k,
        top=[names[i] for i in top],
        most_negative=[names[i] for i in lowest],
        n_negative=int(np.sum(values < 0)),
        counts=counts,
        curves=curves,
        scores=scores,
        random_sd=random_sd,
        n_random=n_random,
        valuing=valuing,
        patterns=patterns,
        rank_correlation=correlation,
    )


def _rank_correlation(
    stats: Any, values: NDArray[np.float64], importance: NDArray[np.float64]
) -> float | None:
    """Spearman's rho, or ``None`` where one side is constant (a correlation is undefined)."""
    if np.ptp(values) == 0 or np.ptp(importance) == 0:
        return None
    return float(stats.spearmanr(values, importance).statistic)
