"""The Ray backend against the local one: digits-cnn, TMAB, the same walks_per_task.

``python -m benchmarks.ray_backend`` (needs the ``ray`` extra; a few minutes on 2 cores). Prints
the wall times, the speed-up, and the overhead per task measured on a game that costs nothing.
"""

import time

import numpy as np
import torch

import neuronshapley as ns
from neuronshapley.backends import RayBackend


def main() -> None:
    import ray

    torch.set_num_threads(1)  # as each Ray worker (OMP_NUM_THREADS=1): one core per worker
    model, bundle = ns.zoo.load("digits-cnn")

    def game() -> ns.NeuronGame:
        return ns.NeuronGame(model, data=bundle.test, reference=bundle.reference)

    options = {"k": 10, "truncation": 0.1, "seed": 0, "max_evaluations": 4000, "walks_per_task": 1}
    started = time.perf_counter()
    local = ns.tmab_shapley(game(), **options)
    local_s = time.perf_counter() - started
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        started = time.perf_counter()
        remote = ns.tmab_shapley(game(), backend=RayBackend(workers=2), **options)
        ray_s = time.perf_counter() - started
        assert np.array_equal(local.values, remote.values)
        print(
            f"digits-cnn ({game().n_players} units), {remote.n_evaluations} evaluations, "
            f"{remote.diagnostics['n_permutations']} tasks: local {local_s:.2f} s, "
            f"Ray 2 workers {ray_s:.2f} s, speed-up {local_s / ray_s:.2f}"
        )
        tiny = ns.games.sparse_soum(30, n_large=3, seed=2)
        n_tasks = 400
        cheap = {"n_permutations": n_tasks, "seed": 0, "walks_per_task": 1}
        started = time.perf_counter()
        ns.permutation_shapley(tiny, **cheap)
        here = time.perf_counter() - started
        started = time.perf_counter()
        ns.permutation_shapley(tiny, backend=RayBackend(workers=2), **cheap)
        there = time.perf_counter() - started
        print(
            f"{n_tasks} tasks of a game that costs nothing: local {here:.3f} s, Ray {there:.3f} s: "
            f"{(there - here) / n_tasks * 1e3:.2f} ms per task (starting 2 actors included)"
        )
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
