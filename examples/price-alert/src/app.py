"""price-alert: whether a price crossed its alert threshold.

Accepts an API Gateway proxy event (the request in ``body``, a JSON string) or the request
itself as the event: ``{"symbol", "price", "threshold", "note"}`` (``note`` may be null).
Answers a proxy response whose body says ``alert`` and echoes ``symbol``, ``note`` (null kept)
and ``correlation_id`` (the event's ``request_id``, when it has one). It writes no log lines.
"""

from __future__ import annotations

from typing import Any

import orjson
from alerts import crossed, number


def _response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json"},
        "body": orjson.dumps(body).decode(),
    }


def _request(event: Any) -> dict[str, Any]:
    """The alert request: the proxy event's JSON body, or the event itself."""
    if not isinstance(event, dict):
        raise ValueError("the event must be a JSON object")
    if "body" in event:
        body = event["body"]
        request = orjson.loads(body) if isinstance(body, (str, bytes)) else body
        if not isinstance(request, dict):
            raise ValueError("the request body must be a JSON object")
        # A proxy event carries its id beside the body; the body's own wins.
        if "request_id" in event and "request_id" not in request:
            request = {**request, "request_id": event["request_id"]}
        return request
    return event


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Judge one price against its threshold; 400 with the reason on a malformed request."""
    try:
        request = _request(event)
        symbol = request.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise ValueError(f"symbol must be a non-empty string, found {symbol!r}")
        price = number(request, "price")
        threshold = number(request, "threshold")
    except ValueError as exc:  # orjson.JSONDecodeError is one too
        return _response(400, {"error": str(exc)})
    return _response(
        200,
        {
            "alert": crossed(price, threshold),
            "symbol": symbol,
            "price": price,
            "threshold": threshold,
            "note": request.get("note"),
            "correlation_id": request.get("request_id"),
        },
    )
