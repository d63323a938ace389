"""``NeuronGame``: the Neuron Shapley game of a PyTorch model.

The players are units of the network (see :mod:`neuronshapley.units.selection`) and the value of a
coalition S is the metric of the model on fixed evaluation data when the units outside S are
ablated (eq. 1 of Ghorbani & Zou 2020). One call to :meth:`NeuronGame.value` answers a whole
batch of coalitions in as few forward passes as memory allows: the evaluation examples are tiled
across coalitions, and at every hooked module ``out = where(mask, out, fill)`` with one mask row
per coalition.

The evaluation data is fixed by default: the game is then deterministic, so exact and sampled
values estimate the same quantity, truncation compares each coalition with the exact V(N), and
consecutive coalitions of a permutation are scored on the same examples (their difference has
no data noise). The original code drew 128 fresh images per permutation instead, which makes the
values those of the model on the data distribution rather than on one sample of it:
``examples_per_walk=128`` does the same here. Each permutation walk then gets its own subset,
drawn from ``data_seed`` and the permutation's number (so runs stay reproducible and resumable),
and all its coalitions, its own V(N) and V(empty) included, are scored on that subset. The
values then also carry the sampling noise of the data, and need more permutations; exact
enumeration still uses the whole data.

Transformers take their inputs as they come: ``data`` may hold a dict of tensors
(``input_ids``, ``attention_mask``, ...) or a tuple of tensors, tiled and sliced across
coalitions and examples like a single tensor (every tensor's first dimension is the example).
``forward(model, inputs)`` says how to call the model (default ``model(**inputs)`` for a dict,
``model(*inputs)`` for a tuple, ``model(inputs)`` for a tensor) and ``output(result, inputs)``
what the metric sees (default: the model's result, or its ``.logits``, else its
``.last_hidden_state``, when it is a Hugging Face ``ModelOutput``). A metric with one parameter,
``metric(outputs) -> float``, scores those outputs on the whole evaluation set without labels.
"""

import contextlib
import copy
import itertools
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from neuronshapley._internal.devices import (
    available_memory,
    check_not_meta,
    model_device,
    resolve_device,
)
from neuronshapley._internal.fingerprint import digest
from neuronshapley._internal.validation import check_choice, check_int
from neuronshapley.games.base import BaseGame, check_coalitions
from neuronshapley.pytorch.data import (
    ModelInputs,
    Split,
    as_split,
    describe_inputs,
    n_examples,
    repeat_rows,
    split_rows,
    take,
    tensors,
)
from neuronshapley.pytorch.metrics import (
    Metric,
    MetricError,
    OutputMetric,
    check_declared_bounds,
    check_finite_values,
    check_metric_values,
    resolve_metric,
)
from neuronshapley.typing import CoalitionMatrix, GameValues
from neuronshapley.units.ablation import (
    ABLATIONS,
    AblationError,
    compute_fills,
    evaluation_mode,
    hooked,
)
from neuronshapley.units.blocks import BlockPlan, BlockSteps, block_hooks, block_steps, plan_blocks
from neuronshapley.units.channel_deltas import (
    Families,
    delta_forwards,
    families,
    pays_for_deltas,
    runs_on_deltas,
)
from neuronshapley.units.reuse import ReusePlan, as_index, group_prefixes, plan_reuse
from neuronshapley.units.selection import Layer, UnitSet, resolve_units

_OWNER = "NeuronGame"
# With prefix reuse, a pass holds at least this many examples of each coalition (fewer passes of
# more coalitions share more prefixes, but a pass of a handful of examples is mostly overhead).
_MIN_EXAMPLES_PER_PASS = 16
_MEMORY_BUDGET = 512 * 2**20
_CPU_MEMORY_BUDGET = 64 * 2**20
# A reference sharing at least this fraction of its rows with the evaluation data is warned about.
_OVERLAP_WARNING = 0.5


