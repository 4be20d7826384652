"""Secret scrubbing for anything that leaves the process: logs, artifacts, ledger records."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

MASK = "***"


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """Return value with every occurrence of each secret replaced by ***, recursing into data."""
    secrets = [s for s in secrets if s]
    if not secrets:
        return value
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, BaseModel):
        return type(value).model_validate(scrub(value.model_dump(), secrets))
    if isinstance(value, dict):
        return {scrub(k, secrets): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(scrub(v, secrets) for v in value)
    return value
