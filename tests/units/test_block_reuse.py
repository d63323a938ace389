"""Block reuse (transformer stacks): the same values as the plain path on random coalitions and on
permutation walks, fewer rows through the later blocks, the model left as it came (also when the
metric raises), and the plain path, with a warning, for stacks it cannot handle."""

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from neuronshapley.pytorch.metrics import MetricError
from neuronshapley.units import NeuronGame
from neuronshapley.units.blocks import plan_blocks
from tests.units._models import Snapshot, random_coalitions
from tests.units.test_transformers import REFERENCES, pooled, similarity, tokens

transformers = pytest.importorskip(
    "transformers",
    reason="transformers is not installed: pip install 'neuronshapley[transformers]'",
)

VOCAB, HIDDEN, SEQ, N_LAYERS = 50, 16, 7, 3
# The reused rows go through the same kernels as on the plain path, but in smaller batches, so
# a matrix product may block its sums differently: float32 rounding (2^-24 ~ 6e-8 relative) over
# a few hundred accumulated terms per layer and 3 layers stays far below 1e-5 on values (cosine
# similarities) of order 1. In practice the two paths agree to the bit on these models.
TOLERANCE = 1e-5


@pytest.fixture(scope="module", autouse=True)
def offline() -> Iterator[None]:
    """Nothing here may reach the hub: the models are built from configs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


def bert() -> nn.Module:
    config = transformers.BertConfig(
        hidden_size=HIDDEN, num_hidden_layers=N_LAYERS, num_attention_heads=2,
        intermediate_size=32, vocab_size=VOCAB, max_position_embeddings=32,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


def gpt2() -> nn.Module:
    config = transformers.GPT2Config(
        n_embd=HIDDEN, n_layer=N_LAYERS, n_head=2, vocab_size=VOCAB, n_positions=32,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.GPT2Model(config).eval()


def games(model: nn.Module, units: str, **kwargs: Any) -> tuple[NeuronGame, NeuronGame]:
    """The game with block reuse and the same game evaluated the plain way."""
    kwargs = {
        "units": units, "data": tokens(6, seed=1), "reference": tokens(10, seed=2),
        "metric": similarity, "output": pooled, **kwargs,
    }  # fmt: skip
    return NeuronGame(model, **kwargs), NeuronGame(model, reuse_prefixes=False, **kwargs)


def walks(n_players: int, n_walks: int, seed: int) -> np.ndarray:
    """The coalitions of ``n_walks`` permutation walks, each from the empty to the full one."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_walks):
        coalition = np.zeros(n_players, dtype=bool)
        rows.append(coalition.copy())
        for player in rng.permutation(n_players):
            coalition[player] = True
            rows.append(coalition.copy())
    return np.array(rows)


CASES = [
    (bert, "heads:encoder.layer.*.attention"),
    (bert, "mlp:encoder.layer.*.output"),
    (gpt2, "heads:h.*.attn"),
    (gpt2, "mlp:h.*.mlp"),
]


