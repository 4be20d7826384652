"""Smoke response validation: whether one invoke's answer is what its smoke case promises.

A status code is never enough (BRIEF, incident 4): every response is parsed defensively and
checked for the failure shapes a Lambda can return with HTTP 200 — FunctionError, an empty
or non-JSON payload, JSON that is not an object, a double-encoded JSON string, a proxy
response with the wrong status or a body that is not a JSON object — before the case's own
expectations are compared, and the version that ran with the version that should have.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from gangway.config import SmokeCase
from gangway.evidence import Check
from tasks.json_values import MISSING, double_encoded, kind, loads, lookup, snippet, substitute
from tasks.lambda_invoke import InvokeResult

TIMED_OUT = "Task timed out"


def is_proxy_response(document: Any) -> bool:
    """Whether document is an API Gateway proxy-integration response (has ``statusCode``)."""
    return isinstance(document, Mapping) and "statusCode" in document


def decode_body(document: Mapping[str, Any]) -> tuple[Any, str]:
    """(parsed body or MISSING, problem); the body must be a JSON string holding an object."""
    body = document.get("body", MISSING)
    if body is MISSING or body is None:
        return MISSING, "no body"
    if not isinstance(body, str):
        return MISSING, (
            f"a JSON {kind(body)} value, not a string: API Gateway needs body as a JSON string "
            f"({snippet(body)})"
        )
    if document.get("isBase64Encoded"):
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return MISSING, "isBase64Encoded is set but body is not base64 of UTF-8 text"
    if not body.strip():
        return MISSING, "an empty body"
    try:
        parsed = loads(body)
    except ValueError as exc:
        return MISSING, f"not JSON ({exc}): {snippet(body)}"
    if isinstance(parsed, str):
        if double_encoded(parsed):
            return MISSING, f"a JSON string of a string (double-encoded): {snippet(body)}"
        return MISSING, f"a JSON string, not an object: {snippet(body)}"
    if not isinstance(parsed, dict):
        return MISSING, f"a JSON {kind(parsed)}, not an object: {snippet(body)}"
    return parsed, ""


def response_fields(payload: Any) -> dict[str, Any] | None:
    """The fields expectations read: the parsed body of a proxy response, else the payload."""
    if not isinstance(payload, dict):
        return None
    if not is_proxy_response(payload):
        return payload
    body, problem = decode_body(payload)
    return None if problem else body


def parse_payload(payload_bytes: bytes | None) -> tuple[Any, Check]:
    """(document or MISSING, the check that says whether the payload is a JSON object)."""
    name, expected = "payload is a JSON object", "a JSON object"
    raw = payload_bytes or b""
    if not raw.strip():
        return MISSING, Check(
            name=name,
            ok=False,
            expected=expected,
            found=f"an empty payload ({len(raw)} bytes)",
            remedy="return a dict from the handler; None serialises to null, nothing to empty",
        )
    text = raw.decode("utf-8", errors="replace")
    try:
        document = loads(text)
    except ValueError as exc:
        return MISSING, Check(
            name=name,
            ok=False,
            expected=expected,
            found=f"not JSON ({exc}): {snippet(text)}",
            remedy="return a JSON-serialisable dict from the handler (a float nan or inf has no "
            "JSON form: send null)",
        )
    if isinstance(document, str):
        inner = double_encoded(document)
        return MISSING, Check(
            name=name,
            ok=False,
            expected=expected,
            found=(
                f"a JSON string holding JSON {inner} (double-encoded)" if inner else "a JSON string"
            )
            + f": {snippet(text)}",
            remedy="return the dict itself, not json.dumps() of it",
        )
    if not isinstance(document, dict):
        return MISSING, Check(
            name=name,
            ok=False,
            expected=expected,
            found=f"a JSON {kind(document)}: {snippet(text)}",
            remedy="return a dict (a JSON object) from the handler",
        )
    return document, Check(name=name, ok=True, expected=expected, found=f"{len(document)} fields")


def _timeout_answer(payload_bytes: bytes | None) -> bool:
    """Whether the payload is a runtime's 'Task timed out' answer rather than a JSON object."""
    text = (payload_bytes or b"").decode("utf-8", errors="replace")
    if TIMED_OUT not in text:
        return False
    try:
        return not isinstance(loads(text), dict)
    except ValueError:
        return True


