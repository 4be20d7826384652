"""API Gateway proxy events in and out: headers, raw body, JSON responses."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def response(status: int, payload: Any) -> dict[str, Any]:
    """A proxy-integration response whose body is ``payload`` as a JSON string."""
    return {
        "statusCode": status,
        "headers": dict(JSON_HEADERS),
        "body": json.dumps(payload, default=str, ensure_ascii=False),
    }


def error(status: int, message: str) -> dict[str, Any]:
    """A JSON error response ``{"error": message}``."""
    return response(status, {"error": message})


def header(event: Mapping[str, Any], name: str) -> str | None:
    """A request header by case-insensitive name (HTTP headers are; gateways vary the case)."""
    headers = event.get("headers") or {}
    if not isinstance(headers, Mapping):
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted:
            return value if isinstance(value, str) else None
    return None


def raw_body(event: Mapping[str, Any]) -> bytes:
    """The request body exactly as sent (base64-decoded when the gateway encoded it)."""
    body = event.get("body")
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if not isinstance(body, str):
        # Direct invocations may pass the JSON document itself instead of its text.
        return json.dumps(body, separators=(",", ":")).encode()
    if event.get("isBase64Encoded"):
        return base64.b64decode(body, validate=True)
    return body.encode("utf-8")


def method(event: Mapping[str, Any]) -> str | None:
    """The HTTP method of a REST (v1) or HTTP API (v2) proxy event, if any."""
    if isinstance(event.get("httpMethod"), str):
        return event["httpMethod"].upper()
    http = (event.get("requestContext") or {}).get("http") or {}
    value = http.get("method") if isinstance(http, Mapping) else None
    return value.upper() if isinstance(value, str) else None


def query_params(event: Mapping[str, Any]) -> dict[str, str]:
    """The query string parameters (never None, unlike the gateway's field)."""
    params = event.get("queryStringParameters") or {}
    if not isinstance(params, Mapping):
        return {}
    return {str(k): v for k, v in params.items() if isinstance(v, str)}
