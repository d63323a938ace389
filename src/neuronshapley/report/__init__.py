"""Reports of a Neuron Shapley run: value tables, plots and a self-contained HTML page.

Plots need the ``plot`` extra (``pip install 'neuronshapley[plot]'``); matplotlib is imported
by the functions that draw, so importing this package stays light. Every figure of the package is
drawn here: a run's (:mod:`~neuronshapley.report.plots`, re-exported below), the paper's studies'
(:mod:`~neuronshapley.report.studies`) and what a unit sees (:mod:`~neuronshapley.report.units`,
which imports torch); import the last two from their modules.
"""

from neuronshapley.report.html import (
    Section,
    figure_to_data_uri,
    figure_to_png,
    render_html,
    run_report,
    save_run_plots,
    write_html,
)
from neuronshapley.report.plots import layer_counts, removal_plot, value_histogram, values_by_layer
from neuronshapley.report.tables import values_table, write_values_csv

__all__ = [
    "Section",
    "figure_to_data_uri",
    "figure_to_png",
    "layer_counts",
    "removal_plot",
    "render_html",
    "run_report",
    "save_run_plots",
    "value_histogram",
    "values_by_layer",
    "values_table",
    "write_html",
    "write_values_csv",
]
