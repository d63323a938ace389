"""Boundary checks that name the parameter, the rule and the bad value (scikit-learn style)."""

import numbers
from typing import Any

import numpy as np


def check_int(
    value: Any,
    name: str,
    owner: str,
    *,
    min_value: int | None = None,
    max_value: int | None = None,
    allow_none: bool = False,
) -> int | None:
    """Return ``value`` as an int if it is an integer within ``[min_value, max_value]``."""
    if value is None and allow_none:
        return None
    lo = "-inf" if min_value is None else str(min_value)
    hi = "inf" if max_value is None else str(max_value)
    rule = f"an int in [{lo}, {hi}]" + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"The {name!r} parameter of {owner} must be {rule}. Got {value!r} instead.")
    number = int(value)
    if (min_value is not None and number < min_value) or (
        max_value is not None and number > max_value
    ):
        raise ValueError(
            f"The {name!r} parameter of {owner} must be {rule}. Got {value!r} instead."
        )
    return number


def check_float(
    value: Any,
    name: str,
    owner: str,
    *,
    low: float | None = None,
    high: float | None = None,
    include_low: bool = True,
    include_high: bool = True,
    allow_none: bool = False,
) -> float | None:
    """Return ``value`` as a float if it is a finite real number in the given interval."""
    if value is None and allow_none:
        return None
    left = "[" if include_low else "("
    right = "]" if include_high else ")"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    rule = f"a float in {interval}" + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"The {name!r} parameter of {owner} must be {rule}. Got {value!r} instead.")
    x = float(value)
    ok = np.isfinite(x)
    if low is not None:
        ok = ok and (x >= low if include_low else x > low)
    if high is not None:
        ok = ok and (x <= high if include_high else x < high)
    if not ok:
        raise ValueError(
            f"The {name!r} parameter of {owner} must be {rule}. Got {value!r} instead."
        )
    return x


def check_bool(value: Any, name: str, owner: str) -> bool:
    """Return ``value`` if it is a bool (not an int or a string that looks like one)."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"The {name!r} parameter of {owner} must be a bool. Got {value!r} instead.")
    return bool(value)


def check_progress(value: Any, owner: str) -> None:
    """Check a ``progress`` callback: a callable or ``None``."""
    if value is not None and not callable(value):
        raise TypeError(
            f"The 'progress' parameter of {owner} must be a callable or None. Got {value!r}."
        )


def check_choice(value: Any, name: str, owner: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(
            f"The {name!r} parameter of {owner} must be one of {options}. Got {value!r} instead."
        )
    return str(value)


def as_generator(seed: Any, owner: str) -> np.random.Generator:
    """Turn ``seed`` (int, Generator or None) into a Generator without touching global state."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        if seed is not None and seed < 0:
            raise ValueError(
                f"The 'seed' parameter of {owner} must be a non-negative int, a "
                f"numpy.random.Generator or None. Got {seed!r} instead."
            )
        return np.random.default_rng(int(seed) if seed is not None else None)
    raise TypeError(
        f"The 'seed' parameter of {owner} must be a non-negative int, a numpy.random.Generator "
        f"or None. Got {seed!r} instead."
    )
