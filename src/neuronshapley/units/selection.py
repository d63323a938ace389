"""What a player is: a unit of a network, named ``"<module path>:<index>"``.

A unit is one output channel of a ``Conv1d/2d/3d`` (a filter), one output feature of a
``Linear`` (a neuron), one channel of a ``BatchNorm``, or one attention head. A head is a group
of consecutive *input* features of an output projection (head h of a ``Linear`` out-projection
over ``n_heads * head_dim`` features is inputs ``h*head_dim ... (h+1)*head_dim - 1``); for
``nn.MultiheadAttention`` the module itself is selected and its heads are found for you.

Units are selected by module-name patterns (``"conv*"``, ``"features.3"``, ``"fc1:0-9"``), lists
of them, a callable ``(name, module) -> bool``, or the helpers :func:`conv_filters`,
:func:`linear_neurons`, :func:`attention_heads` and :func:`mlp_neurons`. Every unit carries its
layer (the module path), which reports use to show where the valuable units sit.

Transformers (Hugging Face and alike): :func:`attention_heads` finds every attention block whose
output projection it knows (BERT-like ``attention.output.dense``, GPT-2 ``attn.c_proj``, a
``Conv1D`` with its weight stored transposed, LLaMA-like ``o_proj``, ``out_proj``), reads the
number of heads from the model's config and names head h of block ``b`` ``"b:h<h>"``;
:func:`mlp_neurons` takes the neurons after the MLP's activation, i.e. the input features of its
down projection (``output.dense``, ``mlp.c_proj``, ``down_proj``, ``fc2``), named ``"b:n<i>"`` after
the block ``b`` holding that projection. The string forms ``units="heads:<pattern>"`` and
``units="mlp:<pattern>"`` select the same by block path. Both are ablated at the input of the
projection, as :func:`heads` does.
"""

import dataclasses
import difflib
import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
ABLATABLE_TYPES = "Conv1d/2d/3d, Linear, BatchNorm1d/2d/3d or MultiheadAttention"
_UNIT_RE = re.compile(r"^(?P<path>.*):(?P<first>\d+)(?:-(?P<last>\d+))?$")

UnitSelector = Callable[[str, nn.Module], bool]


@dataclass(frozen=True)
class Layer:
    """The selected units of one module.

    Attributes:
        path: The module's path in the model (``model.get_submodule(path)``).
        kind: ``"conv"``, ``"linear"``, ``"norm"``, ``"heads"`` (input groups of an output
            projection) or ``"mha"`` (``nn.MultiheadAttention``).
        size: Number of units the module has (channels, features or heads).
        indices: The selected units, sorted, each in ``[0, size)``.
        channel_dim: The activation dimension that indexes the units (1 for channels, -1 for
            features and heads).
        group: Activation features per unit (1, or the head dimension for heads).
        label: The path the units are named after when it is not the module's own: the
            attention or MLP block of a transformer (``"encoder.layer.0.attention"``), whose
            projection ``path`` is hooked. Default ``""``: the module path.
        prefix: Put before each index in unit names (``"h"`` for heads of a block, ``"n"`` for
            MLP neurons). Default ``""``.
    """

    path: str
    kind: str
    size: int
    indices: tuple[int, ...]
    channel_dim: int
    group: int = 1
    label: str = ""
    prefix: str = ""

    @property
    def display(self) -> str:
        """The path the units are named after (:attr:`label`, or the module path)."""
        return self.label or self.path

    @property
    def hooks_input(self) -> bool:
        """Whether the unit lives in the module's input (heads) rather than its output."""
        return self.kind == "heads"

    def names(self) -> list[str]:
        return [f"{self.display}:{self.prefix}{index}" for index in self.indices]


