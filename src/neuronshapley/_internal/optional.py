"""Optional dependencies, imported only by the functions that need them."""

import importlib
from types import ModuleType


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or say which extra installs it.

    Args:
        module: The module to import (e.g. ``"matplotlib.pyplot"``).
        extra: The neuronshapley extra that provides it (e.g. ``"plot"``).
        purpose: What it is needed for, for the message (e.g. ``"plots"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        top = module.split(".")[0]
        raise ImportError(
            f"{purpose.capitalize()} need the '{top}' package, which is not installed "
            f"({error}). Install it with: pip install 'neuronshapley[{extra}]'"
        ) from error
