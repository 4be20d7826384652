"""Telegram webhook paths that need no database: secret header, parsing, help."""

from __future__ import annotations

import json
import re
from types import ModuleType

import pytest
from service_contract import FULL_ENV, ImportModule


@pytest.fixture
def tg(handler_module: ImportModule) -> ModuleType:
    return handler_module("telegram")


def update(text: str | None = "/help") -> dict:
    message = {"message_id": 1, "chat": {"id": 42, "type": "private"}}
    if text is not None:
        message["text"] = text
    return {"update_id": 7, "message": message}


def test_secret_is_derived_from_the_token_and_allowed_by_telegram(tg: ModuleType) -> None:
    secret = tg.webhook_secret(FULL_ENV["TELEGRAM_BOT_TOKEN"])
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret)
    assert FULL_ENV["TELEGRAM_BOT_TOKEN"] not in secret
    assert secret != tg.webhook_secret("other:token")


def test_wrong_secret_header_is_401(tg: ModuleType) -> None:
    event = {"headers": {"x-telegram-bot-api-secret-token": "nope"}, "body": json.dumps(update())}
    assert tg.handler(event, None)["statusCode"] == 401


def test_right_secret_header_any_case_and_help(tg: ModuleType) -> None:
    secret = tg.webhook_secret(FULL_ENV["TELEGRAM_BOT_TOKEN"])
    event = {"headers": {"X-Telegram-Bot-Api-Secret-Token": secret}, "body": json.dumps(update())}
    answer = tg.handler(event, None)
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {
        "method": "sendMessage",
        "chat_id": 42,
        "text": tg.HELP_TEXT,
    }


def test_update_as_a_dict_body_or_as_the_event(tg: ModuleType) -> None:
    for event in ({"body": update("hello")}, update("hello")):
        assert json.loads(tg.handler(event, None)["body"])["text"] == tg.HELP_TEXT


def test_malformed_body_is_400(tg: ModuleType) -> None:
    assert tg.handler({"body": "{not json"}, None)["statusCode"] == 400
    assert tg.handler({"body": "[1, 2]"}, None)["statusCode"] == 400


def test_non_text_update_is_acknowledged(tg: ModuleType) -> None:
    answer = tg.handler({"body": json.dumps(update(None))}, None)
    assert (answer["statusCode"], json.loads(answer["body"])) == (200, {"ok": True})


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("/report PTT", ("/report", ["PTT"])),
        ("/Report@DailyBot  aot ", ("/report", ["aot"])),
        ("report PTT", ("", [])),
        ("", ("", [])),
    ],
)
def test_parse_command(tg: ModuleType, text: str, parsed: tuple[str, list[str]]) -> None:
    assert tg.parse_command(text) == parsed


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("/report", "Usage: /report SYMBOL"),
        ("/report A B", "Usage: /report SYMBOL"),
        ("/report P;T", "Invalid symbol"),
    ],
)
def test_report_usage_errors_need_no_database(tg: ModuleType, text: str, reply: str) -> None:
    assert tg.reply_text(text).startswith(reply)


def test_format_report(tg: ModuleType) -> None:
    report = {"report_date": "2026-11-23", "report": {"summary": "S."}, "pdf_s3_key": "k.pdf"}
    assert tg.format_report("PTT", report) == "PTT daily report for 2026-11-23\nS.\nPDF: k.pdf"
    assert tg.format_report("PTT", None) == "No report for PTT yet."
