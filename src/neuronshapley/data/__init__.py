"""Training points as players: influence functions, Data Shapley, KNN-Shapley, Beta Shapley,
Data Banzhaf, leave-one-out, Data-OOB, TMAB for the most harmful points, Datamodels, pricing
data sources (§10).

Importing ``neuronshapley.data.influence`` or ``neuronshapley.data.loo`` imports torch; the
game and KNN-Shapley need only numpy (and scikit-learn for estimators passed to them).
"""

from neuronshapley.data.datamodels import DatamodelResult, datamodels
from neuronshapley.data.game import DataGame, harmful_points, tmc_shapley
from neuronshapley.data.knn import knn_shapley
from neuronshapley.data.oob import data_oob
from neuronshapley.data.pricing import PricingResult, price_sources
from neuronshapley.data.semivalues import (
    beta_shapley,
    data_banzhaf,
    exact_beta_shapley,
    exact_semivalue,
    leave_one_out_values,
)

__all__ = [
    "DataGame",
    "DatamodelResult",
    "PricingResult",
    "beta_shapley",
    "data_banzhaf",
    "data_oob",
    "datamodels",
    "exact_beta_shapley",
    "exact_semivalue",
    "harmful_points",
    "knn_shapley",
    "leave_one_out_values",
    "price_sources",
    "tmc_shapley",
]
