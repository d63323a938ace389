"""Training points as players: influence functions, Data Shapley, KNN-Shapley, Beta Shapley,
Data Banzhaf, leave-one-out, Datamodels, pricing data sources (§10).

Importing ``neuronshapley.data.influence`` or ``neuronshapley.data.loo`` imports torch; the
game and KNN-Shapley need only numpy (and scikit-learn for estimators passed to them).
"""

from neuronshapley.data.datamodels import DatamodelResult, datamodels
from neuronshapley.data.game import DataGame, tmc_shapley
from neuronshapley.data.knn import knn_shapley
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
    "datamodels",
    "exact_beta_shapley",
    "exact_semivalue",
    "knn_shapley",
    "leave_one_out_values",
    "price_sources",
    "tmc_shapley",
]
