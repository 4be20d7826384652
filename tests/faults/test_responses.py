"""Response faults: a deployed version that answers wrongly, caught after traffic moved.

A status code is never enough: each shape below genuinely arrives at the smoke gate through
the real invoke path (the Python runtime client marshals the handler's return value, the
Lambda RIE answers, the moto bridge reports it as Lambda does, boto3 reads it), and each row
expects the rollback with every alias read back on its previous version.

Six shapes share ONE deploy of one variant image (each function answers a different wrong
shape), run by the first shape row and reused by the others; each row asserts its own check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tasks.aws import client

from .conftest import Aliases, Attempt, FaultRun, append_python, read_aliases

pytestmark = pytest.mark.stack

# Each function of the reference service answers one wrong shape; the report worker stays
# healthy so the API's answer is its own fault.
SHAPES = {
    "api": """
        def handler(event, context):
            # A proxy response with a server error status (the body itself is fine JSON).
            return web.error(500, "report store unavailable (variant)")
        """,
    "telegram": """
        def handler(event, context):
            # The body encoded twice: a JSON string whose content is the JSON object.
            reply = {"method": "sendMessage", "chat_id": 1, "text": "ok"}
            return {
                "statusCode": 200,
                "headers": dict(web.JSON_HEADERS),
                "body": json.dumps(json.dumps(reply)),
            }
        """,
    "ticker_fetcher": """
        _gw_original = handler

        def handler(event, context):
            # Change since the previous close with no previous close: 0/0 becomes NaN, which
            # the runtime's encoder writes as a bare NaN (allow_nan): the payload is not JSON.
            return {**_gw_original(event, context), "change_pct": float("nan")}
        """,
    "query_tool": """
        def handler(event, context):
            # bytes pass through the runtime unmarshalled: an empty payload.
            return b""
        """,
    "precompute_controller": """
        _gw_original = handler

        def handler(event, context):
            # The list instead of the object that carries it.
            return list(_gw_original(event, context)["missing"])
        """,
    "line_webhook": """
        def handle_webhook(event, context):
            raise RuntimeError("LINE signature verification crashed (variant)")
        """,
}


@dataclass
class SharedDeploy:
    """The one deploy of the shapes variant, and the aliases before it."""

    attempt: Attempt | None = None
    before: Aliases | None = None


@pytest.fixture(scope="module")
def shapes_deploy() -> SharedDeploy:
    """Holds the shapes deploy for the module, whichever shape row runs first."""
    return SharedDeploy()


@pytest.fixture
def shapes(
    fault: FaultRun, variant: Callable[..., None], shapes_deploy: SharedDeploy
) -> Iterator[Attempt]:
    """The shapes attempt: deployed by the first row that asks, reused by the others.

    Later rows judge against the aliases from BEFORE that deploy, not the ones they find.
    """
    if shapes_deploy.attempt is None:
        variant(*(append_python(fn, code) for fn, code in SHAPES.items()))
        shapes_deploy.before = fault.before
        shapes_deploy.attempt = fault.deploy()
    else:
        assert shapes_deploy.before is not None
        fault.before = shapes_deploy.before
    yield shapes_deploy.attempt


def smoke_check(attempt: Attempt, case: str, check: str) -> dict[str, Any]:
    """One failed smoke check of the attempt's trigger, by case and check name."""
    assert attempt.record is not None and attempt.record.trigger
    name = f"{case}: {check}"
    found = [c for c in attempt.record.trigger["checks"] if c["name"] == name]
    assert found, (
        f"no failed check {name!r}: {[c['name'] for c in attempt.record.trigger['checks']]}"
    )
    return found[0]


def rolled_back_at_smoke(fault: FaultRun, attempt: Attempt, *says: str) -> None:
    """The smoke gate caught it; every alias is back on its previous version, read back."""
    fault.rolled_back(attempt, step="smoke", boundary="deployment", says=says)
    assert read_aliases(fault.config) == fault.before


@pytest.mark.fault("smoke response: a payload that is not JSON (NaN)", group="deployment")
def test_non_json_payload_rolls_back(fault: FaultRun, shapes: Attempt) -> None:
    check = smoke_check(shapes, "ticker fetcher lists symbols", "payload is a JSON object")
    assert check["found"].startswith("not JSON"), check
    assert "NaN" in check["found"], check
    rolled_back_at_smoke(fault, shapes, "ticker fetcher lists symbols: payload is a JSON object")


@pytest.mark.fault("smoke response: an empty payload", group="deployment")
def test_empty_payload_rolls_back(fault: FaultRun, shapes: Attempt) -> None:
    check = smoke_check(shapes, "query tool counts reports", "payload is a JSON object")
    assert check["found"] == "an empty payload (0 bytes)", check
    rolled_back_at_smoke(fault, shapes, "an empty payload (0 bytes)")


@pytest.mark.fault("smoke response: JSON that is not an object (an array)", group="deployment")
def test_non_object_payload_rolls_back(fault: FaultRun, shapes: Attempt) -> None:
    check = smoke_check(shapes, "precompute controller plans", "payload is a JSON object")
    assert check["found"].startswith("a JSON array: ["), check
    rolled_back_at_smoke(fault, shapes, "precompute controller plans: payload is a JSON object")


