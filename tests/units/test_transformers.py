"""Transformers as they come: Hugging Face BERT and GPT-2 built from configs (no weights, nothing
downloaded), heads and MLP neurons by pattern, dict and tuple inputs with padding, a label-free
metric, exact values against the permutation estimator, and the model left as it came."""

import itertools
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import neuronshapley as ns
from neuronshapley.pytorch.metrics import MetricError, from_outputs
from neuronshapley.units import NeuronGame, resolve_units

transformers = pytest.importorskip(
    "transformers",
    reason="transformers is not installed: pip install 'neuronshapley[transformers]'",
)

VOCAB, HIDDEN, SEQ = 50, 16, 7


@pytest.fixture(scope="module", autouse=True)
def offline() -> Iterator[None]:
    """Nothing here may reach the hub: the models are built from configs."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def bert() -> nn.Module:
    config = transformers.BertConfig(
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        vocab_size=VOCAB,
        max_position_embeddings=32,
    )
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


@pytest.fixture(scope="module")
def gpt2() -> nn.Module:
    config = transformers.GPT2Config(
        n_embd=HIDDEN, n_layer=2, n_head=2, vocab_size=VOCAB, n_positions=32,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.GPT2Model(config).eval()


def tokens(n: int, seed: int, length: int = SEQ) -> dict[str, torch.Tensor]:
    """Token ids padded to ``length``: each example has 3 to ``length`` real tokens."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, length), generator=generator)
    lengths = torch.randint(3, length + 1, (n,), generator=generator)
    mask = (torch.arange(length)[None, :] < lengths[:, None]).long()
    return {"input_ids": ids * mask, "attention_mask": mask}


def pooled(result: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean of the last hidden states over the real tokens: one embedding per example."""
    weights = inputs["attention_mask"].unsqueeze(-1).to(result.last_hidden_state.dtype)
    return (result.last_hidden_state * weights).sum(dim=1) / weights.sum(dim=1)


REFERENCES = torch.randn(6, HIDDEN, generator=torch.Generator().manual_seed(3))


def similarity(embeddings: torch.Tensor) -> float:
    """Label-free: mean cosine similarity of each example's embedding to a fixed reference."""
    return float(torch.cosine_similarity(embeddings.double(), REFERENCES.double(), dim=-1).mean())


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def assert_untouched(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[key], before[key]) for key in before)
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert not model.training


# -- selection ---------------------------------------------------------------------------------


def test_bert_heads_and_neurons_by_pattern(bert: nn.Module) -> None:
    units = ns.units.attention_heads(bert)
    expected = [f"encoder.layer.{i}.attention:h{h}" for i in range(2) for h in range(2)]
    assert units.names == expected
    assert resolve_units(bert, "heads:encoder.layer.*.attention").names == expected
    assert resolve_units(bert, "heads:encoder.layer.1.attention:h1").names == [expected[-1]]
    layer = units.layers[0]
    assert (layer.path, layer.kind, layer.size, layer.group) == (
        "encoder.layer.0.attention.output.dense", "heads", 2, 8,
    )  # fmt: skip
    assert units.unit_layers[0] == "encoder.layer.0.attention"
    neurons = ns.units.mlp_neurons(bert)
    assert neurons.n_units == 2 * 32
    assert neurons.names[:2] == ["encoder.layer.0.output:n0", "encoder.layer.0.output:n1"]
    assert neurons.layers[0].path == "encoder.layer.0.output.dense"
    assert resolve_units(bert, "mlp:encoder.layer.1.output:0-2").names == [
        f"encoder.layer.1.output:n{i}" for i in range(3)
    ]