class NeuronGame(BaseGame):
    """The game "metric of the network when only the units in S are active".

    Args:
        model: The network. Left exactly as it came in: no parameter, buffer, mode or hook of
            it is changed (a model on another device than ``device`` is copied there).
        units: Which units are players: ``None`` (every convolution filter, or for a model
            without convolutions every hidden ``Linear`` neuron), a module-name pattern
            (``"conv*"``, ``"fc1:0-9"``), a list of patterns, a callable ``(name, module) ->
            bool`` or a :class:`~neuronshapley.units.selection.UnitSet`. Default None.
        data: Evaluation examples: a :class:`~neuronshapley.pytorch.data.Split`, a tuple
            ``(x, y)`` or ``(x, y, groups)`` of tensors or arrays, or a ``TensorDataset``. For
            tokenized inputs, a dict of tensors (no labels), or a tuple ``(inputs, labels)``
            whose ``inputs`` is a dict or a tuple of tensors and whose ``labels`` may be
            ``None``.
        metric: ``"accuracy"``, ``"neg_cross_entropy"``, ``"recall:<class>"``,
            ``"mean_group_recall"``, ``"worst_group_accuracy"``, a
            :class:`~neuronshapley.pytorch.metrics.Metric`, a callable
            ``(logits, targets, batch) -> float``, or a label-free callable
            ``(outputs) -> float`` scoring the outputs of all the evaluation examples (see
            :func:`~neuronshapley.pytorch.metrics.from_outputs`, also for a vectorised one).
            Default ``"accuracy"``. An exception from a callable comes out as a
            ``MetricError`` naming the coalition, with the original as its ``__cause__``.
        ablation: What a removed unit outputs: ``"mean"`` (its per-position mean over
            ``reference``), ``"channel_mean"`` (one scalar mean per unit), ``"token_mean"``
            (one scalar per unit, over the reference's non-padding tokens) or ``"zero"``.
            Default ``None``: ``"token_mean"`` for dict or tuple inputs (sequences of varying
            length, see :mod:`neuronshapley.units.ablation`), ``"mean"`` otherwise.
        reference: Examples the means are computed on (needed unless ``ablation="zero"``);
            they must not be the evaluation data: the same tensor (or the same values) is
            refused, and a ``UserWarning`` is issued when half of its rows or more are also
            rows of ``data``. Its examples must fit the hooked layers as the data's do (for
            ``"mean"``, the same shape): a mismatch is a ``ValueError`` at construction.
        device: Where to evaluate (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a
            ``torch.device``). Default: the model's device. A device that does not exist here
            (``"gpu"``, ``"cuda"`` without a GPU, ``"meta"``, an int) is a ``ValueError``.
        memory_budget: Bytes of activations one forward pass may hold; sets how many coalitions
            and examples share a pass. Default ``None``: 64 MiB on CPU, where larger passes
            fall out of the caches and run slower (an mnist1d CNN ran 2x faster in 64 MiB passes
            than in 512 MiB ones), and 512 MiB on other devices. A budget above the memory
            available on the device (free RAM on the CPU, free GPU memory on CUDA) is refused
            with a ``ValueError``, not clamped.
        examples_per_walk: ``None`` (default) scores every coalition on all of ``data``; an int
            m scores each permutation walk on its own m examples drawn without replacement (as
            the original code did with m = 128), see the module notes.
        data_seed: Seed of those per-walk draws. Default 0.
        reference_batch_size: Examples per forward pass when computing the means. Default 256.
        reuse_prefixes: Compute the layers a batch's coalitions agree on once per distinct
            prefix, for models whose hooked layers ``torch.fx`` shows to be cuts of the graph
            (see :mod:`neuronshapley.units.reuse`); other models are evaluated the plain way.
            The values are the same either way. Default ``True``. Off for dict or tuple inputs
            and with ``forward`` or ``output``, which see the inputs of every pass. Models fx
            cannot trace whose hooked layers all lie in the blocks of an ``nn.ModuleList``
            called in order (a transformer stack) get block reuse instead: each block runs
            once per distinct prefix of masks (see :mod:`neuronshapley.units.blocks`).
        forward: ``forward(model, inputs) -> result``: how a batch of inputs (a slice of the
            data, tiled across coalitions) is passed to the model. Default ``None``:
            ``model(**inputs)`` for a dict, ``model(*inputs)`` for a tuple, ``model(inputs)``.
        output: ``output(result, inputs) -> tensor``: what the metric sees of the model's
            result on ``inputs``, first dimension the example (e.g. embeddings mean-pooled
            under ``inputs["attention_mask"]``). Default ``None``: the result when it is a
            tensor, else its ``logits`` attribute, else its ``last_hidden_state`` (Hugging Face
            ``ModelOutput``s).

    Raises:
        ValueError: among others, when ``data`` or ``reference`` holds NaN or inf (the message
            gives the count and the first row).

    Attributes:
        units: The players, layer by layer.
        unit_layers: The layer (module path) of every player.
        player_groups: The same, as every game states its players' groups (results carry them).
        n_forward_examples: Example-forward passes asked for so far (coalitions x examples),
            whether or not prefix reuse computed fewer.
        reuse: The prefix-reuse plan, or ``None`` when the model is evaluated the plain way.
        blocks: The block-reuse plan (transformer stacks), or ``None``.
    """

    def __init__(
        self,
        model: nn.Module,
        units: Any = None,
        data: Any = None,
        metric: Any = "accuracy",
        ablation: str | None = None,
        reference: Any = None,
        *,
        device: str | torch.device | None = None,
        memory_budget: int | None = None,
        reference_batch_size: int = 256,
        examples_per_walk: int | None = None,
        data_seed: int = 0,
        reuse_prefixes: bool = True,
        forward: Callable[[nn.Module, Any], Any] | None = None,
        output: Callable[[Any, Any], torch.Tensor] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"The 'model' parameter of {_OWNER} must be a torch.nn.Module. "
                f"Got {type(model).__name__} instead."
            )
        if data is None:
            raise ValueError(
                f"The 'data' parameter of {_OWNER} is required: the examples the metric is "
                "computed on, e.g. data=(x_test, y_test)."
            )
        for name, function in (("forward", forward), ("output", output)):
            if function is not None and not callable(function):
                raise TypeError(
                    f"The {name!r} parameter of {_OWNER} must be a callable or None. "
                    f"Got {type(function).__name__} instead."
                )
        evaluation = as_split(data, "data", _OWNER)
        if ablation is None:
            ablation = "mean" if isinstance(evaluation.x, torch.Tensor) else "token_mean"
        check_choice(ablation, "ablation", _OWNER, ABLATIONS)
        check_int(memory_budget, "memory_budget", _OWNER, min_value=1, allow_none=True)
        check_int(reference_batch_size, "reference_batch_size", _OWNER, min_value=1)
        unit_set = resolve_units(model, units, _OWNER)
        self.metric: Metric = resolve_metric(metric, _OWNER)
        _check_model_tensors(model)
        source = model_device(model)
        self.device = (
            resolve_device(source, _OWNER) if device is None else resolve_device(device, _OWNER)
        )
        if memory_budget is not None:
            _check_memory_budget(memory_budget, self.device)
        _check_inputs(evaluation.x, "data")
        if reference is None and ablation != "zero":
            raise ValueError(
                f"ablation={ablation!r} needs the 'reference' parameter of {_OWNER}: examples "
                "to compute each unit's mean output on, other than the evaluation data (e.g. "
                "reference=x_train or a held-out split). Or use ablation='zero'."
            )
        reference_split = evaluation if reference is None else _as_reference(reference)
        if reference is not None:
            _check_inputs(reference_split.x, "reference")
            _check_reference_is_other_data(reference_split.x, evaluation.x)
        if source != self.device:
            model = copy.deepcopy(model).to(self.device)
        self.model = model
        self.forward = forward
        self.output = output
        # The plain path (one tensor, model(x) -> tensor) is every CNN's: keep it free of calls.
        self._plain = forward is None and output is None and isinstance(evaluation.x, torch.Tensor)
        self.data = evaluation.to(self.device)
        self.ablation = ablation
        self.units: UnitSet = unit_set
        self.layers: tuple[Layer, ...] = unit_set.layers
        self.unit_layers = unit_set.unit_layers
        # The group of each player, carried into results: a unit's layer.
        self.player_groups = list(self.unit_layers)
        super().__init__(unit_set.n_units, unit_set.names)
        self.n_forward_examples = 0

        self.n_classes = self._check_model_and_labels()
        check_int(
            examples_per_walk,
            "examples_per_walk",
            _OWNER,
            min_value=1,
            max_value=len(self.data),
            allow_none=True,
        )
        check_int(data_seed, "data_seed", _OWNER, min_value=0)
        self.examples_per_walk = examples_per_walk
        self.data_seed = data_seed
        # Read by the estimators: score each walk on its own examples (value_in_contexts).
        self.uses_contexts = examples_per_walk is not None
        if self.metric.needs_groups and self.data.groups is None:
            raise ValueError(
                f"The metric {self.metric.name!r} needs a group per example, but the 'data' "
                f"parameter of {_OWNER} has none: pass data=(x, y, groups) or a Split with groups."
            )
        with evaluation_mode(self.model), torch.inference_mode():
            try:
                self.fills, bytes_per_example = _run_model(
                    lambda: compute_fills(
                        self.model,
                        self.layers,
                        reference_split.to(self.device).x,
                        ablation,
                        batch_size=reference_batch_size,
                        forward=None if self._plain else self._call,
                    ),
                    "computing the ablation means on the reference data",
                )
            except RuntimeError as error:
                if not _same_kind(reference_split.x, evaluation.x):
                    cause = error.__cause__ or error
                    raise ValueError(
                        f"The 'reference' parameter of {_OWNER} holds examples the model cannot "
                        f"take: {_describe(reference_split.x)}, where the 'data' examples are "
                        f"{_describe(evaluation.x)}. The model raised {type(cause).__name__} "
                        f"on them while computing the ablation means: {cause}"
                    ) from cause
                raise
        self._check_fills(reference_split.x)
        self._tiled: ModelInputs | None = None
        if memory_budget is None:
            memory_budget = _CPU_MEMORY_BUDGET if self.device.type == "cpu" else _MEMORY_BUDGET
        self._rows_per_pass = max(1, memory_budget // max(bytes_per_example, 1))
        self._size_passes()
        self._offsets = np.cumsum([0] + [len(layer.indices) for layer in self.layers])
        self._steps: list[_Step | None] = [None] * len(self.layers)
        self.reuse = plan_reuse(self.model, self.layers) if reuse_prefixes and self._plain else None
        self.blocks: BlockPlan | None = (
            plan_blocks(self.model, self.layers)
            if reuse_prefixes and self.reuse is None and self.layers
            else None
        )
        self._block_steps: BlockSteps | None = None
        # The layers after the first that prefix reuse feeds several blocks of a family (see
        # _set_prefix_masks), when they are linear in their input: run on differences.
        self._delta_modules = {}
        if self.reuse is not None:
            for index in self.reuse.order[1 : self.reuse.n_expanding + 1]:
                module = self.model.get_submodule(self.layers[index].path)
                if runs_on_deltas(module) and pays_for_deltas(module):
                    self._delta_modules[index] = module
        self._families: list[Families | None] = [None] * len(self.layers)
        # The players of each layer in execution order, for grouping the prefixes.
        self._reuse_columns = (
            []
            if self.reuse is None
            else [slice(self._offsets[i], self._offsets[i + 1]) for i in self.reuse.order]
        )
        # The reference is not kept: its part of the fingerprint is taken now.
        self._reference_digest = digest(None if reference is None else _array(reference_split.x))
        # Added to the fingerprint only when given, so the plain games' fingerprints stay put.
        self._call_parts = () if forward is None and output is None else (forward, output)
        self._mask_from_call = self.ablation == "token_mean" and not isinstance(self.data.x, dict)
        self._fingerprint: str | None = None

    def _call(self, inputs: ModelInputs) -> Any:
        """The model's result on ``inputs``, through ``forward`` (or the default call)."""
        if self.forward is not None:
            return self.forward(self.model, inputs)
        if isinstance(inputs, dict):
            return self.model(**inputs)
        if isinstance(inputs, tuple):
            return self.model(*inputs)
        return self.model(inputs)

    def _select(self, result: Any, inputs: ModelInputs) -> torch.Tensor:
        """What the metric sees of ``result``: ``output(result, inputs)``, or the default."""
        if self.output is not None:
            selected = self.output(result, inputs)
            if not isinstance(selected, torch.Tensor):
                raise TypeError(
                    f"The 'output' parameter of {_OWNER} must return a tensor (first dimension "
                    f"the example). Got {type(selected).__name__} instead."
                )
            return selected
        return _default_output(result)

    def _size_passes(self) -> None:
        n_examples = len(self.data)
        self.examples_per_pass = min(self._rows_per_pass, n_examples)
        self.coalitions_per_pass = max(1, self._rows_per_pass // n_examples)
        self._tiled = None

    def _coalitions_per_call(self, n_examples: int) -> int:
        """How many coalitions one ``_logits`` call answers, on ``n_examples`` examples each."""
        if self.reuse is not None or self.blocks is not None:
            # Prefixes are shared within a pass, so a pass takes many coalitions on a slice of
            # the examples rather than all the examples of a few coalitions.
            return max(1, self._rows_per_pass // min(n_examples, _MIN_EXAMPLES_PER_PASS))
        return max(1, self.coalitions_per_pass * len(self.data) // n_examples)

    def with_data(self, data: Any, metric: Any = None) -> "NeuronGame":
        """The same game (model, units, ablation fills) on other evaluation data or metric.

        Studies use it to score subsets (the examples of one class) or held-out data without
        recomputing the means. Counters start at zero.

        Args:
            data: The new evaluation examples (as for the constructor).
            metric: The new metric; default this game's.
        """
        game = copy.copy(self)
        split = as_split(data, "data", f"{_OWNER}.with_data")
        _check_inputs(split.x, "data", f"{_OWNER}.with_data")
        if isinstance(split.x, torch.Tensor) != isinstance(self.data.x, torch.Tensor):
            raise TypeError(
                f"The 'data' parameter of {_OWNER}.with_data must hold inputs of the game's "
                f"form ({describe_inputs(self.data.x)}). Got {describe_inputs(split.x)}."
            )
        game.data = split.to(self.device)
        game._fingerprint = None
        game.metric = self.metric if metric is None else resolve_metric(metric, _OWNER)
        game.n_evaluations = 0
        game.n_forward_examples = 0
        game._steps = [None] * len(self.layers)
        game._families = [None] * len(self.layers)
        game._size_passes()
        game._check_model_and_labels()
        if game.metric.needs_groups and game.data.groups is None:
            raise ValueError(
                f"The metric {game.metric.name!r} needs a group per example, but the data "
                "passed to NeuronGame.with_data has none."
            )
        if game.examples_per_walk is not None and game.examples_per_walk > len(game.data):
            game.examples_per_walk = len(game.data)
        return game

    # -- evaluation -------------------------------------------------------------------------

    def _value(self, coalitions: CoalitionMatrix) -> GameValues:
        return self._evaluate(coalitions, [(np.arange(len(coalitions)), self.data)])

    def value_in_contexts(
        self, coalitions: CoalitionMatrix, contexts: NDArray[np.int64]
    ) -> GameValues:
        """Values of coalitions each scored on its walk's own examples (``examples_per_walk``).

        Args:
            coalitions: Bool, shape ``(n_coalitions, n_players)``.
            contexts: The permutation number of each row, shape ``(n_coalitions,)``; rows with
                the same number are scored on the same ``examples_per_walk`` examples.
        """
        coalitions = check_coalitions(coalitions, self.n_players, f"{_OWNER}.value_in_contexts")
        contexts = np.asarray(contexts)
        if contexts.shape != (len(coalitions),):
            raise ValueError(
                f"The 'contexts' parameter of {_OWNER}.value_in_contexts must hold one number "
                f"per coalition, shape ({len(coalitions)},). Got {contexts.shape} instead."
            )
        if self.examples_per_walk is None:
            values = self._value(coalitions)
        else:
            groups = [
                (np.flatnonzero(contexts == context), self.walk_data(int(context)))
                for context in np.unique(contexts)
            ]
            values = self._evaluate(coalitions, groups)
        self.n_evaluations += len(coalitions)
        return values

    def walk_data(self, context: int) -> Split:
        """The examples walk number ``context`` is scored on (all of them by default)."""
        if self.examples_per_walk is None:
            return self.data
        rng = np.random.default_rng(np.random.SeedSequence(self.data_seed, spawn_key=(context,)))
        chosen = rng.choice(len(self.data), self.examples_per_walk, replace=False)
        return self.data.subset(
            torch.from_numpy(np.sort(chosen)).to(self.device, non_blocking=True)
        )

    def _evaluate(
        self, coalitions: CoalitionMatrix, groups: list[tuple[NDArray[np.intp], Split]]
    ) -> GameValues:
        """Values of ``coalitions[rows]`` on ``split`` for every ``(rows, split)`` group."""
        # Each chunk's values stay where the metric made them (on the device for the built-in
        # metrics, on the host for a user's floats) and come to the host once per call: no
        # host-device synchronisation per chunk.
        parts: list[tuple[NDArray[np.intp], torch.Tensor]] = []
        with (
            evaluation_mode(self.model),
            torch.inference_mode(),
            hooked(self.model, self.layers, [self._transform(i) for i in range(len(self.layers))]),
            self._hooked_blocks(),
            delta_forwards(self._delta_modules, lambda index: self._families[index]),
        ):
            try:
                for rows, split in groups:
                    step = self._coalitions_per_call(len(split))
                    for start in range(0, len(rows), step):
                        chunk = rows[start : start + step]
                        logits = self._logits(coalitions[chunk], split)
                        try:
                            scores = self.metric(logits, split.y, split)
                        except MetricError as error:  # name the row of the caller's batch
                            cause = error.__cause__ or error
                            raise MetricError(
                                error.metric, int(chunk[error.coalition]), cause
                            ) from cause
                        scores = check_metric_values(
                            scores, len(chunk), self.metric.name, finite=False
                        )
                        parts.append((chunk, scores))
            finally:
                self._steps = [None] * len(self.layers)
                self._families = [None] * len(self.layers)
                self._block_steps = None
        values = _gather(parts, len(coalitions), self.metric.name)
        check_declared_bounds(values, self.metric)
        return values

    def _logits(self, coalitions: CoalitionMatrix, split: Split) -> torch.Tensor:
        """Logits ``(n_coalitions, n_examples, n_classes)`` with the coalitions' masks applied."""
        n_examples = len(split)
        self.n_forward_examples += len(coalitions) * n_examples
        if self.reuse is not None:
            return self._reusing_logits(coalitions, split, self.reuse)
        if self.blocks is not None and len(coalitions) > 1:
            return self._block_logits(coalitions, split, self.blocks)
        return self._plain_logits(coalitions, split)

    def _plain_logits(self, coalitions: CoalitionMatrix, split: Split) -> torch.Tensor:
        """``_logits`` the plain way: the examples tiled across the coalitions."""
        n_examples = len(split)
        step = max(1, self.coalitions_per_pass * len(self.data) // n_examples)
        if len(coalitions) > step:  # more than a pass holds (block reuse fell back)
            parts = [
                self._plain_logits(coalitions[start : start + step], split)
                for start in range(0, len(coalitions), step)
            ]
            return torch.cat(parts)
        if self.examples_per_pass == len(self.data):
            self._set_masks(coalitions)
            return self._tiled_logits(len(coalitions), split.x)
        # One coalition's examples do not fit in a pass: split them.
        per_coalition = []
        for row in range(len(coalitions)):
            self._set_masks(coalitions[row : row + 1])
            parts = [self._forward(x) for x in split_rows(split.x, self.examples_per_pass)]
            per_coalition.append(torch.cat(parts))
        return torch.stack(per_coalition)

    def _tiled_logits(self, n_coalitions: int, x: ModelInputs) -> torch.Tensor:
        """One pass on ``x`` tiled across ``n_coalitions``, with the hooks' steps as set."""
        size = n_examples(x)
        if x is self.data.x and n_coalitions <= self.coalitions_per_pass:
            inputs = take(self._tiled_inputs(), slice(0, n_coalitions * size))
        else:
            inputs = repeat_rows(x, n_coalitions)
        out = self._forward(inputs)
        return out.view(n_coalitions, size, *out.shape[1:])

    def _block_logits(
        self, coalitions: CoalitionMatrix, split: Split, plan: BlockPlan
    ) -> torch.Tensor:
        """``_logits`` with each block of the stack run once per distinct prefix of masks.

        The hooked layers of block b see one block of examples per distinct prefix (masks on
        blocks 0..b), so their steps mask those prefixes' representative coalitions. When the
        model does not run its blocks as block reuse needs, the pass is redone the plain way
        and block reuse is off for this game from then on, with a warning: if the plain pass
        fails too, its error is the model's own and is raised as it is.
        """
        steps, representatives = block_steps(coalitions, plan, self._offsets, self.device)
        self._steps = [None] * len(self.layers)
        for index, block in enumerate(plan.block_of_layer):
            rows = representatives[block]
            mask = self._layer_mask(index, coalitions[rows])
            if mask is not None:
                self._steps[index] = _Step(len(rows), None, mask)
        # As with prefix reuse, a pass takes every coalition on a slice of the examples: the
        # more coalitions a pass holds, the more prefixes they share.
        per_pass = max(1, self._rows_per_pass // len(coalitions))
        try:
            parts = []
            for inputs in split_rows(split.x, per_pass):
                steps.n_examples, steps.next_block = n_examples(inputs), 0
                self._block_steps = steps
                parts.append(self._tiled_logits(len(coalitions), inputs))
            return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        except Exception as error:
            self._block_steps = None
            plain = self._plain_logits(coalitions, split)
            self.blocks = None
            cause = error.__cause__ or error
            warnings.warn(
                f"Block reuse is off for this {_OWNER}: the blocks of {plan.path!r} did not run "
                f"as it needs ({type(cause).__name__}: {cause}); evaluating the plain way.",
                stacklevel=2,
            )
            return plain
        finally:
            self._block_steps = None

    def _hooked_blocks(self) -> Any:
        """The block-reuse hooks when the game has a block plan, else nothing."""
        if self.blocks is None:
            return contextlib.nullcontext()
        return block_hooks(self.model, self.blocks, lambda: self._block_steps)

    def _reusing_logits(
        self, coalitions: CoalitionMatrix, split: Split, plan: ReusePlan
    ) -> torch.Tensor:
        """``_logits`` with the hooks expanding each pass to one block per distinct prefix.

        A pass takes every coalition on a slice of the examples, sized so that even fully
        expanded activations stay within the memory budget: the prefixes are shared across all
        the coalitions, and on CPU the smaller passes also stay in the caches.
        """
        inverse = self._set_prefix_masks(coalitions, plan)
        per_pass = max(1, self._rows_per_pass // len(coalitions))
        parts = []
        for inputs in split.x.split(per_pass):
            out = self._forward(inputs)
            parts.append(out.view(-1, len(inputs), *out.shape[1:]))
        out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return out[torch.from_numpy(inverse).to(out.device, non_blocking=True)]

    def _forward(self, inputs: ModelInputs) -> torch.Tensor:
        if self._plain:
            out = _run_model(lambda: self.model(inputs), "evaluating a coalition")
            if isinstance(out, torch.Tensor):
                return out
        else:
            out = _run_model(lambda: self._call(inputs), "evaluating a coalition")
        return _run_model(lambda: self._select(out, inputs), "selecting the output")

    def _tiled_inputs(self) -> ModelInputs:
        """The evaluation inputs repeated for a full pass of coalitions (built once)."""
        if self._tiled is None:
            self._tiled = repeat_rows(self.data.x, self.coalitions_per_pass)
        return self._tiled

    def _set_masks(self, coalitions: CoalitionMatrix) -> None:
        """Prepare every hook's step for ``coalitions`` on inputs tiled across them."""
        self._steps = [None] * len(self.layers)
        for index in range(len(self.layers)):
            mask = self._layer_mask(index, coalitions)
            if mask is not None:
                self._steps[index] = _Step(len(coalitions), None, mask)

    def _set_prefix_masks(self, coalitions: CoalitionMatrix, plan: ReusePlan) -> NDArray[np.intp]:
        """Prepare every hook's step to expand the examples to one block per distinct prefix.

        Returns the distinct coalition (row block of the model's output) of every coalition.
        """
        self._steps = [None] * len(self.layers)
        groups = group_prefixes(coalitions, self._reuse_columns, plan.n_expanding)
        n_blocks = 1
        for level, index in enumerate(plan.order):
            if index in self._delta_modules:  # its input: the blocks of the level before
                self._families[index] = families(groups.parents[level - 1], self.device)
            if level < plan.n_expanding:
                parents, rows = groups.parents[level], groups.rows[level]
            else:  # after the last expansion: one block per distinct coalition
                parents, rows = None, groups.rows[-1]
            mask = self._layer_mask(index, coalitions[rows])
            if parents is not None or mask is not None:
                step = _Step(n_blocks, as_index(parents, self.device), mask)
                self._steps[index] = step
            n_blocks = len(rows)
        return groups.inverse

    def _layer_mask(self, index: int, coalitions: CoalitionMatrix) -> torch.Tensor | None:
        """The keep-mask of layer ``index`` per coalition, or ``None`` if nothing is removed."""
        layer = self.layers[index]
        columns = coalitions[:, self._offsets[index] : self._offsets[index + 1]]
        if columns.all():
            return None  # nothing removed in this layer: leave it untouched
        if len(layer.indices) == layer.size:
            full = columns
        else:  # units not selected as players always stay active
            full = np.ones((len(coalitions), layer.size), dtype=bool)
            full[:, list(layer.indices)] = columns
        # non_blocking: a copy from pageable memory is staged at once, without a stream sync.
        mask = torch.from_numpy(np.ascontiguousarray(full)).to(self.device, non_blocking=True)
        if layer.group > 1:
            mask = mask.repeat_interleave(layer.group, dim=1)
        return mask

    def _transform(self, index: int) -> Any:
        layer, fill = self.layers[index], self.fills[index]

        def transform(activation: torch.Tensor) -> torch.Tensor:
            step = self._steps[index]
            if step is None:
                return activation
            # One block of examples per distinct prefix so far; the step picks each new
            # block's parent block and applies its mask.
            blocks = activation.view(step.n_blocks, -1, *activation.shape[1:])
            if step.parents is not None and (step.n_blocks > 1 or step.mask is None):
                blocks = blocks.index_select(0, step.parents)
            # else one block in: ``where`` broadcasts it against the masks, without a copy.
            if step.mask is not None:
                # (n_blocks, 1, ...) with the unit dimension at its place, ones elsewhere.
                shape = [step.mask.shape[0]] + [1] * activation.dim()
                shape[layer.channel_dim % activation.dim() + 1] = step.mask.shape[1]
                blocks = torch.where(step.mask.view(shape), blocks, fill)
            return blocks.reshape(-1, *activation.shape[1:])

        return transform

    # -- conveniences -----------------------------------------------------------------------

    def coalition_without(self, removed: Iterable[str]) -> CoalitionMatrix:
        """The coalition of every player but ``removed`` (unit names), shape ``(1, n_players)``."""
        index = {name: i for i, name in enumerate(self.player_names)}
        coalition = np.ones((1, self.n_players), dtype=bool)
        for name in removed:
            if name not in index:
                raise ValueError(f"{name!r} is not a player of this game (see game.player_names).")
            coalition[0, index[name]] = False
        return coalition

    def logits(self, removed: Sequence[str] = (), data: Any = None) -> torch.Tensor:
        """The model's logits with the units ``removed`` ablated, shape ``(n_examples, n_classes)``.

        (For a game with ``output``, or a model without logits: what the metric sees.)

        Args:
            removed: Unit names to ablate (every other unit stays active). Default none.
            data: Examples (a ``Split``, a tuple ``(x, y)`` or a ``TensorDataset``); default the
                game's evaluation data. Studies use held-out examples here.
        """
        split = self.data if data is None else as_split(data, "data", f"{_OWNER}.logits")
        split = split.to(self.device)
        coalition = self.coalition_without(removed)
        with (
            evaluation_mode(self.model),
            torch.inference_mode(),
            hooked(self.model, self.layers, [self._transform(i) for i in range(len(self.layers))]),
        ):
            try:
                self._set_masks(coalition)
                parts = []
                for chunk in split_rows(split.x, self.examples_per_pass):
                    parts.append(self._forward(chunk))
                self.n_forward_examples += len(split)
                return torch.cat(parts)
            finally:
                self._steps = [None] * len(self.layers)

    def value_without(self, removed: Sequence[str]) -> float:
        """The metric with the units ``removed`` ablated and every other unit active."""
        return float(self.value(self.coalition_without(removed))[0])

    def _check_model_and_labels(self) -> int:
        """Check what the model gives the metric; for a metric of labels, check the labels.

        Returns the number of classes (0 for a label-free metric).
        """
        sample = take(self.data.x, slice(0, min(len(self.data), 8)))
        n_sample = n_examples(sample)
        with evaluation_mode(self.model), torch.inference_mode():
            if self._plain:
                out = _run_model(lambda: self.model(sample), "checking it on the evaluation data")
            else:
                result = _run_model(
                    lambda: self._call(sample), "checking it on the evaluation data"
                )
                out = _run_model(lambda: self._select(result, sample), "selecting the output")
        if isinstance(self.metric, OutputMetric):
            if not isinstance(out, torch.Tensor) or out.dim() < 1 or out.shape[0] != n_sample:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(
                    f"The model (and 'output') given to {_OWNER} must give the metric a tensor "
                    f"whose first dimension is the example; for {n_sample} examples it gave "
                    f"{shape}."
                )
            return 0
        if not self.data.labelled:
            raise ValueError(
                f"The metric {self.metric.name!r} needs labels, but the 'data' parameter of "
                f"{_OWNER} has none. Pass data=(inputs, labels), or a label-free metric "
                "metric(outputs) -> float."
            )
        if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != n_sample:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"The model given to {_OWNER} must return logits of shape (n_examples, "
                f"n_classes); for {n_sample} examples it returned {shape}."
            )
        n_classes = out.shape[1]
        labels = self.data.y
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= n_classes:
            raise ValueError(
                f"The labels of the 'data' parameter of {_OWNER} must be class ids in [0, "
                f"{n_classes - 1}] (the model has {n_classes} outputs). Got labels from {low} "
                f"to {high}."
            )
        return n_classes

    def marginal_range(self) -> float | None:
        """Width of an interval holding every marginal contribution, if the metric says.

        A metric with values in [lo, hi] (``Metric.bounds``; accuracy and recall: [0, 1])
        gives marginals V(S + i) - V(S) in [-(hi - lo), hi - lo]: width 2 (hi - lo), a valid
        ``value_range`` for the confidence bounds. ``None`` if the metric declares no bounds
        (then only the observed range, a heuristic, is left).
        """
        if self.metric.bounds is None:
            return None
        lo, hi = self.metric.bounds
        return 2.0 * (hi - lo)

    def fingerprint(self) -> str:
        """A SHA-256 hex digest of what sets the game's values.

        It covers the unit names, the model's weights and buffers, the evaluation data (inputs,
        labels, groups), the reference, the metric (its name and its function's code and
        captured values), the ablation, ``examples_per_walk`` and ``data_seed``; not the device,
        the memory budget or prefix reuse, which change how the values are computed but not what
        they are. The weights are hashed on every call, since the model is the caller's and may
        be changed in place; the data, fixed at construction, once.
        """
        if self._fingerprint is None:
            data = self.data
            self._fingerprint = digest(
                "NeuronGame",
                self.player_names,
                [(layer.path, layer.kind, layer.size, layer.group) for layer in self.layers],
                self.ablation,
                self._reference_digest,
                _array(data.x),
                _array(data.y),
                None if data.groups is None else _array(data.groups),
                self.metric,
                self.examples_per_walk,
                self.data_seed,
                *self._call_parts,
                # Token means of tuple inputs or a forward callable count only the tokens of the
                # attention_mask the model receives (they counted every position before).
                *(["mask from the call"] if self._mask_from_call else []),
            )
        weights = {key: _array(value) for key, value in self.model.state_dict().items()}
        return digest(self._fingerprint, weights)

    def _check_fills(self, reference: ModelInputs) -> None:
        """Refuse fills (from the reference) that do not fit the layers' outputs on the data."""
        misfits: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []

        def checker(index: int) -> Any:
            def check(activation: torch.Tensor) -> torch.Tensor:
                fill, shape = self.fills[index], tuple(activation.shape[1:])
                try:
                    fits = tuple(torch.broadcast_shapes(fill.shape, shape)) == shape
                except RuntimeError:
                    fits = False
                if not fits:
                    misfits.append((self.layers[index].path, tuple(fill.shape), shape))
                return activation

            return check

        sample = take(self.data.x, slice(0, 2))
        with (
            evaluation_mode(self.model),
            torch.inference_mode(),
            hooked(self.model, self.layers, [checker(i) for i in range(len(self.layers))]),
        ):
            _run_model(lambda: self._call(sample), "checking it on the evaluation data")
        if misfits:
            path, fill_shape, shape = misfits[0]
            raise ValueError(
                f"The 'reference' parameter of {_OWNER} holds examples that do not fit the "
                f"hooked layers as the data's do: {_describe(reference)}, where the 'data' "
                f"examples are {_describe(self.data.x)}. The ablation means of module {path!r} "
                f"have shape {fill_shape}, its output on the data {shape}. Pass reference "
                f"examples of the data's shape (or ablation='channel_mean', one mean per unit, "
                f"or 'token_mean' for sequences of varying length)."
            )

    def __repr__(self) -> str:
        return (
            f"NeuronGame({type(self.model).__name__}, {self.n_players} units in "
            f"{len(self.layers)} layers, metric={self.metric.name!r}, ablation={self.ablation!r}, "
            f"{len(self.data)} examples)"
        )


class _Step(NamedTuple):
    """What one hook does: pick each new block's parent block, then mask."""

    n_blocks: int  # blocks of examples coming in
    parents: torch.Tensor | None  # parent block of every outgoing block; None: the same blocks
    mask: torch.Tensor | None  # keep-mask per outgoing block, (n_out, units); None: keep all


def _gather(
    parts: list[tuple[NDArray[np.intp], torch.Tensor]], n_coalitions: int, metric: str
) -> GameValues:
    """The values of every chunk in one host array: one transfer per device, one check."""
    values = np.empty(n_coalitions, dtype=np.float64)
    by_device: dict[torch.device, list[tuple[NDArray[np.intp], torch.Tensor]]] = {}
    for part in parts:
        by_device.setdefault(part[1].device, []).append(part)
    for same in by_device.values():
        host = torch.cat([scores.double() for _, scores in same]).cpu().numpy()
        values[np.concatenate([rows for rows, _ in same])] = host
    check_finite_values(values, metric)
    return values


def _check_model_tensors(model: nn.Module) -> None:
    if any(t.is_meta for t in itertools.chain(model.parameters(), model.buffers())):
        raise ValueError(
            f"The 'model' passed to {_OWNER} has tensors on the 'meta' device: shapes without "
            "values, which cannot be evaluated. Load its weights on a real device (e.g. "
            "model.to_empty(device='cpu') then load_state_dict), then choose where to evaluate "
            "with the 'device' parameter."
        )


def _check_memory_budget(budget: int, device: torch.device) -> None:
    free = available_memory(device)
    if free is not None and budget > free:
        raise ValueError(
            f"The 'memory_budget' parameter of {_OWNER} must be at most the memory available "
            f"on {device} ({free / 2**30:.1f} GiB). Got {budget} ({budget / 2**30:.1f} GiB) "
            "instead."
        )


def _default_output(result: Any) -> torch.Tensor:
    """The model's result as the metric sees it by default: a tensor, or a ModelOutput's
    ``logits``, else its ``last_hidden_state``."""
    if isinstance(result, torch.Tensor):
        return result
    for attribute in ("logits", "last_hidden_state"):
        value = getattr(result, attribute, None)
        if isinstance(value, torch.Tensor):
            return value
    raise TypeError(
        f"The model given to {_OWNER} returned a {type(result).__name__}, with no tensor "
        "'logits' or 'last_hidden_state' to score: pass output=lambda result, inputs: ... "
        "returning the tensor the metric should see."
    )


def _check_inputs(x: ModelInputs, name: str, owner: str = _OWNER) -> None:
    """Refuse meta inputs and inputs holding NaN or inf (checked once, at construction)."""
    for tensor in tensors(x):
        _check_tensor(tensor, name, owner)


def _check_tensor(x: torch.Tensor, name: str, owner: str) -> None:
    check_not_meta(x, f"{name!r} inputs", owner)
    if not (x.is_floating_point() or x.is_complex()):
        return
    bad = ~torch.isfinite(x)
    count = int(bad.sum())
    if count:
        first = int(bad.reshape(len(x), -1).any(dim=1).int().argmax())
        raise ValueError(
            f"The {name!r} parameter of {owner} must hold finite inputs. Got {count} non-finite "
            f"entr{'y' if count == 1 else 'ies'} (NaN or inf), the first in row {first}."
        )


def _check_reference_is_other_data(reference: ModelInputs, data: ModelInputs) -> None:
    """Refuse the evaluation inputs as reference; warn when most reference rows are among them."""
    if isinstance(reference, torch.Tensor) and isinstance(data, torch.Tensor):
        _check_other_tensor(reference, data)
        return
    ours, theirs = _keyed(reference), _keyed(data)
    if ours.keys() != theirs.keys():
        return
    if all(_same_examples(ours[key], theirs[key]) for key in ours):
        raise ValueError(
            f"The 'reference' and 'data' parameters of {_OWNER} are the same examples. The "
            "ablation means must come from other examples than the ones values are "
            "computed on (e.g. the training split)."
        )


def _keyed(inputs: ModelInputs) -> dict[Any, torch.Tensor]:
    if isinstance(inputs, dict):
        return dict(inputs)
    return dict(enumerate(tensors(inputs)))


def _check_other_tensor(reference: torch.Tensor, data: torch.Tensor) -> None:
    same_memory = (
        reference.device == data.device
        and reference.data_ptr() == data.data_ptr()
        and reference.shape == data.shape
        and reference.stride() == data.stride()
    )
    if same_memory or _same_examples(reference, data):
        raise ValueError(
            f"The 'reference' and 'data' parameters of {_OWNER} are the same examples. The "
            "ablation means must come from other examples than the ones values are "
            "computed on (e.g. the training split)."
        )
    if reference.shape[1:] != data.shape[1:]:
        return
    shared = int(np.isin(_row_hashes(reference, data.dtype), _row_hashes(data, data.dtype)).sum())
    fraction = shared / len(reference)
    if fraction >= _OVERLAP_WARNING:
        warnings.warn(
            f"{fraction:.0%} of the rows of the 'reference' parameter of {_OWNER} ({shared} of "
            f"{len(reference)}) are also rows of its 'data' parameter. The ablation means "
            "should come from other examples than the ones values are computed on (e.g. the "
            "training split).",
            UserWarning,
            stacklevel=3,
        )


# Odd 64-bit multipliers of the row hash (any fixed odd numbers do; these are random).
_MULTIPLIERS = np.random.default_rng(20200601).integers(0, 2**63, size=1024, dtype=np.uint64) | 1


def _row_hashes(x: torch.Tensor, dtype: torch.dtype) -> NDArray[np.uint64]:
    """A 64-bit hash of every row's bytes (as ``dtype``), vectorised: sum of words x multipliers."""
    rows = x.detach().to("cpu", dtype).reshape(len(x), -1).contiguous().view(torch.uint8)
    raw = rows.numpy()
    pad = -raw.shape[1] % 8
    if pad:
        raw = np.pad(raw, ((0, 0), (0, pad)))
    words = np.ascontiguousarray(raw).view(np.uint64)
    n_words = words.shape[1]
    # Distinct odd multipliers for every word position (beyond 1024 words: shifted by position).
    positions = np.arange(n_words, dtype=np.uint64)
    multipliers = np.resize(_MULTIPLIERS, n_words) + (positions // 1024) * 2
    with np.errstate(over="ignore"):
        return (words * multipliers).sum(axis=1, dtype=np.uint64)


def _same_examples(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b.to(a.device)))


def _same_kind(a: ModelInputs, b: ModelInputs) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape[1:] == b.shape[1:] and a.dtype == b.dtype
    return _describe(a) == _describe(b)


def _describe(x: ModelInputs) -> str:
    return describe_inputs(x)


def _array(tensor: Any) -> Any:
    """A tensor as a numpy array on the CPU, for hashing (dtypes numpy lacks as raw bytes)."""
    if isinstance(tensor, dict):
        return {str(key): _array(value) for key, value in tensor.items()}
    if isinstance(tensor, tuple):
        return [_array(value) for value in tensor]
    if not isinstance(tensor, torch.Tensor):
        return repr(tensor)
    tensor = tensor.detach().cpu()
    try:
        return tensor.numpy()
    except TypeError:  # bfloat16 and the like: their bytes, with the dtype named
        return (str(tensor.dtype), tensor.contiguous().view(torch.uint8).numpy())


def _as_reference(reference: Any) -> Split:
    if isinstance(reference, torch.Tensor | np.ndarray):
        x = torch.as_tensor(reference).detach()
        return Split(x, torch.zeros(len(x), dtype=torch.long), name="reference")
    return as_split(reference, "reference", _OWNER)


def _run_model(call: Any, doing: str) -> Any:
    """Run ``call``; an exception from the model is re-raised saying what we were doing."""
    try:
        return call()
    except AblationError:
        raise
    except Exception as error:
        raise RuntimeError(
            f"The model raised {type(error).__name__} while {doing}: {error}"
        ) from error
