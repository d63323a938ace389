"""Repair: a model with some units removed for good, that runs without hooks and can be shipped.

Section 4.3 of Ghorbani & Zou (2020): removing the few units with the most negative values (or
the units that carry a bias) repairs a model. :func:`repair` turns the ablation of a
:class:`~neuronshapley.units.NeuronGame` into a plain network:

- **folded** where that is exact: a removed output channel of a ``Conv`` or output feature of a
  ``Linear`` whose fill is one constant per unit (ablation ``"zero"`` or ``"channel_mean"``, or a
  ``"mean"`` map that is constant over positions, as it always is for a ``Linear`` on vectors)
  gets zero weights and its fill as bias: ``0 . x + fill = fill``. A module without a bias gets
  one (zero for its kept units), which adds ``<path>.bias`` to the ``state_dict``;
- **wrapped** otherwise: the module is replaced by :class:`Ablated`, which computes
  ``where(mask, module(x), fill)`` exactly as the game's hook does (for heads, the mask applies to
  the module's input). Its ``state_dict`` keys become ``<path>.module.<name>`` plus
  ``<path>.mask`` and ``<path>.fill``.

:func:`save_repaired` writes one file that :func:`load_repaired` reads back in a fresh process,
without pickled code (``torch.load(weights_only=True)``). The file is a dict::

    {
        "format": "neuronshapley.repaired",
        "format_version": 1,
        "spec": {
            "model": "digits-cnn" | "path/to/file.py:factory",  # how to build the base network
            "model_sha256": "...",                 # optional: the factory file's SHA-256
            ...,                                   # anything else the caller recorded (JSON)
            "wrapped": [{"path": "conv2", "channel_dim": 1, "on_input": False}, ...],
            "added_biases": ["conv3", ...],        # Conv/Linear given a bias by folding
        },
        "state_dict": {...},                       # the repaired model's tensors, on the CPU
    }

Loading builds the base network (a bundled model's architecture, untrained, or the user's
factory: loading then runs the factory file's code; a relative path is resolved from the file's
folder, and a file whose SHA-256 no longer matches ``model_sha256`` is refused), wraps the
listed modules in :class:`Ablated`, gives the listed modules a bias, and
loads the ``state_dict`` strictly.
"""

import copy
import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from neuronshapley._internal.specs import absolute_spec, file_digest, is_spec
from neuronshapley.results.result import ShapleyResult
from neuronshapley.units.ablation import evaluation_mode
from neuronshapley.units.game import NeuronGame
from neuronshapley.units.selection import Layer

FORMAT = "neuronshapley.repaired"
FORMAT_VERSION = 1
_RULE_RE = re.compile(r"^(?P<rule>top|bottom|negative):(?P<count>.*)$")
# Marks a module that folding gave a bias, so that save_repaired records it.
_ADDED_BIAS = "neuronshapley_added_bias"
_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class Ablated(nn.Module):
    """A module with some units replaced by a fill value, without hooks.

    ``forward(x)`` is ``where(mask, module(x), fill)`` with ``mask`` placed on the unit dimension
    ``channel_dim`` of the output (or, with ``on_input``, ``module(where(mask, x, fill))``, for
    heads: groups of input features of an output projection).

    Args:
        module: The wrapped module (kept as ``.module``).
        mask: Bool, shape ``(n_features,)``: True where the unit is kept (one entry per feature
            of the unit dimension, so a head of d features has d entries).
        fill: What removed units output; broadcastable against the activation without its batch
            dimension.
        channel_dim: The activation dimension of the units (1 for channels, -1 for features).
        on_input: Mask the module's first input rather than its output. Default False.
    """

    mask: torch.Tensor
    fill: torch.Tensor

    def __init__(
        self,
        module: nn.Module,
        mask: torch.Tensor,
        fill: torch.Tensor,
        channel_dim: int,
        on_input: bool = False,
    ) -> None:
        super().__init__()
        self.module = module
        self.register_buffer("mask", mask.detach().clone().to(torch.bool))
        self.register_buffer("fill", fill.detach().clone())
        self.channel_dim = channel_dim
        self.on_input = on_input

    def _ablate(self, activation: torch.Tensor) -> torch.Tensor:
        shape = [1] * activation.dim()
        shape[self.channel_dim % activation.dim()] = self.mask.numel()
        return torch.where(self.mask.view(shape), activation, self.fill)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self.on_input:
            return self.module(self._ablate(x), *args, **kwargs)
        return self._ablate(self.module(x, *args, **kwargs))

    def extra_repr(self) -> str:
        removed = int((~self.mask).sum())
        where = "input" if self.on_input else "output"
        return f"{removed} of {self.mask.numel()} {where} features removed"


