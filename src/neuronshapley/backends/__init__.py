"""Backends that walk a run's tasks elsewhere than in this process.

An estimator's ``backend=`` takes one of these (see :mod:`neuronshapley.estimators.backend` for
the protocol); ``None``, the default, walks every task here and needs nothing installed.

- :class:`RayBackend`: the tasks go to Ray actors, one per worker, on this machine or a cluster
  (``pip install 'neuronshapley[ray]'``; Ray is imported only when a run starts).
"""

from neuronshapley.backends.ray import RayBackend

__all__ = ["RayBackend"]