def test_gpt2_conv1d_projections(gpt2: nn.Module) -> None:
    units = ns.units.attention_heads(gpt2)
    assert units.names == [f"h.{i}.attn:h{h}" for i in range(2) for h in range(2)]
    assert type(gpt2.get_submodule(units.layers[0].path)).__name__ == "Conv1D"
    assert units.layers[0].group == HIDDEN // 2  # from the (in, out) weight of the Conv1D
    neurons = resolve_units(gpt2, "mlp:h.*.mlp")
    assert neurons.n_units == 2 * 4 * HIDDEN
    assert neurons.names[0] == "h.0.mlp:n0"


def test_activation_names_the_projection_instead(bert: nn.Module, gpt2: nn.Module) -> None:
    with pytest.raises(TypeError, match=r"activation \(NewGELUActivation\).*units='mlp:h\.0\.mlp'"):
        resolve_units(gpt2, "h.0.mlp.act")
    with pytest.raises(
        TypeError,
        match=r"'encoder\.layer\.1\.output\.dense'.*units='mlp:encoder\.layer\.1\.output'",
    ):
        resolve_units(bert, "encoder.layer.1.intermediate.intermediate_act_fn")


def test_pattern_matching_no_block_lists_them(bert: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"matches no attention block.*'encoder\.layer\.0\.att"):
        resolve_units(bert, "heads:decoder.*")


# -- the game ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bert_game(bert: nn.Module) -> NeuronGame:
    return NeuronGame(
        bert,
        units="heads:encoder.layer.*.attention",
        data=tokens(6, seed=1),
        reference=tokens(10, seed=2),
        metric=similarity,
        output=pooled,
    )