def _status_check(status: int | None) -> Check:
    return Check(
        name="invoke status",
        ok=status == 200,
        expected="StatusCode 200 (a synchronous RequestResponse invoke)",
        found=f"StatusCode {status}",
        remedy="" if status == 200 else "invoke with InvocationType=RequestResponse; see the logs",
    )


def _function_error_check(case: SmokeCase, function_error: str, payload_bytes: bytes) -> Check:
    document = None
    try:
        document = loads(payload_bytes or b"null")
    except ValueError:
        pass
    if not isinstance(document, dict):
        text = (payload_bytes or b"").decode("utf-8", errors="replace")
        if TIMED_OUT in text:
            # Some runtimes answer a timeout with plain text instead of an error object.
            document = {"errorMessage": text.strip().strip('"')}
    if not isinstance(document, dict):
        body = snippet((payload_bytes or b"").decode("utf-8", errors="replace")) or "empty"
        return Check(
            name="function error",
            ok=False,
            expected="no FunctionError",
            found=f"FunctionError {function_error} with a payload that is not an error object: "
            f"{body}",
            remedy="read the function's logs for this request",
        )
    error_type = str(document.get("errorType") or "no errorType")
    message = document.get("errorMessage")
    if isinstance(message, str) and TIMED_OUT in message:
        return Check(
            name="function timeout",
            ok=False,
            expected=f"the handler finishes within functions.{case.function}.timeout",
            found=f"{snippet(message)} (FunctionError {function_error})",
            remedy=f"make the handler faster or raise functions.{case.function}.timeout; a "
            "synchronous function must not run a job longer than its timeout",
            evidence={"errorType": error_type},
        )
    if not message:
        found = f"FunctionError {function_error}: {error_type} with no error message"
    else:
        found = f"FunctionError {function_error}: {error_type}: {snippet(str(message), 400)}"
    return Check(
        name="function error",
        ok=False,
        expected="no FunctionError",
        found=found,
        remedy=_error_remedy(error_type, str(message or ""), case.function),
        evidence={"stackTrace": [snippet(s) for s in (document.get("stackTrace") or [])[-3:]]},
    )


# The DB-API exception classes a MySQL driver raises when the server refuses a row (a NULL in
# a NOT NULL column, a value too long, a failed CHECK such as MariaDB's json_valid).
DB_REFUSED = {"IntegrityError", "DataError"}
# PyMySQL's refusal of a parameter type it cannot quote (a dict, a list): nothing was sent.
DRIVER_REFUSED = "can not be used as parameter"
# The runtime could not load the handler it was told to run: it comes from the function's
# ImageConfig.Command or the image's CMD, not from gangway's configuration.
RUN_HANDLER_ERRORS = {"Runtime.ImportModuleError", "Runtime.HandlerNotFound"}


def _error_remedy(error_type: str, message: str = "", key: str = "<function>") -> str:
    if error_type in DB_REFUSED:
        return (
            "the database refused the row the handler wrote: make the code write what the data "
            "contract ([[tables]] in service.toml) and the live columns say (types, NOT NULL)"
        )
    if DRIVER_REFUSED in message:
        return (
            "the database driver refused a parameter: serialise it first (json.dumps for a "
            "json column) and keep the data contract's types"
        )
    if error_type in RUN_HANDLER_ERRORS:
        what = (
            "its module is not importable in the image (check the Dockerfile COPY too)"
            if error_type == "Runtime.ImportModuleError"
            else "the function is not in its module"
        )
        return (
            f"the handler Lambda ran: {what}; Lambda runs the function's ImageConfig.Command "
            "when set (infrastructure code), otherwise the image's CMD (the Dockerfile's last "
            f"CMD line): make that name functions.{key}.handler"
        )
    if error_type.startswith("Runtime."):
        return "the runtime could not run the handler: read the function's logs"
    return "fix the handler: read the stack trace and the function's logs for this request"


