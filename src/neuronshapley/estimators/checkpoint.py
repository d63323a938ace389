"""A sampling run's state on disk: one atomic file that carries the game's fingerprint."""

from pathlib import Path

CHECKPOINT_FILE = "checkpoint.npz"


def has_checkpoint(directory: str | Path) -> bool:
    """Whether ``directory`` holds a checkpoint (``checkpoint=`` of an estimator wrote one)."""
    return (Path(directory) / CHECKPOINT_FILE).is_file()
