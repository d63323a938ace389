"""Input features of one example as players: ``FeatureGame`` for every engine estimator, DASP
(Ancona, Öztireli & Gross, ICML 2019), Shapley values of features in polynomial time, the
gradient family and Captum's Shapley estimators (``attribute``)."""

from neuronshapley.features.dasp import SUPPORTED_LAYERS, dasp
from neuronshapley.features.game import FeatureGame
from neuronshapley.features.gradients import METHODS, attribute
from neuronshapley.features.inputs import image_patches

__all__ = ["METHODS", "SUPPORTED_LAYERS", "FeatureGame", "attribute", "dasp", "image_patches"]