@dataclass(frozen=True)
class UnitSet:
    """The players of a Neuron Shapley game, layer by layer.

    Attributes:
        layers: One entry per module with selected units, in the model's module order.
    """

    layers: tuple[Layer, ...]

    @property
    def names(self) -> list[str]:
        """``"<module path>:<index>"`` for every unit, layer by layer."""
        return [name for layer in self.layers for name in layer.names()]

    @property
    def unit_layers(self) -> list[str]:
        """The layer (module path) of every unit, aligned with :attr:`names`."""
        return [layer.display for layer in self.layers for _ in layer.indices]

    @property
    def n_units(self) -> int:
        return sum(len(layer.indices) for layer in self.layers)

    def __len__(self) -> int:
        return self.n_units

    def __repr__(self) -> str:
        parts = ", ".join(f"{layer.path}: {len(layer.indices)}" for layer in self.layers)
        return f"UnitSet({self.n_units} units; {parts})"


def describe_module(module: nn.Module) -> tuple[str, int, int, int] | None:
    """``(kind, size, channel_dim, group)`` for a module whose units we can ablate, else None."""
    if isinstance(module, _CONV):
        return "conv", module.out_channels, 1, 1
    if isinstance(module, nn.Linear):
        return "linear", module.out_features, -1, 1
    if isinstance(module, _NORM):
        return "norm", module.num_features, 1, 1
    if isinstance(module, nn.MultiheadAttention):
        return "mha", module.num_heads, -1, module.head_dim
    return None


def ablatable_modules(model: nn.Module) -> list[str]:
    """Paths of the modules whose units can be selected, in module order.

    The ``out_proj`` of an ``nn.MultiheadAttention`` is left out: it never runs as a module
    (the attention calls its weights directly); its heads are the attention's units.
    """
    projections = _attention_projections(model)
    return [
        name
        for name, module in model.named_modules()
        if name and name not in projections and describe_module(module)
    ]


def _attention_projections(model: nn.Module) -> set[str]:
    return {
        f"{name}.out_proj" if name else "out_proj"
        for name, module in model.named_modules()
        if isinstance(module, nn.MultiheadAttention)
    }


def _layer(model: nn.Module, path: str, indices: Iterable[int] | None, owner: str) -> Layer:
    module = model.get_submodule(path)
    described = describe_module(module)
    if described is None:
        if _is_activation(module) and mlp_blocks(model):  # in a transformer's MLP
            raise TypeError(_activation_message(model, path, module, owner))
        raise TypeError(
            f"The module {path!r} passed to {owner} is a {type(module).__name__}, whose units "
            f"cannot be ablated. Units are the output channels or features of {ABLATABLE_TYPES} "
            f"modules (or heads, see ns.units.heads). Ablatable modules in this model: "
            f"{_listing(ablatable_modules(model))}."
        )
    kind, size, channel_dim, group = described
    chosen = tuple(range(size)) if indices is None else tuple(sorted(set(indices)))
    bad = [index for index in chosen if not 0 <= index < size]
    if bad:
        raise ValueError(
            f"The units passed to {owner} ask for index {bad[0]} of module {path!r}, which has "
            f"{size} units (indices 0 to {size - 1})."
        )
    return Layer(path, kind, size, chosen, channel_dim, group)


def _listing(names: Sequence[str], limit: int = 12) -> str:
    if not names:
        return "none"
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _closest(name: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.4)
    return _listing(close) if close else _listing(list(candidates))


def _match_pattern(model: nn.Module, pattern: str, owner: str) -> list[Layer]:
    match = _UNIT_RE.match(pattern)
    indices: range | None = None
    if match:
        first = int(match["first"])
        last = int(match["last"]) if match["last"] else first
        if last < first:
            raise ValueError(
                f"The unit range {pattern!r} passed to {owner} is empty: write 'first-last' "
                f"with first <= last."
            )
        pattern, indices = match["path"], range(first, last + 1)
    names = [name for name, _ in model.named_modules() if name]
    if any(char in pattern for char in "*?["):
        ablatable = ablatable_modules(model)
        paths = [name for name in ablatable if fnmatch.fnmatchcase(name, pattern)]
        if not paths:
            raise ValueError(
                f"The units pattern {pattern!r} passed to {owner} matches no ablatable module. "
                f"Ablatable modules ({ABLATABLE_TYPES}): {_listing(ablatable)}."
            )
        return [_layer(model, path, indices, owner) for path in paths]
    if pattern not in names:
        raise ValueError(
            f"The model has no module named {pattern!r} (in the units passed to {owner}). "
            f"Closest module names: {_closest(pattern, names)}."
        )
    return [_layer(model, pattern, indices, owner)]


