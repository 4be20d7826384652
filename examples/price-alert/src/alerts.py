"""The alert rule, apart from the Lambda event shapes."""

from __future__ import annotations

from typing import Any


def number(request: dict[str, Any], field: str) -> float:
    """The request's field as a number; ValueError naming the field otherwise."""
    value = request.get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field} must be a number, found {value!r}")
    return float(value)


def crossed(price: float, threshold: float) -> bool:
    """True when the price reached its threshold."""
    return price >= threshold
