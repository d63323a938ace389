"""Tables of a Neuron Shapley run: one row per unit, in rank order, as dicts or CSV.

Nothing here needs matplotlib; :mod:`neuronshapley.report.plots` and
:mod:`neuronshapley.report.html` share the checks and the atomic writer defined here.
"""

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from neuronshapley._internal.files import atomic_write
from neuronshapley.results.result import ShapleyResult

VALUE_COLUMNS = ("unit", "layer", "value", "stderr", "ci_low", "ci_high", "samples")


def values_table(
    result: ShapleyResult, layers: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """One row per unit, largest value first (rank order, ties broken by index).

    Args:
        result: The Shapley values of a run.
        layers: ``layers[i]`` is the layer (module path) of player ``i``; one per player.
            Default ``None``: the groups the result carries.

    Returns:
        Dicts with keys ``unit, layer, value, stderr, ci_low, ci_high, samples`` (Python
        ``str``, ``float`` and ``int`` values).
    """
    layers = check_layers(layers, result, "values_table")
    return [
        {
            "unit": result.player_names[i],
            "layer": layers[i],
            "value": float(result.values[i]),
            "stderr": float(result.stderr[i]),
            "ci_low": float(result.ci_low[i]),
            "ci_high": float(result.ci_high[i]),
            "samples": int(result.n_samples[i]),
        }
        for i in result.top_indices(result.n_players)
    ]


def write_values_csv(
    path: str | os.PathLike[str], result: ShapleyResult, layers: Sequence[str] | None = None
) -> Path:
    """Write :func:`values_table` as CSV, floats at full (``repr``) precision.

    The file is written next to ``path`` and renamed into place, so an interrupted write never
    leaves half a table.

    Args:
        path: The CSV file to write (its directory must exist).
        result: The Shapley values of a run.
        layers: ``layers[i]`` is the layer of player ``i``; one per player.
            Default ``None``: the groups the result carries.

    Returns:
        ``path`` as a ``Path``.
    """
    rows = values_table(result, layers)
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=VALUE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return atomic_write(path, buffer.getvalue().encode("utf-8"))


def check_layers(layers: Sequence[str] | None, result: ShapleyResult, owner: str) -> list[str]:
    """Return ``layers`` as a list of strings, one per player of ``result``.

    ``None`` takes the groups the result carries (a unit's layer, for a ``NeuronGame``).
    """
    if layers is None:
        if result.groups is None:
            raise ValueError(
                f"{owner} needs each player's layer: the result carries no groups (it was not "
                "made from a NeuronGame, or saved by an older version), so pass layers=."
            )
        return list(result.groups)
    if isinstance(layers, str) or not isinstance(layers, Sequence):
        raise TypeError(
            f"The 'layers' parameter of {owner} must be a sequence of strings, one per player. "
            f"Got {type(layers).__name__} instead."
        )
    if len(layers) != result.n_players:
        raise ValueError(
            f"The 'layers' parameter of {owner} must name the layer of each of the "
            f"{result.n_players} players. Got {len(layers)} layers instead."
        )
    for layer in layers:
        if not isinstance(layer, str):
            raise TypeError(
                f"The 'layers' parameter of {owner} must hold strings. Got {layer!r} instead."
            )
    return list(layers)