# -- which units ------------------------------------------------------------------------------


def select_units(result: ShapleyResult, spec: str | Sequence[str]) -> list[str]:
    """The units a removal spec names, in removal order.

    Args:
        result: The Shapley values of the units.
        spec: ``"top:N"`` (the N highest values, highest first), ``"bottom:N"`` (the N lowest,
            lowest first), ``"negative:N"`` (the at most N most negative values, most negative
            first: only units whose value is below 0, so fewer than N, possibly none, when fewer
            are negative), or unit names: a list, or one string of comma-separated names. The
            rules take precedence over a unit literally named ``"top:3"``.

    Returns:
        Unit names (no duplicates).

    Raises:
        ValueError: For a malformed rule, a count above the number of units, or an unknown unit
            name (the message lists the closest names).
    """
    owner = "select_units"
    names = list(result.player_names)
    if isinstance(spec, str):
        match = _RULE_RE.match(spec.strip())
        if match:
            count = _count(match["count"], spec, len(names), owner)
            if match["rule"] == "top":
                return [row.name for row in result.top(count)]
            if match["rule"] == "bottom":
                return [row.name for row in result.bottom(count)]
            return [row.name for row in result.bottom(count) if row.value < 0]
        wanted = [part.strip() for part in spec.split(",") if part.strip()]
    elif isinstance(spec, Sequence) and all(isinstance(name, str) for name in spec):
        wanted = [name.strip() for name in spec]
    else:
        raise TypeError(
            f"The 'spec' parameter of {owner} must be 'top:N', 'bottom:N', 'negative:N', or "
            f"unit names (a list or a comma-separated string). Got {spec!r} instead."
        )
    if not wanted:
        raise ValueError(f"The 'spec' parameter of {owner} names no unit. Got {spec!r}.")
    _check_names(wanted, names, f"The 'spec' parameter of {owner}", "a unit of the result")
    return list(dict.fromkeys(wanted))


def _check_names(wanted: Sequence[str], names: Sequence[str], who: str, what: str) -> None:
    """Raise if a name in ``wanted`` is not in ``names``, listing the closest ones."""
    known = set(names)
    for name in wanted:
        if name not in known:
            close = difflib.get_close_matches(name, list(names), n=5, cutoff=0.4)
            hint = ", ".join(repr(c) for c in close) if close else "none close"
            raise ValueError(
                f"{who} names {name!r}, which is not {what}. Closest unit names: {hint}."
            )


def _count(text: str, spec: str, n_units: int, owner: str) -> int:
    if not text.strip().isdigit() or int(text) < 1 or int(text) > n_units:
        raise ValueError(
            f"The 'spec' parameter of {owner} must give a count in [1, {n_units}] (the number "
            f"of units) after the colon, e.g. 'top:10'. Got {spec!r} instead."
        )
    return int(text)


# -- the repaired model -----------------------------------------------------------------------


