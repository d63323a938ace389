"""Input features of one example as players: ``FeatureGame`` for every engine estimator, and
DASP (Ancona, Öztireli & Gross, ICML 2019), Shapley values of features in polynomial time."""

from neuronshapley.features.dasp import SUPPORTED_LAYERS, dasp
from neuronshapley.features.game import FeatureGame
from neuronshapley.features.inputs import image_patches

__all__ = ["SUPPORTED_LAYERS", "FeatureGame", "dasp", "image_patches"]
