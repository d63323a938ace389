"""Ablation: replacing the output of the units outside a coalition by a fill value.

The game of Neuron Shapley (Ghorbani & Zou 2020, section 2) keeps the units of a coalition S and
*ablates* the others. Zeroing a unit's output is not neutral (a ReLU unit's mean output is
positive, and the next layer's biases were learned around it), so by default a removed unit
outputs its **mean** over a reference split, computed once by streaming over that split. The
fill is never computed on the examples the game is evaluated on.

- ``"mean"``: the per-position mean map (for a conv filter, its mean feature map);
- ``"channel_mean"``: one scalar per unit (the mean over examples and positions);
- ``"token_mean"``: one scalar per unit, the mean over the *non-padding* tokens of the reference
  (where the ``attention_mask`` the model receives is nonzero: a dict's key, or the argument of
  that name however the model is called, e.g. ``model(*inputs)`` for a tuple, or by a
  ``forward`` callable). The default for tokenized (dict or tuple) inputs:
  a per-position mean needs every sequence padded to one length, and mixes padding into the
  means of the last positions; a sentence's meaning does not sit at fixed positions anyway. With
  no ``attention_mask`` (or an activation without a token dimension) every position counts, as
  for ``"channel_mean"``;
- ``"zero"``: zero.

Hooks are registered only inside the context managers here and removed in ``finally``, so a
model leaves our code with no hook, whatever happened inside (see STYLE.md).
"""

import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from neuronshapley.pytorch.data import ModelInputs, n_examples, split_rows
from neuronshapley.pytorch.modes import evaluation_mode as evaluation_mode
from neuronshapley.units.selection import Layer

ABLATIONS = ("mean", "channel_mean", "token_mean", "zero")
# One scalar per unit, broadcast over positions: the fills that fit any sequence length.
_PER_UNIT = ("channel_mean", "token_mean")


class AblationError(ValueError):
    """A unit's activation cannot be ablated as asked (raised from inside a forward pass)."""


