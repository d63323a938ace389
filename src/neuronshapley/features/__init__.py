"""Input features of one example as players: ``FeatureGame`` for every engine estimator, DASP
(Ancona, Öztireli & Gross, ICML 2019), Shapley values of features in polynomial time, the
gradient family and Captum's Shapley estimators (``attribute``), and TCAV (``tcav``)."""

from neuronshapley.features.dasp import SUPPORTED_LAYERS, dasp
from neuronshapley.features.game import FeatureGame
from neuronshapley.features.gradients import METHODS, attribute
from neuronshapley.features.inputs import image_patches
from neuronshapley.features.tcav import TCAVResult, tcav

__all__ = [
    "METHODS",
    "SUPPORTED_LAYERS",
    "FeatureGame",
    "TCAVResult",
    "attribute",
    "dasp",
    "image_patches",
    "tcav",
]
