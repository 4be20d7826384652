"""LINE bot webhook: verifies ``x-line-signature`` and acknowledges the events.

The signature is base64(HMAC-SHA256(LINE_CHANNEL_SECRET, raw body)). 401 when it is missing
or wrong, 400 when the signed body is not a JSON object, else 200 ``{"received": n_events}``.
The entry point is ``handle_webhook`` (the deployed handler name; do not rename).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from app import web
from app.logs import get_logger
from app.settings import TimezoneSettings, load_settings

SIGNATURE_HEADER = "x-line-signature"

log = get_logger(__name__)


class LineWebhookSettings(TimezoneSettings):
    """TZ and LINE_CHANNEL_SECRET."""

    line_channel_secret: SecretStr


SETTINGS = load_settings(LineWebhookSettings)


def signature(secret: str, body: bytes) -> str:
    """The signature LINE sends for ``body``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(secret: str, body: bytes, given: str | None) -> bool:
    """Whether ``given`` is the signature of ``body``, compared in constant time."""
    if not given:
        return False
    return hmac.compare_digest(signature(secret, body).encode(), given.strip().encode())


def handle_webhook(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Webhook entry point (API Gateway proxy event)."""
    if not isinstance(event, Mapping):
        return web.error(400, "event must be a JSON object")
    try:
        body = web.raw_body(event)
    except (binascii.Error, ValueError):
        return web.error(400, "body is not valid base64")
    secret = SETTINGS.line_channel_secret.get_secret_value()
    if not verify_signature(secret, body, web.header(event, SIGNATURE_HEADER)):
        log.warning("line webhook refused: missing or invalid signature")
        return web.error(401, "invalid signature")
    try:
        payload = json.loads(body)
    except ValueError:
        return web.error(400, "body is not JSON")
    if not isinstance(payload, dict) or not isinstance(payload.get("events", []), list):
        return web.error(400, "body must be an object with an 'events' list")
    received = len(payload.get("events", []))
    log.info("line webhook received events=%d", received)
    return web.response(200, {"received": received})
