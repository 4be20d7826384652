"""Post-deploy smoke invokes: content evidence that each deployed function answers as designed.

A status code is never enough (BRIEF, incident 4): every response is parsed defensively and
checked for the failure shapes a Lambda can return with HTTP 200 — FunctionError, an empty
or non-JSON payload, JSON that is not an object, a double-encoded JSON string, a proxy
response with the wrong status or a body that is not a JSON object — before the case's own
expectations are compared.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import time
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError
from pydantic import BaseModel, ConfigDict

from gangway.config import DeployConfig, SmokeCase
from gangway.evidence import Check, GateResult, Status, Strength
from gangway.redact import scrub
from tasks.aws import BOTO, aws_error, error_code

PLACEHOLDER = "{correlation_id}"
SNIPPET = 200
MISSING: Any = object()
REQUEST_ID = re.compile(r"(?:REPORT|START|END) RequestId: ([0-9A-Za-z-]+)")
TIMED_OUT = "Task timed out"


class SmokeOutcome(BaseModel):
    """One smoke invoke: its gate result plus what the function answered and where it ran."""

    model_config = ConfigDict(frozen=True)

    case: str
    function: str
    function_name: str
    qualifier: str
    result: GateResult
    payload: dict[str, Any] | None = None
    executed_version: str | None = None
    log_tail: str = ""
    request_id: str | None = None

    @property
    def ok(self) -> bool:
        """Whether every check of this invoke held."""
        return self.result.status is Status.PASSED


# ---------------------------------------------------------------- pure helpers


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


def _snippet(value: Any, limit: int = SNIPPET) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def _kind(value: Any) -> str:
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


def is_proxy_response(document: Any) -> bool:
    """Whether document is an API Gateway proxy-integration response (has ``statusCode``)."""
    return isinstance(document, Mapping) and "statusCode" in document


def _decode_body(document: Mapping[str, Any]) -> tuple[Any, str]:
    """(parsed body or MISSING, problem); the body must be a JSON string holding an object."""
    body = document.get("body", MISSING)
    if body is MISSING or body is None:
        return MISSING, "no body"
    if not isinstance(body, str):
        return MISSING, (
            f"a JSON {_kind(body)} value, not a string: API Gateway needs body as a JSON string "
            f"({_snippet(body)})"
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
        return MISSING, f"not JSON ({exc}): {_snippet(body)}"
    if isinstance(parsed, str):
        if double_encoded(parsed):
            return MISSING, f"a JSON string of a string (double-encoded): {_snippet(body)}"
        return MISSING, f"a JSON string, not an object: {_snippet(body)}"
    if not isinstance(parsed, dict):
        return MISSING, f"a JSON {_kind(parsed)}, not an object: {_snippet(body)}"
    return parsed, ""


def response_fields(payload: Any) -> dict[str, Any] | None:
    """The fields expectations read: the parsed body of a proxy response, else the payload."""
    if not isinstance(payload, dict):
        return None
    if not is_proxy_response(payload):
        return payload
    body, problem = _decode_body(payload)
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
            found=f"not JSON ({exc}): {_snippet(text)}",
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
            + f": {_snippet(text)}",
            remedy="return the dict itself, not json.dumps() of it",
        )
    if not isinstance(document, dict):
        return MISSING, Check(
            name=name,
            ok=False,
            expected=expected,
            found=f"a JSON {_kind(document)}: {_snippet(text)}",
            remedy="return a dict (a JSON object) from the handler",
        )
    return document, Check(name=name, ok=True, expected=expected, found=f"{len(document)} fields")


def double_encoded(text: str) -> str:
    """'of an object' / 'of an array'… when text is itself JSON of that kind, else ''."""
    try:
        inner = loads(text)
    except ValueError:
        return ""
    if isinstance(inner, dict):
        return "of an object"
    return f"of a {_kind(inner)}"


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
        body = _snippet((payload_bytes or b"").decode("utf-8", errors="replace")) or "empty"
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
            found=f"{_snippet(message)} (FunctionError {function_error})",
            remedy=f"make the handler faster or raise functions.{case.function}.timeout; a "
            "synchronous function must not run a job longer than its timeout",
            evidence={"errorType": error_type},
        )
    if not message:
        found = f"FunctionError {function_error}: {error_type} with no error message"
    else:
        found = f"FunctionError {function_error}: {error_type}: {_snippet(str(message), 400)}"
    return Check(
        name="function error",
        ok=False,
        expected="no FunctionError",
        found=found,
        remedy=_error_remedy(error_type, str(message or "")),
        evidence={"stackTrace": [_snippet(s) for s in (document.get("stackTrace") or [])[-3:]]},
    )


# The DB-API exception classes a MySQL driver raises when the server refuses a row (a NULL in
# a NOT NULL column, a value too long, a failed CHECK such as MariaDB's json_valid).
DB_REFUSED = {"IntegrityError", "DataError"}
# PyMySQL's refusal of a parameter type it cannot quote (a dict, a list): nothing was sent.
DRIVER_REFUSED = "can not be used as parameter"


def _error_remedy(error_type: str, message: str = "") -> str:
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
    if error_type == "Runtime.ImportModuleError":
        return "the handler's module is not importable in the image: check the Dockerfile COPY"
    if error_type == "Runtime.HandlerNotFound":
        return "the handler function is not in its module: check the function's handler setting"
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
                found=f"no statusCode (fields: {_snippet(', '.join(document) or 'none')})",
                remedy="return {'statusCode': ..., 'body': json.dumps(...)} from an HTTP handler",
            )
        ]
    want = case.status_code if case.status_code is not None else 200
    status = document.get("statusCode")
    body, problem = _decode_body(document)
    body_text = _snippet(document.get("body"), 160)
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
    present = _snippet(", ".join(fields) or "none")
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
        found = f"missing (fields: {present})" if have is MISSING else _snippet(repr(have))
        checks.append(
            Check(
                name=f"value {field}",
                ok=ok,
                expected=_snippet(repr(want)),
                found=found if ok or have is MISSING else f"{found} ({_kind(have)})",
                remedy="" if ok else f"the handler must return {field} = {_snippet(want, 80)}",
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


# ---------------------------------------------------------------- the AWS boundary
THROTTLED = ("TooManyRequestsException", "ThrottlingException")
THROTTLE_BACKOFF_S = (1.0, 2.0, 4.0, 8.0)


def _invoke_client(config: DeployConfig) -> Any:
    """A Lambda client whose invoke is bounded by deploy.invoke_timeout_s and never retried."""
    # tasks.aws.client retries timeouts (standard mode): that would re-run a non-idempotent
    # handler (the report worker writes) and stretch the wait to three times the bound.
    boto = BOTO.merge(
        BotoConfig(
            read_timeout=config.environment.deploy.invoke_timeout_s,
            retries={"mode": "standard", "total_max_attempts": 1},
        )
    )
    aws = config.environment.aws
    return boto3.session.Session().client(
        "lambda", region_name=aws.region, endpoint_url=aws.endpoint_url, config=boto
    )


def _invoke(config: DeployConfig, name: str, qualifier: str, event: bytes) -> dict[str, Any]:
    """One invoke; a throttled one is tried again, since a throttled invoke never ran."""
    lam = _invoke_client(config)
    for attempt in range(len(THROTTLE_BACKOFF_S) + 1):
        try:
            return dict(
                lam.invoke(
                    FunctionName=name,
                    Qualifier=qualifier,
                    InvocationType="RequestResponse",
                    LogType="Tail",
                    Payload=event,
                )
            )
        except ClientError as exc:
            if error_code(exc) not in THROTTLED or attempt == len(THROTTLE_BACKOFF_S):
                raise
            # Lambda refuses before running the handler (429), so a retry cannot run it
            # twice; a healthy version must not be rolled back for a burst of throttles.
            time.sleep(THROTTLE_BACKOFF_S[attempt] * random.uniform(0.5, 1.0))
    raise AssertionError("unreachable")


def _request_id(tail: str, response: Mapping[str, Any]) -> str | None:
    # The id in the log lines is what the log scan matches; on AWS it equals the API's.
    match = REQUEST_ID.search(tail)
    if match:
        return match.group(1)
    return response.get("ResponseMetadata", {}).get("RequestId")


def _version_check(executed: str | None, expect_version: str | None) -> Check:
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


def _failed_invoke(name: str, found: str, remedy: str, expected: str) -> list[Check]:
    return [Check(name=name, ok=False, expected=expected, found=found, remedy=remedy)]


def smoke_invoke(
    config: DeployConfig,
    case: SmokeCase,
    qualifier: str,
    correlation_id: str,
    *,
    expect_version: str | None = None,
) -> SmokeOutcome:
    """Invoke the case's function at qualifier (version or alias) and validate its response.

    A numeric qualifier is also the version that must execute; for an alias pass expect_version.
    """
    started = time.monotonic()
    fn = config.functions[case.function]
    timeout_s = config.environment.deploy.invoke_timeout_s
    if expect_version is None and qualifier.isdigit():
        expect_version = qualifier
    event = substitute(case.event, correlation_id)
    response: dict[str, Any] = {}
    payload_bytes = b""
    checks: list[Check]
    try:
        response = _invoke(config, fn.name, qualifier, json.dumps(event).encode())
        payload_bytes = response["Payload"].read()
    except ReadTimeoutError:
        checks = _failed_invoke(
            "invoke",
            f"no response within {timeout_s}s (the function's timeout is {fn.spec.timeout}s)",
            "find why the handler hangs (its logs); raise environment.deploy.invoke_timeout_s "
            "only if the function legitimately runs longer",
            f"a response within environment.deploy.invoke_timeout_s = {timeout_s}s",
        )
    except ConnectTimeoutError as exc:
        checks = _failed_invoke(
            "invoke", str(exc), "check network access to the Lambda endpoint", "a connection"
        )
    except (ClientError, BotoCoreError) as exc:
        err = aws_error(exc, "lambda:InvokeFunction", f"{fn.name}:{qualifier}")
        checks = _failed_invoke("invoke", err.found, err.remedy, err.expected)
    else:
        checks = validate_response(
            case,
            response.get("StatusCode"),
            response.get("FunctionError"),
            payload_bytes,
            correlation_id,
        )
        checks.append(_version_check(response.get("ExecutedVersion"), expect_version))
    return _outcome(config, case, qualifier, checks, response, payload_bytes, started)


def _outcome(
    config: DeployConfig,
    case: SmokeCase,
    qualifier: str,
    checks: list[Check],
    response: Mapping[str, Any],
    payload_bytes: bytes,
    started: float,
) -> SmokeOutcome:
    secrets = config.secret_values()
    tail = ""
    if response.get("LogResult"):
        tail = base64.b64decode(response["LogResult"]).decode("utf-8", errors="replace")
    try:
        parsed = loads(payload_bytes) if payload_bytes else None
    except ValueError:
        parsed = None
    result = GateResult(
        gate=f"smoke: {case.name}",
        boundary="deployment",
        strength=Strength.CONTENT,
        checks=tuple(scrub(c, secrets) for c in checks),
        duration_s=time.monotonic() - started,
    )
    return SmokeOutcome(
        case=case.name,
        function=case.function,
        function_name=config.functions[case.function].name,
        qualifier=qualifier,
        result=result,
        payload=scrub(parsed, secrets) if isinstance(parsed, dict) else None,
        executed_version=response.get("ExecutedVersion"),
        log_tail=scrub(tail, secrets),
        request_id=_request_id(tail, response),
    )


def smoke_gate(
    config: DeployConfig,
    qualifier: str | Mapping[str, str],
    correlation_id: str,
    expect_versions: Mapping[str, str] | None = None,
) -> tuple[GateResult, list[SmokeOutcome]]:
    """Run every smoke case in order; qualifier is one alias/version or one per function key.

    expect_versions (function key → version) names the version an alias must have run.
    """
    started = time.monotonic()
    if not config.smoke:
        skipped = GateResult(
            gate="smoke",
            boundary="deployment",
            strength=Strength.CONTENT,
            skipped_reason="the service declares no smoke cases ([[smoke]] in service.toml)",
        )
        return skipped, []
    outcomes = []
    for case in config.smoke:
        which = qualifier if isinstance(qualifier, str) else qualifier[case.function]
        expected = (expect_versions or {}).get(case.function)
        outcomes.append(smoke_invoke(config, case, which, correlation_id, expect_version=expected))
    checks = tuple(
        check.model_copy(update={"name": f"{outcome.case}: {check.name}"})
        for outcome in outcomes
        for check in outcome.result.checks
    )
    result = GateResult(
        gate="smoke",
        boundary="deployment",
        strength=Strength.CONTENT,
        checks=checks,
        duration_s=time.monotonic() - started,
    )
    return result, outcomes