@pytest.mark.parametrize(("build", "units"), CASES)
def test_block_reuse_gives_the_plain_values(build: Any, units: str) -> None:
    model = build()
    reusing, plain = games(model, units)
    assert reusing.blocks is not None and reusing.blocks.n_blocks == N_LAYERS
    assert plain.blocks is None
    coalitions = np.concatenate(
        [
            random_coalitions(30, reusing.n_players, seed=0),
            walks(reusing.n_players, 2, seed=1)[:: max(1, reusing.n_players // 20)],
        ]
    )
    expected = plain.value(coalitions)
    assert len(np.unique(expected)) > 10  # the coalitions do differ
    np.testing.assert_allclose(reusing.value(coalitions), expected, rtol=0, atol=TOLERANCE)
    assert reusing.blocks is not None  # still on: nothing made it fall back


def test_permutation_walks_of_heads_share_the_early_blocks() -> None:
    model = bert()
    reusing, plain = games(model, "heads:encoder.layer.*.attention")
    coalitions = walks(reusing.n_players, 4, seed=2)  # 4 x 7 rows
    rows_per_block: list[list[int]] = [[] for _ in range(N_LAYERS)]
    handles = [
        layer.attention.self.register_forward_pre_hook(
            lambda _, args, __, b=b: rows_per_block[b].append(len(args[0]) if args else 0),
            with_kwargs=True,
        )
        for b, layer in enumerate(model.encoder.layer)
    ]
    try:
        values = reusing.value(coalitions)
    finally:
        for handle in handles:
            handle.remove()
    np.testing.assert_allclose(values, plain.value(coalitions), rtol=0, atol=TOLERANCE)
    seen = [sum(rows) for rows in rows_per_block]
    # Block 0 holds 2 of the 6 heads: at most 4 distinct masks per pass, far fewer than 28 rows.
    assert seen[0] < seen[-1] <= len(coalitions) * 6
    assert seen[0] <= 4 * 6 * len(rows_per_block[0])


def test_model_left_as_it_came_also_when_the_metric_raises() -> None:
    model = bert()
    snapshot = Snapshot(model)
    reusing, _ = games(model, "heads:encoder.layer.*.attention")
    reusing.value(random_coalitions(10, reusing.n_players, seed=4))
    snapshot.assert_untouched()

    def failing(embeddings: torch.Tensor) -> float:
        raise ValueError("metric failed")

    broken = NeuronGame(
        model, units="heads:encoder.layer.*.attention", data=tokens(6, seed=1),
        reference=tokens(10, seed=2), metric=failing, output=pooled,
    )  # fmt: skip
    assert broken.blocks is not None
    with pytest.raises(MetricError):
        broken.value(random_coalitions(10, broken.n_players, seed=4))
    snapshot.assert_untouched()


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.proj(x))


class Reentrant(nn.Module):
    """A stack whose first block runs again at the end: not a chain of cuts."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(Block() for _ in range(3))
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(self.blocks[0](x))


def test_blocks_run_out_of_order_fall_back_to_the_plain_path() -> None:
    model = Reentrant().eval()
    snapshot = Snapshot(model)
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    kwargs: dict[str, Any] = {
        "units": ["blocks.0.proj", "blocks.1.proj"], "data": (x, torch.zeros(8).long()),
        "reference": torch.randn(16, 4, generator=torch.Generator().manual_seed(2)),
        "metric": lambda logits: float(logits[:, 0].mean()),
    }  # fmt: skip
    reusing = NeuronGame(model, **kwargs)
    plain = NeuronGame(model, reuse_prefixes=False, **kwargs)
    assert reusing.reuse is None  # fx finds block 0 called twice: no prefix reuse
    assert reusing.blocks is not None and reusing.blocks.path == "blocks"
    coalitions = random_coalitions(12, reusing.n_players, seed=5)
    with pytest.warns(UserWarning, match=r"Block reuse is off.*block 0 ran when block 3"):
        values = reusing.value(coalitions)
    assert reusing.blocks is None
    np.testing.assert_array_equal(values, plain.value(coalitions))
    snapshot.assert_untouched()


def test_no_block_plan_when_a_layer_is_outside_the_stack() -> None:
    model = Reentrant()
    game = NeuronGame(
        model, units=["blocks.0.proj", "head"], data=(torch.randn(4, 4), torch.zeros(4).long()),
        ablation="zero", metric=lambda logits: float(logits.mean()),
    )  # fmt: skip
    assert game.blocks is None
    assert plan_blocks(model, game.layers) is None


class TorchEncoder(nn.Module):
    """``nn.TransformerEncoder``: an ``nn.ModuleList`` of layers with ``nn.MultiheadAttention``."""

    def __init__(self, batch_first: bool) -> None:
        super().__init__()
        torch.manual_seed(0)
        layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=batch_first)
        self.encoder = nn.TransformerEncoder(layer, N_LAYERS, enable_nested_tensor=False)
        self.batch_first = batch_first
        self.fc = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_first:
            return self.fc(self.encoder(x).mean(dim=1))
        return self.fc(self.encoder(x.transpose(0, 1)).mean(dim=0))


@pytest.mark.parametrize("batch_first", [True, False])
def test_torch_encoder_heads_and_sequence_first_stacks(batch_first: bool) -> None:
    model = TorchEncoder(batch_first).eval()
    generator = torch.Generator().manual_seed(6)
    kwargs: dict[str, Any] = {
        "units": [f"encoder.layers.{i}.self_attn" for i in range(N_LAYERS)],
        "data": (torch.randn(6, 5, 8, generator=generator), torch.zeros(6).long()),
        "reference": torch.randn(10, 5, 8, generator=generator),
        "metric": lambda logits: float(logits[:, 0].mean()),
    }
    reusing = NeuronGame(model, **kwargs)
    plain = NeuronGame(model, reuse_prefixes=False, **kwargs)
    # Sequence-first hidden states have no example dimension first: no block plan.
    assert (reusing.blocks is not None) == batch_first
    coalitions = random_coalitions(20, reusing.n_players, seed=7)
    np.testing.assert_allclose(
        reusing.value(coalitions), plain.value(coalitions), rtol=0, atol=TOLERANCE
    )


def to_first(embeddings: torch.Tensor) -> float:
    """Label-free, any number of examples: mean cosine similarity to one fixed reference."""
    return float(torch.cosine_similarity(embeddings.double(), REFERENCES[:1].double()).mean())


def test_passes_of_example_slices_and_per_walk_examples() -> None:
    """A small memory budget: each call takes a few coalitions on slices of 16 examples."""
    model = bert()
    units = "heads:encoder.layer.*.attention"
    sized, _ = games(model, units)
    per_example = 64 * 2**20 // sized._rows_per_pass  # the default CPU budget's rows
    kwargs: dict[str, Any] = {
        "data": tokens(40, seed=8), "memory_budget": 48 * per_example, "metric": to_first,
    }  # fmt: skip
    reusing, plain = games(model, units, **kwargs)
    assert reusing.blocks is not None and reusing._coalitions_per_call(40) == 3
    coalitions = walks(reusing.n_players, 2, seed=9)
    expected = plain.value(coalitions)
    np.testing.assert_allclose(reusing.value(coalitions), expected, rtol=0, atol=TOLERANCE)
    per_walk = {**kwargs, "examples_per_walk": 5}
    reusing, plain = games(model, units, **per_walk)
    contexts = np.repeat([0, 1], len(coalitions) // 2)
    np.testing.assert_allclose(
        reusing.value_in_contexts(coalitions, contexts),
        plain.value_in_contexts(coalitions, contexts),
        rtol=0,
        atol=TOLERANCE,
    )
    assert reusing.blocks is not None