def _combine(layers: Iterable[Layer]) -> dict[str, Layer]:
    """One layer per module path, holding the union of the selected indices."""
    by_path: dict[str, Layer] = {}
    for layer in layers:
        old = by_path.get(layer.path)
        if old is not None:
            indices = tuple(sorted(set(old.indices) | set(layer.indices)))
            layer = dataclasses.replace(layer, indices=indices)
        by_path[layer.path] = layer
    return by_path


def _merge(model: nn.Module, layers: Iterable[Layer]) -> UnitSet:
    order = {name: i for i, (name, _) in enumerate(model.named_modules())}
    combined = _combine(layers).values()
    return UnitSet(tuple(sorted(combined, key=lambda layer: order[layer.path])))


def default_units(model: nn.Module) -> UnitSet:
    """Every convolution filter; for a model without convolutions, every hidden neuron."""
    convs = conv_filters(model)
    return convs if convs.n_units else linear_neurons(model)


def resolve_units(model: nn.Module, units: Any, owner: str = "NeuronGame") -> UnitSet:
    """Turn a units selection into a :class:`UnitSet`.

    Args:
        model: The network.
        units: ``None`` (:func:`default_units`), a ``UnitSet``, a pattern string (fnmatch on module
            paths, optionally ``":i"`` or ``":i-j"`` for some units of the matched modules), a list
            of patterns, or a callable ``(name, module) -> bool``.
        owner: Who asks, for error messages.
    """
    if units is None:
        unit_set = default_units(model)
        if not unit_set.n_units:
            raise ValueError(
                f"{owner} found no units to value in this model: it has no convolution and no "
                f"hidden Linear layer. Select units with units=... among: "
                f"{_listing(ablatable_modules(model))}."
            )
        return unit_set
    if isinstance(units, UnitSet):
        unit_set = units
        for layer in unit_set.layers:  # the UnitSet must fit this model
            if layer.kind == "heads":
                heads(model, layer.path, layer.size)
            else:
                _layer(model, layer.path, layer.indices, owner)
    elif isinstance(units, str):
        unit_set = _merge(model, _match_any(model, units, owner))
    elif callable(units):
        paths = [
            name
            for name, module in model.named_modules()
            if name and _selects(units, name, module, owner)
        ]
        unit_set = _merge(model, (_layer(model, path, None, owner) for path in paths))
    elif isinstance(units, Sequence) and all(isinstance(unit, str) for unit in units):
        unit_set = _merge(
            model, (layer for pattern in units for layer in _match_any(model, pattern, owner))
        )
    else:
        raise TypeError(
            f"The 'units' parameter of {owner} must be None, a module-name pattern, a list of "
            f"patterns, a callable (name, module) -> bool or a UnitSet. "
            f"Got {type(units).__name__} instead."
        )
    if not unit_set.n_units:
        raise ValueError(
            f"The 'units' parameter of {owner} selects no unit (got {units!r}). Ablatable "
            f"modules: {_listing(ablatable_modules(model))}."
        )
    return unit_set


def _selects(selector: UnitSelector, name: str, module: nn.Module, owner: str) -> bool:
    """``selector(name, module)``; an exception from it says which module it raised on."""
    try:
        return bool(selector(name, module))
    except Exception as error:
        raise RuntimeError(
            f"The units selector you passed to {owner} raised {type(error).__name__} on module "
            f"{name!r} ({type(module).__name__}): {error}"
        ) from error


def conv_filters(model: nn.Module, pattern: str = "*") -> UnitSet:
    """Every output channel of the convolutions whose path matches ``pattern`` (default all)."""
    return _select(model, pattern, _CONV)