def mha_heads(module: nn.MultiheadAttention, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The concatenated head outputs of ``module``, batch first: ``(batch, seq, embed_dim)``.

    ``nn.MultiheadAttention`` projects its heads inside one functional call, so the heads are
    recovered by running that call with an identity output projection (eval mode, no dropout).
    """
    names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask")
    bound = dict(zip(names, args, strict=False)) | kwargs
    query, key, value = bound["query"], bound["key"], bound["value"]
    if query.dim() != 3:
        raise AblationError(
            f"Heads of a MultiheadAttention can only be ablated on batched inputs (3-D); got a "
            f"{query.dim()}-D query."
        )
    if module.batch_first:
        query, key, value = (tensor.transpose(0, 1) for tensor in (query, key, value))
    eye = torch.eye(module.embed_dim, dtype=query.dtype, device=query.device)
    heads, _ = F.multi_head_attention_forward(
        query,
        key,
        value,
        module.embed_dim,
        module.num_heads,
        module.in_proj_weight,
        module.in_proj_bias,
        module.bias_k,
        module.bias_v,
        module.add_zero_attn,
        0.0,
        eye,
        None,
        training=False,
        key_padding_mask=bound.get("key_padding_mask"),
        need_weights=False,
        attn_mask=bound.get("attn_mask"),
        use_separate_proj_weight=not module._qkv_same_embed_dim,
        q_proj_weight=module.q_proj_weight,
        k_proj_weight=module.k_proj_weight,
        v_proj_weight=module.v_proj_weight,
        is_causal=bool(bound.get("is_causal", False)),
    )
    return heads.transpose(0, 1)  # (seq, batch, embed) -> (batch, seq, embed)


def _reduce_dims(layer: Layer, activation: torch.Tensor) -> tuple[int, ...]:
    """Dimensions averaged over for one scalar per unit: all but the batch and the unit dim."""
    unit_dim = layer.channel_dim % activation.dim()
    return tuple(d for d in range(activation.dim()) if d not in (0, unit_dim))


class _Statistics:
    """Streams the sum of a layer's activations (float64) to a mean."""

    def __init__(self, layer: Layer, ablation: str) -> None:
        self.layer = layer
        self.ablation = ablation
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(
        self, activation: torch.Tensor, n_examples: int, tokens: torch.Tensor | None = None
    ) -> None:
        if activation.shape[0] != n_examples:
            raise AblationError(
                f"The output of module {self.layer.path!r} has {activation.shape[0]} rows for a "
                f"batch of {n_examples} examples: its first dimension is not the batch. Only "
                f"batch-first activations can be ablated (for attention use batch_first=True)."
            )
        values = activation.detach().double()
        if self.ablation in _PER_UNIT:
            dims = _reduce_dims(self.layer, values)
            per_unit = self.layer.size * self.layer.group
            count = n_examples * (values[0].numel() // per_unit)
            if (
                self.ablation == "token_mean"
                and tokens is not None
                and values.dim() >= 3
                and self.layer.channel_dim % values.dim() == values.dim() - 1
                and tuple(values.shape[:2]) == tuple(tokens.shape)
            ):
                # (batch, tokens, ..., units): only the non-padding tokens count.
                weights = (tokens != 0).to(values.dtype)
                values = values * weights.view(*weights.shape, *[1] * (values.dim() - 2))
                count = int(weights.sum()) * (values[0, 0].numel() // per_unit)
            part = values.sum(dim=(0, *dims)) if dims else values.sum(dim=0)
        else:
            count = n_examples
            part = values.sum(dim=0)
        if self.total is not None and self.total.shape != part.shape:
            raise AblationError(
                f"The output of module {self.layer.path!r} changes shape between batches "
                f"({tuple(self.total.shape)} then {tuple(part.shape)}), so it has no per-position "
                "mean map: use ablation='channel_mean' (one mean per unit) or 'zero'."
            )
        self.total = part if self.total is None else self.total + part
        self.count += count

    def fill(self, like: torch.Tensor) -> torch.Tensor:
        """The mean, shaped to broadcast against ``like[1:]`` (an activation without batch)."""
        if self.total is None:
            raise RuntimeError(f"Module {self.layer.path!r} never ran on the reference data.")
        mean = self.total / max(self.count, 1)
        if self.ablation in _PER_UNIT:
            # One scalar per unit feature, placed on the unit dimension.
            unit_dim = self.layer.channel_dim % like.dim()
            shape = [1] * (like.dim() - 1)
            shape[unit_dim - 1] = like.shape[unit_dim]
            mean = mean.reshape(shape)
        return mean.to(like.dtype)


def _register(
    model: nn.Module,
    layer: Layer,
    transform: Callable[[torch.Tensor], torch.Tensor],
    stack: ExitStack,
) -> None:
    """Hook ``layer`` so that its unit activation goes through ``transform``."""
    module = model.get_submodule(layer.path)
    handle: Any
    if layer.kind == "heads":

        def pre_hook(_: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
            return (transform(args[0]), *args[1:])

        handle = module.register_forward_pre_hook(pre_hook)
    elif layer.kind == "mha":
        mha = cast(nn.MultiheadAttention, module)  # Layer.kind "mha" is only given to these

        def mha_hook(
            _: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
        ) -> Any:
            heads = transform(mha_heads(mha, args, kwargs))
            out = F.linear(heads, mha.out_proj.weight, mha.out_proj.bias)
            if not mha.batch_first:
                out = out.transpose(0, 1)
            return (out, output[1])

        handle = module.register_forward_hook(mha_hook, with_kwargs=True)
    else:

        def hook(_: nn.Module, __: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
            return transform(output)

        handle = module.register_forward_hook(hook)
    stack.callback(handle.remove)


@contextmanager
def hooked(
    model: nn.Module,
    layers: Sequence[Layer],
    transforms: Sequence[Callable[[torch.Tensor], torch.Tensor]],
) -> Iterator[None]:
    """Route each layer's unit activation through its transform; all hooks go on exit."""
    with ExitStack() as stack:
        for layer, transform in zip(layers, transforms, strict=True):
            _register(model, layer, transform, stack)
        yield


def token_mask(inputs: ModelInputs) -> torch.Tensor | None:
    """The ``attention_mask`` of dict inputs (nonzero: a real token), else None."""
    if isinstance(inputs, dict):
        return _as_mask(inputs.get("attention_mask"))
    return None


def received_mask(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The ``attention_mask`` argument of a call ``model(*args, **kwargs)``, else None.

    Bound to the signature of ``model.forward``, so a tuple of inputs (``model(*inputs)``) or a
    ``forward`` callable's own call finds the mask wherever the model takes it (a Hugging Face
    BERT takes it second, positionally).
    """
    try:
        signature = inspect.signature(model.forward)
        bound = signature.bind_partial(*args, **kwargs)
    except (TypeError, ValueError):  # no signature, or a call it does not accept
        return _as_mask(kwargs.get("attention_mask"))
    if "attention_mask" in bound.arguments:
        return _as_mask(bound.arguments["attention_mask"])
    for name, parameter in signature.parameters.items():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:  # forward(self, **kwargs)
            return _as_mask(bound.arguments.get(name, {}).get("attention_mask"))
    return None


def _as_mask(mask: Any) -> torch.Tensor | None:
    return mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None


def compute_fills(
    model: nn.Module,
    layers: Sequence[Layer],
    inputs: ModelInputs,
    ablation: str,
    *,
    batch_size: int,
    forward: Callable[[ModelInputs], Any] | None = None,
) -> tuple[list[torch.Tensor], int]:
    """The fill of every layer, and the bytes of activations one example produces.

    Streams ``inputs`` (the reference split) through the model in batches of ``batch_size``,
    each batch run by ``forward`` (default ``model(batch)``).

    Returns:
        One fill per layer (broadcastable against the layer's activation without its batch
        dimension), and an upper bound on the activation bytes per example (the sum over every
        module's output), which sizes the chunks of batched evaluation.
    """
    statistics = [_Statistics(layer, ablation) for layer in layers]
    first: list[torch.Tensor | None] = [None] * len(layers)
    count = 0
    tokens: torch.Tensor | None = None
    activation_bytes = [0]

    def observer(index: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def observe(activation: torch.Tensor) -> torch.Tensor:
            if first[index] is None:
                first[index] = activation[:1]
            if ablation != "zero":
                statistics[index].add(activation, count, tokens)
            return activation

        return observe

    def count_bytes(_: nn.Module, __: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            activation_bytes[0] += output.numel() * output.element_size()

    def find_mask(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        # The mask the model receives, however it was called (dict, tuple, forward callable),
        # taken at every call that passes one: a forward that calls the model twice weighs
        # each call's own.
        nonlocal tokens
        found = received_mask(module, args, kwargs)
        if found is not None:
            tokens = found

    with ExitStack() as stack:
        stack.enter_context(hooked(model, layers, [observer(i) for i in range(len(layers))]))
        for module in model.modules():
            stack.callback(module.register_forward_hook(count_bytes).remove)
        if ablation == "token_mean":
            # A pre-hook of the model itself: it runs before any submodule's hook.
            stack.callback(model.register_forward_pre_hook(find_mask, with_kwargs=True).remove)
        for batch in split_rows(inputs, batch_size):
            count = n_examples(batch)
            tokens = token_mask(batch)
            activation_bytes[0] = 0
            if forward is None:
                model(batch)
            else:
                forward(batch)
            per_example = -(-activation_bytes[0] // count)
            if ablation == "zero":
                break  # only the shapes were needed
    fills = []
    for index, layer in enumerate(layers):
        like = first[index]
        if like is None:
            raise AblationError(
                f"Module {layer.path!r} did not run when the model was applied to the reference "
                "data, so its units cannot be ablated (is it used in forward?)."
            )
        if ablation == "zero":
            fills.append(torch.zeros((), dtype=like.dtype, device=like.device))
        else:
            fills.append(statistics[index].fill(like))
    return fills, per_example