def repair(game: NeuronGame, remove: Sequence[str]) -> nn.Module:
    """A copy of the game's model with the units ``remove`` ablated for good, without hooks.

    Removed units are folded into their module's weights where that is exact and wrapped in
    :class:`Ablated` otherwise (see the module notes). The copy is checked on the game's data:
    its metric must equal ``game.value_without(remove)`` (to 1e-6).

    Args:
        game: The game whose ablation (fills) the repair reproduces.
        remove: Names of the units to remove (players of ``game``).

    Returns:
        A new module in eval mode on the game's device; ``game.model`` is left untouched.

    Raises:
        ValueError: If a name is not a player of the game.
        ValueError: For heads of an ``nn.MultiheadAttention`` (kind ``"mha"``): its
            heads are computed inside one functional call, which no module wrapper can reach.
        RuntimeError: If the repaired model does not reproduce the ablated metric (a bug).
    """
    owner = "repair"
    if isinstance(remove, str):
        raise TypeError(
            f"The 'remove' parameter of {owner} must be a list of unit names, not one string "
            f"(got {remove!r}); use select_units to parse a spec."
        )
    removed = list(dict.fromkeys(remove))
    _check_names(
        removed, game.player_names, f"The 'remove' parameter of {owner}", "a player of the game"
    )
    coalition = game.coalition_without(removed)[0]
    model = copy.deepcopy(game.model).eval()
    offset = 0
    for layer, fill in zip(game.layers, game.fills, strict=True):
        columns = coalition[offset : offset + len(layer.indices)]
        offset += len(layer.indices)
        if columns.all():
            continue
        if layer.kind == "mha":
            raise ValueError(
                f"repair cannot remove heads of the nn.MultiheadAttention {layer.path!r}: its "
                "heads are computed inside one functional call, so no module can be wrapped "
                "around them. Rewrite the attention with an explicit output projection and "
                "value its heads with ns.units.heads(model, '<path>.proj', n_heads)."
            )
        keep = np.ones(layer.size, dtype=bool)
        keep[[index for index, kept in zip(layer.indices, columns, strict=True) if not kept]] = (
            False
        )
        module = model.get_submodule(layer.path)
        constants = _per_unit_constants(layer, fill)
        if (
            isinstance(module, _FOLDABLE)
            and layer.kind in ("conv", "linear")
            and constants is not None
        ):
            _fold(module, keep, constants)
        else:
            mask = torch.from_numpy(keep).to(fill.device)
            if layer.group > 1:
                mask = mask.repeat_interleave(layer.group)
            wrapper = Ablated(module, mask, fill, layer.channel_dim, on_input=layer.hooks_input)
            _replace(model, layer.path, wrapper)
    _check_exact(game, model, removed)
    return model


def _per_unit_constants(layer: Layer, fill: torch.Tensor) -> torch.Tensor | None:
    """The fill as one value per unit, shape ``(size,)``, or None if it varies over positions."""
    if layer.group != 1:
        return None
    if fill.dim() == 0:
        return fill.expand(layer.size)
    # The fill is the activation without its batch dimension: the unit dim moves down by one.
    unit_dim = layer.channel_dim % (fill.dim() + 1) - 1
    if unit_dim < 0 or fill.shape[unit_dim] != layer.size:
        return None
    per_unit = fill.movedim(unit_dim, 0).reshape(layer.size, -1)
    if not bool((per_unit == per_unit[:, :1]).all()):
        return None
    return per_unit[:, 0]


@torch.no_grad()
def _fold(module: nn.Module, keep: np.ndarray, constants: torch.Tensor) -> None:
    """Zero the removed units' weights and make their bias the fill: exactly the fill out."""
    weight = cast(torch.Tensor, module.weight)  # a Conv or Linear: folding is only offered there
    removed = torch.from_numpy(~keep).to(weight.device)
    if module.bias is None:
        # A new parameter: the state_dict gains "<path>.bias" (recorded by save_repaired).
        module.bias = nn.Parameter(torch.zeros(len(keep), dtype=weight.dtype, device=weight.device))
        setattr(module, _ADDED_BIAS, True)
    bias = cast(torch.Tensor, module.bias)
    weight[removed] = 0
    bias[removed] = constants.to(device=bias.device, dtype=bias.dtype)[removed]


def _replace(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, child, new)


def _check_exact(game: NeuronGame, model: nn.Module, removed: list[str]) -> None:
    expected = game.value_without(removed)
    data = game.data
    step = max(1, game.examples_per_pass)
    with evaluation_mode(model), torch.inference_mode():
        logits = torch.cat([model(data.x[i : i + step]) for i in range(0, len(data), step)])
        got = float(game.metric(logits.unsqueeze(0), data.y, data)[0])
    if not np.isclose(got, expected, rtol=0.0, atol=1e-6):
        raise RuntimeError(
            f"The repaired model's {game.metric.name} is {got!r}, but the game with the same "
            f"units ablated gives {expected!r}. This is a bug in neuronshapley's repair: "
            "please report it with the model."
        )


# -- saving and loading -----------------------------------------------------------------------


