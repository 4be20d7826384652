"""JSON values as the smoke and ground-truth gates read them: strict parsing, paths, placeholders.

Strict means RFC 8259: what any non-Python consumer of a response or a stored document can read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PLACEHOLDER = "{correlation_id}"
SNIPPET = 200
# A sentinel distinct from every JSON value, null included.
MISSING: Any = object()


def substitute(value: Any, correlation_id: str) -> Any:
    """value with ``{correlation_id}`` replaced in every string, keys and nested values included."""
    if isinstance(value, str):
        return value.replace(PLACEHOLDER, correlation_id)
    if isinstance(value, Mapping):
        return {
            substitute(k, correlation_id): substitute(v, correlation_id) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [substitute(v, correlation_id) for v in value]
    return value


def lookup(document: Any, path: str) -> Any:
    """The value at path: an exact top-level key first, else a dotted path; MISSING if absent."""
    if isinstance(document, Mapping) and path in document:
        return document[path]
    current = document
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return MISSING
    return current


def snippet(value: Any, limit: int = SNIPPET) -> str:
    """value as text, cut to limit characters with the full length said."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def kind(value: Any) -> str:
    """The JSON kind of a parsed value: null, boolean, number, array, string or object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _not_json(constant: str) -> Any:
    raise ValueError(
        f"{constant} is not JSON (Python's encoder writes it for a float nan or inf; JSON "
        "parsers outside Python refuse it)"
    )


def loads(text: str | bytes) -> Any:
    """Parse JSON strictly: as RFC 8259 and every non-Python consumer do.

    Python's json accepts NaN, Infinity and -Infinity, and the Lambda Python runtime's encoder
    writes them (allow_nan) for a float nan/inf in the handler's answer: a payload that only
    Python can read must not pass as JSON.
    """
    return json.loads(text, parse_constant=_not_json)


def double_encoded(text: str) -> str:
    """'of an object' / 'of an array'… when text is itself JSON of that kind, else ''."""
    try:
        inner = loads(text)
    except ValueError:
        return ""
    if isinstance(inner, dict):
        return "of an object"
    return f"of a {kind(inner)}"
