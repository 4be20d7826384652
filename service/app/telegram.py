"""Telegram webhook: answers ``/report SYMBOL`` with the symbol's latest precomputed report.

The reply goes back in the webhook response as a ``sendMessage`` method call, which Telegram
executes, so the function needs no outbound route to api.telegram.org. If the
``X-Telegram-Bot-Api-Secret-Token`` header is present it must equal
``webhook_secret(TELEGRAM_BOT_TOKEN)`` (pass that value as ``secret_token`` to setWebhook),
otherwise 401.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from app import db, reports, web
from app.logs import get_logger
from app.settings import load_settings
from app.symbols import normalise_symbol

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
HELP_TEXT = "Commands:\n/report SYMBOL - the latest daily report for SYMBOL (e.g. /report PTT)"

log = get_logger(__name__)


class TelegramSettings(db.DatabaseSettings):
    """TZ, DB_*, CACHE_TABLE and TELEGRAM_BOT_TOKEN."""

    telegram_bot_token: SecretStr


SETTINGS = load_settings(TelegramSettings)


def webhook_secret(bot_token: str) -> str:
    """The webhook secret derived from the bot token (hex: Telegram allows only [A-Za-z0-9_-])."""
    return hmac.new(bot_token.encode(), b"telegram-webhook", hashlib.sha256).hexdigest()


def parse_update(event: Mapping[str, Any]) -> dict[str, Any]:
    """The Telegram update from a proxy event (JSON body) or a direct invocation (the update)."""
    if "body" in event:
        body = event["body"]
        if isinstance(body, Mapping):
            return dict(body)
        update = json.loads(web.raw_body(event) or b"null")
    else:
        update = dict(event)
    if not isinstance(update, dict):
        raise ValueError("the update must be a JSON object")
    return update


def parse_command(text: str) -> tuple[str, list[str]]:
    """('/report', ['PTT']) from '/report@SomeBot PTT'; ('', []) when not a command."""
    words = text.split()
    if not words or not words[0].startswith("/"):
        return "", []
    command = words[0].split("@", 1)[0].lower()
    return command, words[1:]


def format_report(symbol: str, report: Mapping[str, Any] | None) -> str:
    """The reply text for one symbol's latest report."""
    if report is None:
        return f"No report for {symbol} yet."
    summary = (report.get("report") or {}).get("summary", "")
    lines = [f"{symbol} daily report for {report['report_date']}", str(summary)]
    if report.get("pdf_s3_key"):
        lines.append(f"PDF: {report['pdf_s3_key']}")
    return "\n".join(line for line in lines if line)


def reply_text(text: str) -> str:
    """The answer to one message text (reads the database for /report)."""
    command, args = parse_command(text)
    if command != "/report":
        return HELP_TEXT
    if len(args) != 1:
        return "Usage: /report SYMBOL (e.g. /report PTT)"
    try:
        symbol = normalise_symbol(args[0])
    except ValueError:
        return "Invalid symbol: use 1-12 letters, digits or '.'"
    with db.connection(SETTINGS) as conn:
        report = reports.latest_report(conn, SETTINGS.table, symbol)
    log.info("telegram report request symbol=%s found=%s", symbol, report is not None)
    return format_report(symbol, report)


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Webhook entry point: 401 on a wrong secret header, 400 on a malformed update, else 200."""
    if not isinstance(event, Mapping):
        return web.error(400, "event must be a JSON object")
    given = web.header(event, SECRET_HEADER)
    expected = webhook_secret(SETTINGS.telegram_bot_token.get_secret_value())
    if given is not None and not hmac.compare_digest(given.encode(), expected.encode()):
        log.warning("telegram update refused: wrong secret token header")
        return web.error(401, "invalid secret token")
    try:
        update = parse_update(event)
    except ValueError as exc:  # json.JSONDecodeError and binascii.Error are ValueErrors
        return web.error(400, f"malformed update: {exc}")
    message = update.get("message") or update.get("edited_message") or {}
    chat_id = (message.get("chat") or {}).get("id") if isinstance(message, dict) else None
    text = message.get("text") if isinstance(message, dict) else None
    if chat_id is None or not isinstance(text, str):
        # Not a text message (e.g. a member update): acknowledge so Telegram does not retry.
        log.info("telegram update ignored update_id=%s", update.get("update_id"))
        return web.response(200, {"ok": True})
    reply = reply_text(text)
    log.info("telegram reply chat_id=%s update_id=%s", chat_id, update.get("update_id"))
    return web.response(200, {"method": "sendMessage", "chat_id": chat_id, "text": reply})
