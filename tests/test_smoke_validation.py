"""Pure tests of the smoke response validator: every failure shape the CI-script review named.

These exercise gangway's own parsing logic without AWS; the important shapes are also proven
end to end against real function images in test_post_deploy_gates.py.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from gangway.config import SmokeCase
from gangway.evidence import Check
from tasks.json_values import substitute
from tasks.lambda_invoke import InvokeResult
from tasks.smoke_check import check_invoke, response_fields, validate_response

CID = "gw-test-123"
WORKER = SmokeCase(
    name="worker",
    function="report_worker",
    expect_fields=("pdf_s3_key", "pdf_bytes"),
    expect={"status": "ok", "correlation_id": "{correlation_id}"},
)
API = SmokeCase(
    name="api",
    function="api",
    status_code=200,
    expect={"symbol": "GWSMOKE", "report.correlation_id": "{correlation_id}"},
)
PLAIN = SmokeCase(name="plain", function="ticker_fetcher")


def run(case: SmokeCase, payload: Any, *, status: int = 200, error: str | None = None) -> list:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return validate_response(case, status, error, raw, CID)


def failed(checks: list[Check]) -> dict[str, str]:
    return {c.name: c.found for c in checks if not c.ok}


def proxy(status: int, body: Any) -> dict[str, Any]:
    return {"statusCode": status, "headers": {}, "body": body}


def good_worker() -> dict[str, Any]:
    return {"status": "ok", "correlation_id": CID, "pdf_s3_key": "reports/x.pdf", "pdf_bytes": 9}


def test_a_good_response_passes_every_check() -> None:
    checks = run(WORKER, good_worker())
    assert failed(checks) == {}
    names = [c.name for c in checks]
    assert names == [
        "invoke status",
        "function error",
        "payload is a JSON object",
        "field pdf_s3_key",
        "field pdf_bytes",
        "value status",
        "value correlation_id",
    ]


def test_good_proxy_response_reads_expectations_from_the_body() -> None:
    body = {"symbol": "GWSMOKE", "report": {"correlation_id": CID}}
    checks = run(API, proxy(200, json.dumps(body)))
    assert failed(checks) == {}
    assert {"proxy status code", "response body is a JSON object"} <= {c.name for c in checks}


def test_non_json_payload() -> None:
    problems = failed(run(PLAIN, b"Internal Server Error"))
    assert problems["payload is a JSON object"].startswith("not JSON (")
    assert "Internal Server Error" in problems["payload is a JSON object"]


@pytest.mark.parametrize("raw", [b"NaN", b'{"price": Infinity}', b'[-Infinity]'])
def test_nan_and_infinity_are_not_json(raw: bytes) -> None:
    # Python's json reads them and the Lambda Python runtime writes them; nothing else reads.
    problems = failed(run(PLAIN, raw))
    assert problems["payload is a JSON object"].startswith("not JSON (")


@pytest.mark.parametrize("raw", [b"", b"   \n"])
def test_empty_payload(raw: bytes) -> None:
    problems = failed(run(PLAIN, raw))
    assert problems == {"payload is a JSON object": f"an empty payload ({len(raw)} bytes)"}


@pytest.mark.parametrize(
    ("payload", "found"),
    [
        ([1, 2], "a JSON array: [1, 2]"),
        (42, "a JSON number: 42"),
        (None, "a JSON null: null"),
        (True, "a JSON boolean: true"),
    ],
)
def test_json_that_is_not_an_object(payload: Any, found: str) -> None:
    assert failed(run(PLAIN, payload)) == {"payload is a JSON object": found}


def test_payload_that_is_a_json_string_of_an_object_is_double_encoded() -> None:
    problems = failed(run(WORKER, json.dumps(good_worker())))
    found = problems["payload is a JSON object"]
    assert found.startswith("a JSON string holding JSON of an object (double-encoded)")
    # Nothing is read from a payload that is not an object: no field checks ran.
    assert list(problems) == ["payload is a JSON object"]


def test_payload_that_is_a_plain_json_string() -> None:
    found = failed(run(PLAIN, "ok"))["payload is a JSON object"]
    assert found == 'a JSON string: "ok"'


def test_body_that_is_a_json_string_of_a_string() -> None:
    body = json.dumps(json.dumps({"symbol": "GWSMOKE"}))
    problems = failed(run(API, proxy(200, body)))
    assert problems["response body is a JSON object"].startswith(
        "a JSON string of a string (double-encoded)"
    )
    assert problems["value symbol"] == "not checked: the body is not a JSON object"


def test_body_that_is_an_object_not_a_string() -> None:
    problems = failed(run(API, proxy(200, {"symbol": "GWSMOKE"})))
    assert problems["response body is a JSON object"].startswith(
        "a JSON object value, not a string"
    )


@pytest.mark.parametrize(
    ("body", "found"),
    [
        ("", "an empty body"),
        ("<html>", "not JSON ("),
        ("[1]", "a JSON array, not an object"),
        (None, "no body"),
    ],
)
def test_unusable_proxy_bodies(body: Any, found: str) -> None:
    problems = failed(run(PLAIN, proxy(200, body)))
    assert problems["response body is a JSON object"].startswith(found)


def test_base64_encoded_body_is_decoded() -> None:
    body = base64.b64encode(json.dumps({"symbol": "GWSMOKE"}).encode()).decode()
    payload = {"statusCode": 200, "isBase64Encoded": True, "body": body}
    assert failed(run(PLAIN, payload)) == {}
    assert response_fields(payload) == {"symbol": "GWSMOKE"}


def test_proxy_status_500_fails_and_shows_the_body() -> None:
    problems = failed(run(API, proxy(500, json.dumps({"error": "db down"}))))
    assert problems["proxy status code"].startswith("statusCode 500; body ")
    assert "db down" in problems["proxy status code"]


def test_proxy_status_defaults_to_200_when_the_case_names_none() -> None:
    problems = failed(run(PLAIN, proxy(404, json.dumps({"error": "no report"}))))
    assert problems["proxy status code"].startswith("statusCode 404")


def test_expected_non_200_status_passes() -> None:
    case = SmokeCase(name="line", function="line_webhook", status_code=401)
    assert failed(run(case, proxy(401, json.dumps({"error": "invalid signature"})))) == {}


def test_case_expects_a_proxy_response_but_gets_a_plain_object() -> None:
    problems = failed(run(API, {"symbol": "GWSMOKE"}))
    assert problems["proxy status code"] == "no statusCode (fields: symbol)"


def test_invoke_status_other_than_200() -> None:
    problems = failed(run(WORKER, good_worker(), status=202))
    assert problems == {"invoke status": "StatusCode 202"}


def test_function_error_with_message() -> None:
    payload = {
        "errorMessage": "cannot import name 'handle_webhook'",
        "errorType": "Runtime.ImportModuleError",
        "stackTrace": [],
    }
    checks = run(WORKER, payload, error="Unhandled")
    problems = failed(checks)
    assert problems == {
        "function error": "FunctionError Unhandled: Runtime.ImportModuleError: "
        "cannot import name 'handle_webhook'"
    }
    assert "Dockerfile COPY" in next(c.remedy for c in checks if c.name == "function error")


@pytest.mark.parametrize(
    "payload", [{"errorType": "KeyError"}, {"errorType": "KeyError", "errorMessage": ""}]
)
def test_function_error_without_message_says_so(payload: dict[str, Any]) -> None:
    problems = failed(run(WORKER, payload, error="Handled"))
    assert problems == {"function error": "FunctionError Handled: KeyError with no error message"}


def test_function_error_with_a_payload_that_is_not_an_error_object() -> None:
    problems = failed(run(WORKER, b"", error="Unhandled"))
    assert problems["function error"].startswith(
        "FunctionError Unhandled with a payload that is not an error object: empty"
    )


def test_task_timed_out_names_the_timeout() -> None:
    payload = {"errorMessage": "2026-01-01T00:00:00Z abc Task timed out after 1.00 seconds"}
    checks = run(PLAIN, payload, error="Unhandled")
    problems = failed(checks)
    assert list(problems) == ["function timeout"]
    assert "Task timed out after 1.00 seconds" in problems["function timeout"]
    timeout = next(c for c in checks if c.name == "function timeout")
    assert "functions.ticker_fetcher.timeout" in timeout.expected


def test_missing_expected_field() -> None:
    payload = good_worker()
    del payload["pdf_s3_key"]
    problems = failed(run(WORKER, payload))
    assert problems == {"field pdf_s3_key": "missing (fields: status, correlation_id, pdf_bytes)"}


def test_wrong_expected_value() -> None:
    problems = failed(run(WORKER, {**good_worker(), "status": "degraded"}))
    assert problems == {"value status": "'degraded' (string)"}


def test_expected_value_of_the_wrong_type() -> None:
    case = SmokeCase(name="n", function="query_tool", expect={"count": 1})
    assert failed(run(case, {"count": "1"})) == {"value count": "'1' (string)"}
    assert failed(run(case, {"count": True})) == {"value count": "True (boolean)"}


def test_correlation_id_placeholder_must_match_this_run() -> None:
    problems = failed(run(WORKER, {**good_worker(), "correlation_id": "an-older-run"}))
    assert problems == {"value correlation_id": "'an-older-run' (string)"}


def test_missing_expected_value_in_a_nested_path() -> None:
    body = json.dumps({"symbol": "GWSMOKE", "report": {}})
    problems = failed(run(API, proxy(200, body)))
    assert problems == {"value report.correlation_id": "missing (fields: symbol, report)"}


def test_substitute_reaches_nested_strings_only() -> None:
    event = {
        "a": "{correlation_id}",
        "b": {"c": ["x-{correlation_id}", 3, None]},
        "body": '{"id": "{correlation_id}", "n": {"k": 1}}',
    }
    assert substitute(event, "C1") == {
        "a": "C1",
        "b": {"c": ["x-C1", 3, None]},
        "body": '{"id": "C1", "n": {"k": 1}}',
    }


def test_plain_text_timeout_answer_still_names_the_timeout() -> None:
    problems = failed(run(PLAIN, b"Task timed out after 1.00 seconds", error="Unhandled"))
    assert problems == {
        "function timeout": "Task timed out after 1.00 seconds (FunctionError Unhandled)"
    }


def test_timeout_answer_without_function_error_is_still_named_a_timeout() -> None:
    problems = failed(run(PLAIN, b"Task timed out after 1.00 seconds"))
    assert problems == {
        "function timeout": "Task timed out after 1.00 seconds (FunctionError not reported)"
    }
    # An object that merely mentions a timeout is an ordinary response.
    assert failed(run(PLAIN, {"note": "Task timed out yesterday"})) == {}


def invoked(
    payload: Any, *, version: str | None = "3", failure: Check | None = None
) -> InvokeResult:
    return InvokeResult(
        function_name="gw-ticker",
        qualifier="live",
        started_at=1.0,
        finished_at=2.0,
        status=None if failure else 200,
        payload=b"" if failure else json.dumps(payload).encode(),
        executed_version=version,
        failure=failure,
    )


def test_an_invoke_judged_adds_the_version_that_ran() -> None:
    body = {"symbols": [], "as_of": "x"}
    checks = check_invoke(PLAIN, invoked(body), CID, expect_version="3")
    assert failed(checks) == {} and checks[-1].name == "executed version"
    wrong = check_invoke(PLAIN, invoked(body, version="2"), CID, expect_version="3")
    assert failed(wrong) == {"executed version": "ExecutedVersion 2"}
    unreported = check_invoke(PLAIN, invoked(body, version=None), CID, expect_version=None)
    assert failed(unreported) == {"executed version": "not reported by the invoke"}


def test_an_invoke_that_got_no_answer_is_its_one_failed_check() -> None:
    failure = Check(name="invoke", ok=False, expected="a response", found="no response within 1s")
    assert check_invoke(PLAIN, invoked(None, failure=failure), CID, "3") == [failure]