def linear_neurons(model: nn.Module, pattern: str = "*", *, include_last: bool = False) -> UnitSet:
    """Every output feature of the ``Linear`` modules matching ``pattern`` (default all).

    Args:
        model: The network.
        pattern: fnmatch pattern on module paths. Default ``"*"``.
        include_last: Include the last ``Linear`` of the model, which usually produces the
            logits (ablating a logit is rarely what one means by a neuron). Default False.
    """
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    # An out-projection of attention is a Linear too, but its units are heads, not outputs.
    projections = _attention_projections(model)
    keep = [name for name in linears if name not in projections]
    if not include_last and keep:
        keep = keep[:-1]
    paths = [name for name in keep if fnmatch.fnmatchcase(name, pattern)]
    return _merge(model, (_layer(model, path, None, "linear_neurons") for path in paths))


def attention_heads(model: nn.Module, pattern: str = "*") -> UnitSet:
    """Every attention head of the blocks whose path matches ``pattern`` (default all).

    The heads of ``nn.MultiheadAttention`` modules (named ``"<path>:<index>"``), and those of
    every attention block with a known output projection (BERT-like ``output.dense``, GPT-2
    ``c_proj``, LLaMA-like ``o_proj``, ``out_proj``), named ``"<block path>:h<index>"`` and
    ablated at the projection's input. Their number is read from the model's config
    (``num_attention_heads``), else from the block.

    Args:
        model: The network.
        pattern: fnmatch pattern on the paths of the attention modules or blocks. Default
            ``"*"``.
    """
    mha = _select(model, pattern, (nn.MultiheadAttention,))
    blocks = [
        _projection_layer(model, block, projection, "attention_heads", heads=True)
        for block, projection in attention_blocks(model)
        if fnmatch.fnmatchcase(block, pattern)
    ]
    return _merge(model, [*mha.layers, *blocks])


def mlp_neurons(model: nn.Module, pattern: str = "*") -> UnitSet:
    """The neurons after the activation of every transformer MLP whose block matches ``pattern``.

    A neuron is one input feature of the MLP's down projection (BERT-like ``output.dense``,
    GPT-2 ``mlp.c_proj``, LLaMA-like ``down_proj``, ``fc2``): the activation's output (for a
    gated MLP, the gated product). It is named ``"<block path>:n<index>"``, the block being the
    module that holds the projection (``encoder.layer.0.output``, ``h.0.mlp``), and ablated at
    the projection's input.

    Args:
        model: The network.
        pattern: fnmatch pattern on block paths. Default ``"*"``.
    """
    return _merge(
        model,
        [
            _projection_layer(model, block, projection, "mlp_neurons", heads=False)
            for block, projection in mlp_blocks(model)
            if fnmatch.fnmatchcase(block, pattern)
        ],
    )


def heads(model: nn.Module, projection: str, n_heads: int) -> UnitSet:
    """The heads of a hand-written attention, given its output projection.

    Head h is the group of input features ``h*d ... (h+1)*d - 1`` of the ``Linear`` at
    ``projection``, with ``d = in_features // n_heads``; ablating it replaces that slice of the
    projection's input.

    Args:
        model: The network.
        projection: Path of the output-projection ``Linear``.
        n_heads: Number of heads; must divide its ``in_features``.
    """
    names = [name for name, _ in model.named_modules() if name]
    if projection not in names:
        raise ValueError(
            f"The model has no module named {projection!r} (the 'projection' parameter of "
            f"heads). Closest module names: {_closest(projection, names)}."
        )
    module = model.get_submodule(projection)
    in_features = projection_inputs(module)
    if in_features is None:
        raise TypeError(
            f"The 'projection' parameter of heads must name a Linear or a transformers Conv1D "
            f"(the output projection of an attention). {projection!r} is a "
            f"{type(module).__name__}."
        )
    if not isinstance(n_heads, int) or n_heads < 1 or in_features % n_heads:
        raise ValueError(
            f"The 'n_heads' parameter of heads must be a positive int dividing the "
            f"{in_features} input features of {projection!r}. Got {n_heads!r} instead."
        )
    group = in_features // n_heads
    return UnitSet((Layer(projection, "heads", n_heads, tuple(range(n_heads)), -1, group),))


