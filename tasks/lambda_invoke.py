"""One synchronous Lambda invoke through a qualifier, and what it reported.

The result carries what the log scan needs to tie the invoke to its log lines (the request id),
the version that really ran, the log tail, and when it ran. A throttled invoke is tried again
(Lambda refuses it before the handler runs); nothing else is, since a handler may write.
"""

from __future__ import annotations

import base64
import random
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from gangway.config import DeployConfig
from gangway.evidence import Check
from tasks.aws import aws_error, client
from tasks.transient import is_throttled

THROTTLE_BACKOFF_S = (1.0, 2.0, 4.0, 8.0)
LOG_REQUEST_ID = re.compile(r"(?:REPORT|START|END) RequestId: ([0-9A-Za-z-]+)")


@dataclass(frozen=True)
class InvokeResult:
    """What one invoke reported; failure is set when no response came back at all."""

    function_name: str
    qualifier: str
    started_at: float  # wall clock (time.time()), so invokes of several threads compare
    finished_at: float
    status: int | None = None
    function_error: str | None = None
    payload: bytes = b""
    executed_version: str | None = None
    log_tail: str = ""
    # The id the function's START/END/REPORT lines carry: what the log scan matches.
    request_id: str | None = None
    # The API's x-amzn-RequestId; on AWS it is the same id, on an emulator it may not be.
    api_request_id: str | None = None
    throttle_retries: int = 0
    failure: Check | None = None

    @property
    def duration_s(self) -> float:
        """Seconds from the first request to the answer (throttle retries included)."""
        return self.finished_at - self.started_at


def invoke_client(config: DeployConfig) -> Any:
    """The Lambda client for invokes: bounded by deploy.invoke_timeout_s, never repeated by
    botocore (the "invoke" profile of tasks/aws.py); one serves every concurrent invoke."""
    return client(config, "lambda", profile="invoke")


def _throttle_backoff(state: RetryCallState) -> float:
    # Random in [½, 1] of each step: parallel invokes do not come back in lockstep.
    return THROTTLE_BACKOFF_S[state.attempt_number - 1] * random.uniform(0.5, 1.0)


def _invoke_retrying_throttles(
    lam: Any, name: str, qualifier: str, event: bytes
) -> tuple[dict[str, Any], int]:
    """(the response, how many throttled attempts preceded it).

    Lambda refuses a throttled invoke before running the handler (429), so a retry cannot run
    it twice, and a healthy version must not be rolled back for a burst of throttles.
    """
    retrying = Retrying(
        retry=retry_if_exception(is_throttled),
        stop=stop_after_attempt(len(THROTTLE_BACKOFF_S) + 1),
        wait=_throttle_backoff,
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            response = lam.invoke(
                FunctionName=name,
                Qualifier=qualifier,
                InvocationType="RequestResponse",
                LogType="Tail",
                Payload=event,
            )
            return dict(response), attempt.retry_state.attempt_number - 1
    raise AssertionError("unreachable: tenacity re-raises the last error")


def log_request_id(tail: str) -> str | None:
    """The RequestId of the first START/END/REPORT line in a log tail, if any."""
    match = LOG_REQUEST_ID.search(tail)
    return match.group(1) if match else None


def _failure(found: str, remedy: str, expected: str) -> Check:
    return Check(name="invoke", ok=False, expected=expected, found=found, remedy=remedy)


def invoke(
    config: DeployConfig, key: str, qualifier: str, event: bytes, *, lam: Any = None
) -> InvokeResult:
    """Invoke config.functions[key] at qualifier (version or alias) with event, synchronously.

    Never raises for an AWS or network failure: the result's failure check says what happened.
    """
    fn = config.functions[key]
    lam = lam or invoke_client(config)
    timeout_s = config.environment.deploy.invoke_timeout_s
    started = time.time()
    try:
        response, retries = _invoke_retrying_throttles(lam, fn.name, qualifier, event)
        payload = response["Payload"].read()
    except ReadTimeoutError:
        failure = _failure(
            f"no response within {timeout_s}s (the function's timeout is {fn.spec.timeout}s)",
            "find why the handler hangs (its logs); raise environment.deploy.invoke_timeout_s "
            "only if the function legitimately runs longer",
            f"a response within environment.deploy.invoke_timeout_s = {timeout_s}s",
        )
    except ConnectTimeoutError as exc:
        failure = _failure(str(exc), "check network access to the Lambda endpoint", "a connection")
    except (ClientError, BotoCoreError) as exc:
        err = aws_error(exc, "lambda:InvokeFunction", f"{fn.name}:{qualifier}")
        failure = _failure(err.found, err.remedy, err.expected)
    else:
        return _result(fn.name, qualifier, started, response, payload, retries)
    return InvokeResult(
        function_name=fn.name,
        qualifier=qualifier,
        started_at=started,
        finished_at=time.time(),
        failure=failure,
    )


def _result(
    name: str,
    qualifier: str,
    started: float,
    response: Mapping[str, Any],
    payload: bytes,
    retries: int,
) -> InvokeResult:
    tail = ""
    if response.get("LogResult"):
        tail = base64.b64decode(response["LogResult"]).decode("utf-8", errors="replace")
    api_id = response.get("ResponseMetadata", {}).get("RequestId")
    return InvokeResult(
        function_name=name,
        qualifier=qualifier,
        started_at=started,
        finished_at=time.time(),
        status=response.get("StatusCode"),
        function_error=response.get("FunctionError"),
        payload=payload,
        executed_version=response.get("ExecutedVersion"),
        log_tail=tail,
        # The log lines' id is what the log scan can find; the API's is the fallback (a tail
        # cut before any START/END/REPORT line). On AWS the two are the same id.
        request_id=log_request_id(tail) or api_id,
        api_request_id=api_id,
        throttle_retries=retries,
    )
