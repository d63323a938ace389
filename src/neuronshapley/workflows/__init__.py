"""Work on disk: run directories (``runs``), studies of a run (``studies``), model/data specs."""