# -- transformers: attention blocks and MLPs by their projections ------------------------------

# Output projections of attention blocks, by attribute path, most specific first.
_ATTENTION_PROJECTIONS = ("o_proj", "out_proj", "c_proj", "output.dense", "dense")
_PREFIX_RE = re.compile(
    r"^(?P<kind>heads|mlp):(?P<pattern>.+?)(?::h?(?P<first>\d+)(?:-h?(?P<last>\d+))?)?$"
)


def projection_inputs(module: nn.Module) -> int | None:
    """Input features of a projection: a ``Linear``, or a transformers ``Conv1D`` (whose
    weight is stored transposed, ``(in_features, out_features)``); None for anything else."""
    if isinstance(module, nn.Linear):
        return module.in_features
    weight = getattr(module, "weight", None)
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf") and weight is not None:
        return int(weight.shape[0])
    return None


def _child(module: nn.Module, path: str) -> nn.Module | None:
    try:
        return module.get_submodule(path)
    except AttributeError:
        return None


def attention_blocks(model: nn.Module) -> list[tuple[str, str]]:
    """``(block path, output projection path)`` of every attention block found, in module order.

    A block is a module whose class name contains "Attention" (``nn.MultiheadAttention`` aside)
    and that holds one of the projections ``o_proj``, ``out_proj``, ``c_proj``, ``output.dense``,
    ``dense`` as a ``Linear`` or ``Conv1D``.
    """
    found = []
    for name, module in model.named_modules():
        if (
            isinstance(module, nn.MultiheadAttention)
            or "attention" not in type(module).__name__.lower()
        ):
            continue
        for attribute in _ATTENTION_PROJECTIONS:
            child = _child(module, attribute)
            if child is not None and projection_inputs(child) is not None:
                found.append((name, f"{name}.{attribute}" if name else attribute))
                break
    return found


def mlp_blocks(model: nn.Module) -> list[tuple[str, str]]:
    """``(block path, down projection path)`` of every transformer MLP found, in module order.

    LLaMA-like ``down_proj``; GPT-2-like ``c_fc`` then ``c_proj``; ``fc1`` then ``fc2``; BERT-like
    layers with an ``intermediate`` and an ``output.dense`` (the block is ``<layer>.output``).
    """
    found = []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        children = dict(module.named_children())
        if "down_proj" in children:
            found.append((name, f"{prefix}down_proj"))
        elif "c_fc" in children and "c_proj" in children:
            found.append((name, f"{prefix}c_proj"))
        elif "fc1" in children and "fc2" in children and "attention" not in name:
            found.append((name, f"{prefix}fc2"))
        elif "intermediate" in children and _child(module, "output.dense") is not None:
            found.append((f"{prefix}output", f"{prefix}output.dense"))
    return [
        (block, projection)
        for block, projection in found
        if projection_inputs(model.get_submodule(projection)) is not None
    ]


