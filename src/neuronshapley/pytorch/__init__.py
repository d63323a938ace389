"""PyTorch pieces every player kind shares: evaluation data (``Split``, ``Bundle``) and metrics.

Importing this package imports torch; ``import neuronshapley`` alone does not.
"""

from neuronshapley.pytorch import metrics
from neuronshapley.pytorch.data import Bundle, Split, as_split
from neuronshapley.pytorch.metrics import Metric

__all__ = ["Bundle", "Metric", "Split", "as_split", "metrics"]
