"""The recipes of the bundled models: data, architecture, training and seed, and their hash.

A recipe is everything that determines the trained weights. Its hash (:func:`recipe_key`) names
the cache file, so any change to a recipe, to :data:`RECIPE_VERSION` or to torch's major.minor
version trains a new model instead of loading stale weights.

The numbers in ``measured`` were taken on 2 CPU cores with torch's default 2 threads (torch 2.13,
CPU build; best of three runs, data preparation and torch's one-off start-up of about 1 s not
included) and are reported by :func:`neuronshapley.zoo.describe`. With one thread the test
accuracies were the same and training took about 1.5x as long; when other processes compete for
the cores, two threads can be several times slower than one.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from neuronshapley.zoo.training import TrainingRecipe

RECIPE_VERSION = 2
"""Bumped whenever code that changes the trained weights changes (data encoding, training loop,
initialisation), so that every cached model is retrained."""


@dataclass(frozen=True)
class ModelRecipe:
    """How one bundled model is made.

    Attributes:
        name: The zoo name (e.g. ``"digits-cnn"``).
        summary: One line on what the model is.
        dataset: A key of :data:`neuronshapley.zoo.datasets.DATASETS`.
        dataset_params: Keyword arguments of the dataset builder (spelled out in full, so that
            changing a builder's default does not silently reuse a cache).
        architecture: A key of :data:`neuronshapley.zoo.models.ARCHITECTURES`.
        architecture_params: Keyword arguments of its constructor.
        training: Optimiser, schedule, epochs and batch size.
        seed: Seed of the initial weights, the batch order and dropout.
        measured: Test accuracy and training seconds measured when the recipe was written
            (documentation only, not part of the hash).
    """

    name: str
    summary: str
    dataset: str
    dataset_params: dict[str, Any]
    architecture: str
    architecture_params: dict[str, Any]
    training: TrainingRecipe
    seed: int = 0
    measured: dict[str, float] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """What determines the weights, as JSON-ready values (the input of the hash)."""
        major, minor = torch.__version__.split(".")[:2]
        return {
            "recipe_version": RECIPE_VERSION,
            "torch": f"{major}.{minor}",
            "dataset": self.dataset,
            "dataset_params": self.dataset_params,
            "architecture": self.architecture,
            "architecture_params": self.architecture_params,
            "training": asdict(self.training),
            "seed": self.seed,
        }


def recipe_key(recipe: ModelRecipe) -> str:
    """A 16-hex-digit hash of :meth:`ModelRecipe.fields` (canonical JSON, SHA-256).

    Args:
        recipe: The recipe.
    """
    text = json.dumps(recipe.fields(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


RECIPES: dict[str, ModelRecipe] = {
    recipe.name: recipe
    for recipe in [
        ModelRecipe(
            name="adult-mlp",
            summary="MLP 104-64-64-2 on UCI Adult (income > 50K), with sex x race groups.",
            dataset="adult",
            dataset_params={"reference_fraction": 0.2, "split_seed": 0},
            architecture="AdultMLP",
            architecture_params={"n_features": 104, "hidden": [64, 64], "n_classes": 2},
            training=TrainingRecipe(epochs=5, batch_size=256, lr=2e-3),
            measured={"test_accuracy": 0.848, "train_seconds": 0.5},
        ),
        ModelRecipe(
            name="digits-cnn",
            summary="2-D CNN with 32/64/64 filters on the 8x8 scikit-learn digits.",
            dataset="digits",
            dataset_params={"split_seed": 0},
            architecture="DigitsCNN",
            architecture_params={"channels": [32, 64, 64], "n_classes": 10, "dropout": 0.0},
            training=TrainingRecipe(epochs=10, batch_size=32, lr=3e-3),
            measured={"test_accuracy": 0.978, "train_seconds": 1.1},
        ),
        ModelRecipe(
            name="digits-cnn-dropout",
            summary="digits-cnn trained with channel dropout (p=0.5) after each conv block.",
            dataset="digits",
            dataset_params={"split_seed": 0},
            architecture="DigitsCNN",
            architecture_params={"channels": [32, 64, 64], "n_classes": 10, "dropout": 0.5},
            training=TrainingRecipe(epochs=20, batch_size=32, lr=3e-3),
            measured={"test_accuracy": 0.986, "train_seconds": 4.0},
        ),
        ModelRecipe(
            name="digits-cnn-wide",
            summary="2-D CNN with 128/256/768 filters (1,152 in all) on the 8x8 digits.",
            dataset="digits",
            dataset_params={"split_seed": 0},
            architecture="DigitsCNN",
            architecture_params={"channels": [128, 256, 768], "n_classes": 10, "dropout": 0.0},
            training=TrainingRecipe(epochs=5, batch_size=64, lr=1e-3),
            measured={"test_accuracy": 0.964, "train_seconds": 5.0},
        ),
        ModelRecipe(
            name="digits-mlp-wide",
            summary="MLP with 512/512 hidden neurons (1,024 in all) on the 8x8 digits.",
            dataset="digits",
            dataset_params={"split_seed": 0},
            architecture="DigitsMLP",
            architecture_params={"hidden": [512, 512], "n_classes": 10},
            training=TrainingRecipe(epochs=10, batch_size=32, lr=1e-3),
            measured={"test_accuracy": 0.975, "train_seconds": 3.0},
        ),
        ModelRecipe(
            name="mnist1d-cnn",
            summary="1-D CNN with 32/64/64 channels (kernel 5) on MNIST-1D.",
            dataset="mnist1d",
            dataset_params={
                "num_samples": 5000,
                "seed": 42,
                "reference_fraction": 0.125,
                "split_seed": 0,
            },
            architecture="MNIST1DCNN",
            architecture_params={"channels": [32, 64, 64], "n_classes": 10, "length": 40},
            training=TrainingRecipe(epochs=15, batch_size=128, lr=5e-3),
            measured={"test_accuracy": 0.948, "train_seconds": 4.2},
        ),
    ]
}
"""The bundled models by name, in alphabetical order."""