def test_token_mean_is_the_default_and_matches_a_hand_computation(
    bert: nn.Module, bert_game: NeuronGame
) -> None:
    assert bert_game.ablation == "token_mean"
    assert bert_game.reuse is None
    reference, data = tokens(10, seed=2), tokens(6, seed=1)
    projection = bert.get_submodule("encoder.layer.1.attention.output.dense")
    seen: list[torch.Tensor] = []
    handle = projection.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            bert(**reference)
    finally:
        handle.remove()
    mask = reference["attention_mask"].bool()
    fill = seen[0][mask].double().mean(dim=0)[8:16]  # head 1: input features 8-15

    def ablate(_: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        heads = args[0].clone()
        heads[..., 8:16] = fill.to(heads.dtype)
        return (heads,)

    handle = projection.register_forward_pre_hook(ablate)
    try:
        with torch.no_grad():
            by_hand = similarity(pooled(bert(**data), data))
    finally:
        handle.remove()
    assert bert_game.value_without(["encoder.layer.1.attention:h1"]) == pytest.approx(
        by_hand, abs=1e-6
    )


def test_token_mean_ignores_padding_length(bert: nn.Module, bert_game: NeuronGame) -> None:
    reference = tokens(10, seed=2)
    longer = {key: nn.functional.pad(value, (0, 5)) for key, value in reference.items()}
    padded = NeuronGame(
        bert,
        units="heads:encoder.layer.*.attention",
        data=tokens(6, seed=1),
        reference=longer,
        metric=similarity,
        output=pooled,
    )
    for ours, theirs in zip(bert_game.fills, padded.fills, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def as_tuple(split: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return (split["input_ids"], split["attention_mask"])


def test_token_mean_finds_the_mask_however_the_model_is_called(
    bert: nn.Module, bert_game: NeuronGame
) -> None:
    """The mask is the ``attention_mask`` the model receives: second of a tuple passed as
    ``model(*inputs)`` (BERT's order), or the keyword a ``forward`` callable gives."""
    data, reference = as_tuple(tokens(6, seed=1)), as_tuple(tokens(10, seed=2))

    def tuple_output(result: Any, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return pooled(result, {"attention_mask": inputs[1]})

    positional = NeuronGame(
        bert, units="heads:encoder.layer.*.attention", data=(data, None),
        reference=(reference, None), metric=similarity, output=tuple_output,
    )  # fmt: skip
    by_keyword = NeuronGame(
        bert, units="heads:encoder.layer.*.attention", data=(data, None),
        reference=(reference, None), metric=similarity, output=tuple_output,
        forward=lambda model, inputs: model(input_ids=inputs[0], attention_mask=inputs[1]),
    )  # fmt: skip
    assert positional.ablation == by_keyword.ablation == "token_mean"
    for game in (positional, by_keyword):
        for ours, theirs in zip(bert_game.fills, game.fills, strict=True):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    # Without the mask every position counts, padding included: other fills.
    unmasked = NeuronGame(
        bert, units="heads:encoder.layer.*.attention", data=(data[:1], None),
        reference=(reference[:1], None), metric=similarity,
    )  # fmt: skip
    differences = [
        float((a - b).abs().max()) for a, b in zip(bert_game.fills, unmasked.fills, strict=True)
    ]
    assert max(differences) > 1e-3


def test_batched_values_equal_one_at_a_time(bert_game: NeuronGame) -> None:
    coalitions = np.array(list(itertools.product([False, True], repeat=4)))
    batched = bert_game.value(coalitions)
    single = np.array([bert_game.value(row[None])[0] for row in coalitions])
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-6)
    vectorised = bert_game.with_data(
        bert_game.data,
        metric=from_outputs(
            lambda outputs: torch.cosine_similarity(
                outputs.double(), REFERENCES.double(), dim=-1
            ).mean(dim=1),
            name="similarity",
            vectorised=True,
        ),
    )
    np.testing.assert_allclose(vectorised.value(coalitions), batched, rtol=0, atol=1e-12)


def test_exact_values_within_the_permutation_intervals(
    bert: nn.Module, bert_game: NeuronGame
) -> None:
    before = state(bert)
    exact = ns.exact_shapley(bert_game)
    full = bert_game.value(np.ones((1, 4), dtype=bool))[0]
    empty = bert_game.value(np.zeros((1, 4), dtype=bool))[0]
    assert exact.values.sum() == pytest.approx(full - empty, abs=1e-9)
    # Every marginal V(S + i) - V(S) lies within the range of all 16 values' differences.
    values = bert_game.value(np.array(list(itertools.product([False, True], repeat=4))))
    value_range = 2 * float(values.max() - values.min())
    sampled = ns.permutation_shapley(
        bert_game, n_permutations=200, seed=0, delta=0.01, union_bound=True,
        value_range=value_range,
    )  # fmt: skip
    covered = (sampled.ci_low <= exact.values) & (exact.values <= sampled.ci_high)
    assert covered.all(), f"missed {np.flatnonzero(~covered)}"
    assert_untouched(bert, before)


def test_gpt2_heads_and_neurons_with_tuple_inputs(gpt2: nn.Module) -> None:
    before = state(gpt2)
    data, reference = tokens(6, seed=4), tokens(8, seed=5)

    def call(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> Any:
        return model(input_ids=inputs[0], attention_mask=inputs[1])

    units = ns.units.union(
        ns.units.attention_heads(gpt2, "h.1.*"), resolve_units(gpt2, "mlp:h.0.mlp:0-3")
    )
    game = NeuronGame(
        gpt2,
        units=units,
        data=(as_tuple(data), None),
        reference=(as_tuple(reference), None),
        metric=similarity,
        forward=call,
        output=lambda result, inputs: pooled(result, {"attention_mask": inputs[1]}),
    )
    # ns.units.union keeps the order of the selections.
    assert game.player_names == ["h.1.attn:h0", "h.1.attn:h1"] + [f"h.0.mlp:n{i}" for i in range(4)]
    exact = ns.exact_shapley(game)
    assert np.isfinite(exact.values).all()
    assert np.abs(exact.values).max() > 0
    # The same game with dict inputs and the default call (model(**inputs)) agrees.
    as_dict = NeuronGame(
        gpt2, units=units, data=data, reference=reference, metric=similarity, output=pooled,
    )  # fmt: skip
    np.testing.assert_allclose(ns.exact_shapley(as_dict).values, exact.values, atol=1e-9)
    assert_untouched(gpt2, before)


def test_a_metric_that_raises_leaves_the_model_as_it_came(bert: nn.Module) -> None:
    before = state(bert)

    def broken(outputs: torch.Tensor) -> float:
        raise RuntimeError("no references loaded")

    game = NeuronGame(
        bert, units="heads:*", data=tokens(4, seed=1), reference=tokens(4, seed=2),
        metric=broken, output=pooled,
    )  # fmt: skip
    with pytest.raises(MetricError, match=r"\('broken'\) raised RuntimeError on coalition 0"):
        game.value(np.ones((2, 4), dtype=bool))
    assert_untouched(bert, before)


def test_label_metric_without_labels_is_refused(bert: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"metric 'accuracy' needs labels.*has none"):
        NeuronGame(bert, units="heads:*", data=tokens(4, seed=1), reference=tokens(4, seed=2))


def test_default_output_is_the_last_hidden_state(bert: nn.Module) -> None:
    game = NeuronGame(
        bert, units="heads:*", data=tokens(3, seed=1), reference=tokens(4, seed=2),
        metric=lambda outputs: float(outputs.mean()),
    )  # fmt: skip
    with torch.no_grad():
        expected = bert(**tokens(3, seed=1)).last_hidden_state
    torch.testing.assert_close(game.logits(), expected, rtol=0, atol=1e-6)


def test_fingerprint_covers_every_input_tensor(bert_game: NeuronGame) -> None:
    other = dict(bert_game.data.x)
    other["attention_mask"] = other["attention_mask"].clone()
    other["attention_mask"][0, 2] = 1 - other["attention_mask"][0, 2]
    assert bert_game.with_data(other).fingerprint() != bert_game.fingerprint()


def test_offline() -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_llama_o_proj_and_down_proj() -> None:
    config = transformers.LlamaConfig(
        hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=24, vocab_size=VOCAB, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaModel(config).eval()
    heads = ns.units.attention_heads(model)
    assert heads.names == ["layers.0.self_attn:h0", "layers.0.self_attn:h1"]
    assert heads.layers[0].path == "layers.0.self_attn.o_proj"
    neurons = ns.units.mlp_neurons(model)
    assert neurons.names[-1] == "layers.0.mlp:n23"
    assert neurons.layers[0].path == "layers.0.mlp.down_proj"
    game = NeuronGame(
        model, units=ns.units.union(heads, resolve_units(model, "mlp:*:0-1")),
        data=tokens(6, seed=1), reference=tokens(6, seed=2), metric=similarity, output=pooled,
    )  # fmt: skip
    assert np.isfinite(ns.exact_shapley(game).values).all()


def test_each_tower_of_a_two_tower_model_has_its_own_head_count() -> None:
    """CLIP's text and vision towers have their own configs: the first config found in the
    model (the text one) must not set the vision blocks' heads."""
    config = transformers.CLIPConfig(
        text_config={
            "hidden_size": 24, "num_attention_heads": 2, "num_hidden_layers": 1,
            "intermediate_size": 32, "vocab_size": VOCAB, "bos_token_id": 0, "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 24, "num_attention_heads": 4, "num_hidden_layers": 1,
            "intermediate_size": 32, "image_size": 16, "patch_size": 8,
        },
        projection_dim=8,
    )  # fmt: skip
    torch.manual_seed(0)
    heads = ns.units.attention_heads(transformers.CLIPModel(config))
    per_block: dict[str, int] = {}
    for name in heads.names:
        block = name.rsplit(":", 1)[0]
        per_block[block] = per_block.get(block, 0) + 1
    assert per_block == {
        "text_model.encoder.layers.0.self_attn": 2,
        "vision_model.encoder.layers.0.self_attn": 4,
    }