def _proxy_checks(case: SmokeCase, document: dict[str, Any]) -> tuple[Any, list[Check]]:
    """(the fields expectations read or MISSING, the proxy-response checks)."""
    if not is_proxy_response(document):
        if case.status_code is None:
            return document, []
        return MISSING, [
            Check(
                name="proxy status code",
                ok=False,
                expected=f"a proxy response with statusCode {case.status_code}",
                found=f"no statusCode (fields: {snippet(', '.join(document) or 'none')})",
                remedy="return {'statusCode': ..., 'body': json.dumps(...)} from an HTTP handler",
            )
        ]
    want = case.status_code if case.status_code is not None else 200
    status = document.get("statusCode")
    body, problem = decode_body(document)
    body_text = snippet(document.get("body"), 160)
    checks = [
        Check(
            name="proxy status code",
            ok=status == want and not isinstance(status, bool),
            expected=f"statusCode {want}",
            found=f"statusCode {status!r}" + ("" if status == want else f"; body {body_text}"),
            remedy="" if status == want else "see the body and the function's logs",
        ),
        Check(
            name="response body is a JSON object",
            ok=not problem,
            expected="body: a JSON string that parses to an object",
            found=problem or f"{len(body)} fields",
            remedy="" if not problem else "return body=json.dumps(<dict>) exactly once",
        ),
    ]
    return body, checks


def _expectation_checks(
    case: SmokeCase, fields: Mapping[str, Any], correlation_id: str, where: str
) -> list[Check]:
    present = snippet(", ".join(fields) or "none")
    checks = []
    for field in case.expect_fields:
        value = lookup(fields, field)
        checks.append(
            Check(
                name=f"field {field}",
                ok=value is not MISSING,
                expected=f"{field} in the {where}",
                found="present" if value is not MISSING else f"missing (fields: {present})",
                remedy="" if value is not MISSING else f"return {field} from the handler",
            )
        )
    for field, raw in case.expect.items():
        want = substitute(raw, correlation_id)
        have = lookup(fields, field)
        ok = have is not MISSING and have == want and type(have) is type(want)
        found = f"missing (fields: {present})" if have is MISSING else snippet(repr(have))
        checks.append(
            Check(
                name=f"value {field}",
                ok=ok,
                expected=snippet(repr(want)),
                found=found if ok or have is MISSING else f"{found} ({kind(have)})",
                remedy="" if ok else f"the handler must return {field} = {snippet(want, 80)}",
            )
        )
    return checks


def validate_response(
    case: SmokeCase,
    status: int | None,
    function_error: str | None,
    payload_bytes: bytes | None,
    correlation_id: str,
) -> list[Check]:
    """Every check a smoke response must pass, from the invoke status to the case's expectations."""
    checks = [_status_check(status)]
    if function_error or _timeout_answer(payload_bytes):
        # A timeout reported without FunctionError is still a timeout; the found text says so.
        reported = function_error or "not reported"
        checks.append(_function_error_check(case, reported, payload_bytes or b""))
        return checks
    checks.append(Check(name="function error", ok=True, expected="no FunctionError", found="none"))
    document, payload_check = parse_payload(payload_bytes)
    checks.append(payload_check)
    if document is MISSING:
        return checks
    fields, proxy_checks = _proxy_checks(case, document)
    checks.extend(proxy_checks)
    if fields is MISSING:
        # Expectations cannot be read from an unusable body; say so once per expectation.
        unread = [("field", f) for f in case.expect_fields] + [("value", f) for f in case.expect]
        checks.extend(
            Check(
                name=f"{what} {name}",
                ok=False,
                expected=f"{name} in the body",
                found="not checked: the body is not a JSON object",
            )
            for what, name in unread
        )
        return checks
    where = "body" if is_proxy_response(document) else "response"
    checks.extend(_expectation_checks(case, fields, correlation_id, where))
    return checks


def version_check(executed: str | None, expect_version: str | None) -> Check:
    """The version that ran is the one the smoke meant (or at least one was reported)."""
    if executed is None:
        return Check(
            name="executed version",
            ok=False,
            expected=f"ExecutedVersion {expect_version or 'reported'}",
            found="not reported by the invoke",
            remedy="the endpoint must report ExecutedVersion (AWS always does for a sync invoke)",
        )
    ok = expect_version is None or executed == expect_version
    return Check(
        name="executed version",
        ok=ok,
        expected=f"ExecutedVersion {expect_version or 'reported'}",
        found=f"ExecutedVersion {executed}",
        remedy="" if ok else "the qualifier resolved to another version: check the alias",
    )


def check_invoke(
    case: SmokeCase, result: InvokeResult, correlation_id: str, expect_version: str | None
) -> list[Check]:
    """Every check of one smoke invoke: its failure, or its response and the version that ran."""
    if result.failure is not None:
        return [result.failure]
    checks = validate_response(
        case, result.status, result.function_error, result.payload, correlation_id
    )
    checks.append(version_check(result.executed_version, expect_version))
    return checks
