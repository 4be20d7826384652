"""LINE signature verification and the webhook's answers (no network, no database)."""

from __future__ import annotations

import base64
import json
from types import ModuleType

import pytest
from service_contract import ImportModule

BODY = b'{"events":[{"type":"message"}]}'
# printf '%s' "$BODY" | openssl dgst -sha256 -hmac line-secret -binary | base64
SIGNATURE = "RnoxGsfwANN4N8TNhoM2OGfDnP8WVyXhwNzDMfAl2j4="


@pytest.fixture
def line(handler_module: ImportModule) -> ModuleType:
    return handler_module("line_webhook")


def test_signature_matches_an_independent_computation(line: ModuleType) -> None:
    assert line.signature("line-secret", BODY) == SIGNATURE
    assert line.verify_signature("line-secret", BODY, SIGNATURE)
    assert not line.verify_signature("line-secret", BODY + b" ", SIGNATURE)
    assert not line.verify_signature("other-secret", BODY, SIGNATURE)
    assert not line.verify_signature("line-secret", BODY, None)
    assert not line.verify_signature("line-secret", BODY, "")


@pytest.mark.parametrize("name", ["x-line-signature", "X-Line-Signature", "X-LINE-SIGNATURE"])
def test_header_name_in_any_case(line: ModuleType, name: str) -> None:
    answer = line.handle_webhook({"headers": {name: SIGNATURE}, "body": BODY.decode()}, None)
    assert answer["statusCode"] == 200
    assert json.loads(answer["body"]) == {"received": 1}


def test_base64_encoded_body_is_verified_on_its_raw_bytes(line: ModuleType) -> None:
    event = {
        "headers": {"x-line-signature": SIGNATURE},
        "body": base64.b64encode(BODY).decode(),
        "isBase64Encoded": True,
    }
    assert line.handle_webhook(event, None)["statusCode"] == 200


@pytest.mark.parametrize(
    "headers", [{}, None, {"x-line-signature": "AAAA"}, {"x-line-signature": SIGNATURE[:-2]}]
)
def test_missing_or_wrong_signature_is_401(
    line: ModuleType, headers: dict[str, str] | None
) -> None:
    answer = line.handle_webhook({"headers": headers, "body": BODY.decode()}, None)
    assert answer["statusCode"] == 401


def test_signed_but_not_json_is_400(line: ModuleType) -> None:
    body = b"not json"
    event = {
        "headers": {"x-line-signature": line.signature("line-secret", body)},
        "body": "not json",
    }
    assert line.handle_webhook(event, None)["statusCode"] == 400


def test_empty_events_list_is_acknowledged(line: ModuleType) -> None:
    body = b'{"destination":"U1","events":[]}'
    event = {
        "headers": {"x-line-signature": line.signature("line-secret", body)},
        "body": body.decode(),
    }
    answer = line.handle_webhook(event, None)
    assert (answer["statusCode"], json.loads(answer["body"])) == (200, {"received": 0})


def test_the_deployed_name_exists(line: ModuleType) -> None:
    assert callable(line.handle_webhook)