@pytest.mark.fault("smoke response: a proxy body that is a JSON string", group="deployment")
def test_body_that_is_a_json_string_rolls_back(fault: FaultRun, shapes: Attempt) -> None:
    check = smoke_check(shapes, "telegram answers /report", "response body is a JSON object")
    assert check["found"].startswith("a JSON string of a string (double-encoded)"), check
    rolled_back_at_smoke(fault, shapes, "double-encoded", "return body=json.dumps(<dict>)")


@pytest.mark.fault("smoke response: status 500", group="deployment")
def test_status_500_rolls_back(fault: FaultRun, shapes: Attempt) -> None:
    check = smoke_check(shapes, "api serves the stored report", "proxy status code")
    assert check["found"].startswith("statusCode 500; body"), check
    assert "report store unavailable (variant)" in check["found"]
    rolled_back_at_smoke(fault, shapes, "expected statusCode 200; found statusCode 500")


@pytest.mark.fault("smoke response: a FunctionError", group="deployment")
def test_function_error_rolls_back(fault: FaultRun, shapes: Attempt) -> None:
    check = smoke_check(shapes, "line webhook refuses an unsigned request", "function error")
    assert check["found"] == (
        "FunctionError Unhandled: RuntimeError: LINE signature verification crashed (variant)"
    )
    assert any("line_webhook.py" in line for line in check["evidence"]["stackTrace"])
    rolled_back_at_smoke(fault, shapes, "LINE signature verification crashed (variant)")


SHORT_TIMEOUT_S = 3


@pytest.mark.fault("an invoke that exceeds the function timeout", group="deployment")
def test_invoke_past_the_function_timeout_rolls_back(
    fault: FaultRun, variant: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A quote source that hangs. The function's timeout is lowered to 3 s, declared and live
    # alike (the config gate compares them), so the row waits seconds, not a minute.
    fn = fault.config.functions["ticker_fetcher"]
    lam = client(fault.config, "lambda")
    before = lam.get_function_configuration(FunctionName=fn.name)["Timeout"]
    assert before == fn.spec.timeout > SHORT_TIMEOUT_S, "the row starts from the declared timeout"
    variant(
        append_python(
            "ticker_fetcher",
            """
            import time as _gw_time

            _gw_original = handler

            def handler(event, context):
                _gw_time.sleep(60)
                return _gw_original(event, context)
            """,
        )
    )
    monkeypatch.setenv("GANGWAY_FUNCTIONS__TICKER_FETCHER__TIMEOUT", str(SHORT_TIMEOUT_S))
    lam.update_function_configuration(FunctionName=fn.name, Timeout=SHORT_TIMEOUT_S)
    lam.get_waiter("function_updated_v2").wait(FunctionName=fn.name)
    try:
        attempt = fault.deploy()
    finally:
        lam.update_function_configuration(FunctionName=fn.name, Timeout=before)
        lam.get_waiter("function_updated_v2").wait(FunctionName=fn.name)
    record = fault.rolled_back(
        attempt,
        step="smoke",
        boundary="deployment",
        says=(
            f"Task timed out after {SHORT_TIMEOUT_S}.00 seconds",
            "functions.ticker_fetcher.timeout",
        ),
    )
    [check] = record.trigger["checks"]
    assert check["name"] == "ticker fetcher lists symbols: function timeout"
    # The version the alias went back to still runs with its own (declared) timeout.
    version = record.functions["ticker_fetcher"].version_before
    assert (
        lam.get_function_configuration(FunctionName=fn.name, Qualifier=version)["Timeout"] == before
    )


@pytest.mark.fault("200 with ERROR in the logs", group="deployment")
def test_error_logged_behind_a_200_rolls_back_at_the_log_scan(
    fault: FaultRun, variant: Callable[..., None]
) -> None:
    variant(
        append_python(
            "ticker_fetcher",
            """
            _gw_original = handler

            def handler(event, context):
                log.error("quote feed degraded, serving stale symbols (variant)")
                return _gw_original(event, context)
            """,
        )
    )
    attempt = fault.deploy()
    record = fault.rolled_back(
        attempt,
        step="log scan",
        boundary="observability",
        says=("quote feed degraded, serving stale symbols (variant)",),
    )
    smoke = next(g for g in record.gates if g.gate == "smoke")
    assert smoke.status.value == "passed", "every response looked right"
    names = [c["name"] for c in record.trigger["checks"]]
    assert names and all("ticker-fetcher" in name for name in names), names


@pytest.mark.fault("no application log lines at all", group="deployment")
def test_no_application_log_lines_rolls_back_at_the_log_scan(
    fault: FaultRun, variant: Callable[..., None]
) -> None:
    variant(
        append_python(
            "query_tool",
            """
            import logging as _gw_logging

            _gw_logging.disable(_gw_logging.CRITICAL)
            """,
        )
    )
    attempt = fault.deploy()
    record = fault.rolled_back(
        attempt,
        step="log scan",
        boundary="observability",
        says=("application log lines", "the handler logged nothing"),
    )
    [check] = record.trigger["checks"]
    assert "query-tool" in check["name"] and check["name"].endswith("application log lines")
    assert check["found"].startswith("0 application lines of ")
