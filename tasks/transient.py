"""Which failures a retry can fix: the one classifier behind every retry in the pipeline.

Used by the Prefect step retries (tasks/prefect_task.py), the rollback's window
(tasks/lambda_alias.py), the Lambda writes' conflict retries (tasks/aws.py) and the smoke
invoke (tasks/lambda_invoke.py, which may repeat only what never ran: a throttle).
AWS failures are judged by their botocore type and error code, wherever they sit in the
exception chain (boundary functions wrap them in AwsError); other boundaries (Docker, the
registry) by the text of their errors, since their exception types are not ours.
"""

from __future__ import annotations

from collections.abc import Iterator

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

# The endpoint never answered: refused, timed out, or the connection dropped mid-request.
NO_ANSWER = (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError, ReadTimeoutError)
# The error codes botocore's standard mode treats as throttling (botocore/retries/standard.py).
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "BandwidthLimitExceeded",
        "ProvisionedThroughputExceededException",
    }
)
# For errors of libraries whose exception types say nothing (docker-py, httpx wrappers).
TRANSIENT_MARKERS = (
    "Throttling",
    "TooManyRequests",
    "RequestLimitExceeded",
    "SlowDown",
    "ServiceUnavailable",
    "InternalError",
    "Connection reset",
    "ConnectionResetError",
    "RemoteDisconnected",
    "HTTP 5",
)
_MAX_CHAIN = 8


class TransientError(Exception):
    """Raised by a boundary client for failures worth retrying (throttling, resets, 5xx)."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """exc, then what caused it (explicitly or while handling), bounded against cycles."""
    link: BaseException | None = exc
    for _ in range(_MAX_CHAIN):
        if link is None:
            return
        yield link
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def is_throttled(exc: BaseException | None) -> bool:
    """True when AWS refused the call for its rate (the request did nothing: safe to repeat)."""
    for link in _chain(exc) if exc is not None else ():
        if isinstance(link, ClientError):
            code = str(link.response.get("Error", {}).get("Code", ""))
            return code in THROTTLING_CODES or _status(link) == 429
        if isinstance(link, BotoCoreError):
            return False
    return False


CONFLICT = "ResourceConflictException"


def is_conflict(exc: BaseException | None) -> bool:
    """True when Lambda refused a write because another update of the function is in progress.

    Not transient for a step retry: tasks/aws.py retry_conflicts retries it within its own
    budget (environment.deploy.conflict_retry_s), and past that a human must look.
    """
    for link in _chain(exc) if exc is not None else ():
        if isinstance(link, ClientError):
            return str(link.response.get("Error", {}).get("Code", "")) == CONFLICT
        if isinstance(link, BotoCoreError):
            return False
    return False


def is_transient(exc: BaseException | None) -> bool:
    """True for failures a retry can fix: no answer, throttled, 5xx, a reset connection.

    Configuration, permission, missing-resource and gate failures never are.
    """
    if exc is None:
        return False
    for link in _chain(exc):
        if isinstance(link, TransientError | ConnectionResetError):
            return True
        if isinstance(link, ClientError):
            return is_throttled(link) or _status(link) >= 500
        if isinstance(link, BotoConnectionError | HTTPClientError):
            return True  # refused, timed out, reset mid-request
        if isinstance(link, BotoCoreError):
            return False  # no credentials, a bad parameter: the same call fails again
    text = f"{type(exc).__name__} {exc}"
    return any(marker in text for marker in TRANSIENT_MARKERS)