def save_repaired(model: nn.Module, path: str | Path, *, recipe: dict[str, Any]) -> Path:
    """Write a repaired model to one file that :func:`load_repaired` reads without pickled code.

    Args:
        model: A model returned by :func:`repair`.
        path: The file to write (conventionally ``*.pt``).
        recipe: How to rebuild the base network: ``{"model": <bundled name or
            "path/to/file.py:factory">}``, plus anything else to keep with the model (JSON
            types: the removed units, the run, the metric...). The factory must build the same
            architecture as the repaired model's base. A factory's path is stored absolute
            (resolved from the current directory) with its file's SHA-256 (``model_sha256``),
            so that loading later refuses a file that changed.

    Returns:
        The path written.
    """
    owner = "save_repaired"
    if not isinstance(recipe, dict) or not isinstance(recipe.get("model"), str):
        raise ValueError(
            f"The 'recipe' parameter of {owner} must be a dict with a 'model' entry: a bundled "
            f"model name or 'path/to/file.py:factory'. Got {recipe!r} instead."
        )
    if "wrapped" in recipe or "added_biases" in recipe:
        raise ValueError(
            f"The 'recipe' parameter of {owner} must not hold 'wrapped' or 'added_biases': "
            "they are read from the model."
        )
    wrapped = [
        {"path": name, "channel_dim": module.channel_dim, "on_input": module.on_input}
        for name, module in model.named_modules()
        if isinstance(module, Ablated)
    ]
    added = [
        _unwrapped_path(name)
        for name, module in model.named_modules()
        if getattr(module, _ADDED_BIAS, False)
    ]
    recipe = dict(recipe)
    if is_spec(recipe["model"]):
        recipe["model"] = absolute_spec(recipe["model"])
        recipe.setdefault("model_sha256", file_digest(recipe["model"]))
    spec = {**recipe, "wrapped": wrapped, "added_biases": added}
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"format": FORMAT, "format_version": FORMAT_VERSION, "spec": spec, "state_dict": state},
        target,
    )
    return target


def _unwrapped_path(name: str) -> str:
    """The path of a module in the base network (an Ablated wrapper adds ".module")."""
    return name.removesuffix(".module").replace(".module.", ".")


def load_repaired(path: str | Path, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """A repaired model written by :func:`save_repaired`, in eval mode.

    Args:
        path: The file.
        map_location: Where to put the tensors. Default ``"cpu"``.

    Raises:
        ValueError: If the file is not a repaired model of a known format version.
    """
    saved = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ValueError(f"{path} is not a repaired model written by neuronshapley.")
    if saved.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} is a repaired model of format version {saved.get('format_version')!r}; "
            f"this neuronshapley reads version {FORMAT_VERSION}."
        )
    spec, state = saved["spec"], saved["state_dict"]
    sha256 = spec.get("model_sha256")
    model = _build_base(
        spec["model"], base=Path(path).parent, sha256=sha256 if isinstance(sha256, str) else None
    )
    for name in spec["added_biases"]:
        module = model.get_submodule(name)
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise TypeError(
                f"The repaired model file records a bias added to {name!r}, but that module of "
                f"the rebuilt model has no weight tensor: the file does not match the model."
            )
        module.bias = nn.Parameter(
            torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device)
        )
        setattr(module, _ADDED_BIAS, True)
    # Shallow paths first: a wrapper's own path never contains another wrapper's ".module".
    for entry in sorted(spec["wrapped"], key=lambda e: e["path"].count(".")):
        name = entry["path"]
        wrapper = Ablated(
            model.get_submodule(_unwrapped_path(name)),
            state[f"{name}.mask"],
            state[f"{name}.fill"],
            entry["channel_dim"],
            on_input=entry["on_input"],
        )
        _replace(model, name, wrapper)
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()


def _build_base(spec: str, *, base: Path, sha256: str | None) -> nn.Module:
    """The base network, untrained: a bundled architecture or the user's factory.

    A factory's file (this runs its code) is resolved relative to the repaired model's folder
    and refused if it no longer has the SHA-256 recorded in the file.
    """
    from neuronshapley import zoo
    from neuronshapley._internal.specs import SpecError, load_spec
    from neuronshapley.zoo import models
    from neuronshapley.zoo.recipes import RECIPES

    if spec in RECIPES:
        recipe = RECIPES[spec]
        return models.build(recipe.architecture, recipe.architecture_params)
    if is_spec(spec):
        try:
            made = load_spec(spec, "model", base=base, sha256=sha256)
        except SpecError as error:
            raise ValueError(f"Cannot rebuild the repaired model's base: {error}") from error
        model = made[0] if isinstance(made, tuple) else made
        if not isinstance(model, nn.Module):
            raise ValueError(f"The factory {spec} gave a {type(model).__name__}, not a Module.")
        return model
    raise ValueError(
        f"The repaired model's base {spec!r} is neither a bundled model "
        f"({', '.join(zoo.available())}) nor 'path/to/file.py:factory'."
    )