def _n_heads(model: nn.Module, block: str, owner: str) -> int:
    """The number of heads: the block's own (``num_heads``, ...), else the config of its nearest
    ancestor (``num_attention_heads``) — never the first config found in the model, which in a
    two-tower model (CLIP's text and vision) may be the other tower's."""
    attention = model.get_submodule(block)
    for candidate in (attention, _child(attention, "self")):
        for attribute in ("num_heads", "num_attention_heads", "n_head", "n_heads"):
            value = getattr(candidate, attribute, None)
            if isinstance(value, int) and value > 0:
                return value
    parts = block.split(".") if block else []
    for depth in range(len(parts), -1, -1):
        ancestor = model.get_submodule(".".join(parts[:depth])) if depth else model
        config = getattr(ancestor, "config", None)
        value = getattr(config, "num_attention_heads", None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(
        f"{owner} cannot tell how many heads the attention block {block!r} has: the model has "
        "no config with 'num_attention_heads' and the block no 'num_heads' attribute. Select "
        "its heads with ns.units.heads(model, '<output projection>', n_heads)."
    )


def _projection_layer(
    model: nn.Module, block: str, projection: str, owner: str, *, heads: bool
) -> Layer:
    in_features = projection_inputs(model.get_submodule(projection))
    if in_features is None:  # checked by the finders
        raise TypeError(f"{projection!r} is not a Linear or Conv1D projection.")
    if not heads:
        return Layer(projection, "heads", in_features, tuple(range(in_features)), -1, 1, block, "n")
    n_heads = _n_heads(model, block, owner)
    if in_features % n_heads:
        raise ValueError(
            f"The attention block {block!r} has {n_heads} heads (from the config), which do not "
            f"divide the {in_features} input features of its output projection {projection!r}."
        )
    group = in_features // n_heads
    return Layer(projection, "heads", n_heads, tuple(range(n_heads)), -1, group, block, "h")


def _match_any(model: nn.Module, pattern: str, owner: str) -> list[Layer]:
    """A units pattern: ``"heads:<blocks>"``, ``"mlp:<blocks>"`` or a module pattern."""
    match = _PREFIX_RE.match(pattern)
    plain = _UNIT_RE.match(pattern)
    names = {name for name, _ in model.named_modules()}
    if match is None or (plain is not None and plain["path"] in names):
        return _match_pattern(model, pattern, owner)  # a module called "heads" or "mlp"
    heads_wanted = match["kind"] == "heads"
    blocks = attention_blocks(model) if heads_wanted else mlp_blocks(model)
    what = "attention block" if heads_wanted else "transformer MLP"
    chosen = [(b, p) for b, p in blocks if fnmatch.fnmatchcase(b, match["pattern"])]
    if not chosen:
        raise ValueError(
            f"The units pattern {pattern!r} passed to {owner} matches no {what}. The {what}s "
            f"of this model: {_listing([block for block, _ in blocks])}."
        )
    layers = [_projection_layer(model, b, p, owner, heads=heads_wanted) for b, p in chosen]
    if match["first"] is None:
        return layers
    first = int(match["first"])
    last = int(match["last"]) if match["last"] else first
    wanted = range(first, last + 1)
    if not wanted:
        raise ValueError(
            f"The unit range {pattern!r} passed to {owner} is empty: write 'first-last' "
            f"with first <= last."
        )
    out = []
    for layer in layers:
        if last >= layer.size:
            raise ValueError(
                f"The units passed to {owner} ask for index {last} of {layer.display!r}, which "
                f"has {layer.size} units (indices 0 to {layer.size - 1})."
            )
        out.append(dataclasses.replace(layer, indices=tuple(wanted)))
    return out


_ACTIVATIONS = (nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Mish)


def _is_activation(module: nn.Module) -> bool:
    name = type(module).__name__
    return isinstance(module, _ACTIVATIONS) or name.endswith("Activation") or "GELU" in name


def _activation_message(model: nn.Module, path: str, module: nn.Module, owner: str) -> str:
    start = (
        f"The module {path!r} passed to {owner} is an activation ({type(module).__name__}), "
        "which has no units of its own."
    )
    blocks = mlp_blocks(model)
    parts = path.split(".")

    def shared(candidate: tuple[str, str]) -> int:
        count = 0
        for a, b in zip(parts, candidate[1].split("."), strict=False):
            if a != b:
                break
            count += 1
        return count

    block, projection = max(blocks, key=shared)
    return (
        f"{start} The neurons after it are the input features of the MLP's down projection "
        f"{projection!r}: select them with units='mlp:{block}' or "
        f"ns.units.mlp_neurons(model, {block!r}) (named '{block}:n<index>')."
    )


def _select(model: nn.Module, pattern: str, types: tuple[type[nn.Module], ...]) -> UnitSet:
    paths = [
        name
        for name, module in model.named_modules()
        if name and isinstance(module, types) and fnmatch.fnmatchcase(name, pattern)
    ]
    return _merge(model, (_layer(model, path, None, "units") for path in paths))


def union(*unit_sets: UnitSet) -> UnitSet:
    """All units of several selections, in the order the selections came."""
    return UnitSet(tuple(_combine(layer for units in unit_sets for layer in units.layers).values()))
