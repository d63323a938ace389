"""Training points as players: influence functions, Data Shapley, KNN-Shapley, Datamodels (§10).

Importing ``neuronshapley.data.influence`` or ``neuronshapley.data.loo`` imports torch; the
game and KNN-Shapley need only numpy (and scikit-learn for estimators passed to them).
"""

from neuronshapley.data.datamodels import DatamodelResult, datamodels
from neuronshapley.data.game import DataGame, tmc_shapley
from neuronshapley.data.knn import knn_shapley

__all__ = ["DataGame", "DatamodelResult", "datamodels", "knn_shapley", "tmc_shapley"]
