"""The one transient-error classifier (tasks/transient.py) and the step retry condition on it.

Pure: botocore's own exception types, built as botocore raises them, wrapped as the boundary
functions wrap them (AwsError raised from the botocore error).
"""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from prefect.states import Completed, Failed

from gangway.errors import AwsError, ConfigError, DockerError
from tasks.aws import aws_error
from tasks.prefect_task import _retry_condition
from tasks.transient import TransientError, is_throttled, is_transient


def _client_error(code: str, status: int) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "m"},
        "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": 4},
    }
    return ClientError(response, "UpdateAlias")  # type: ignore[arg-type]


def _wrapped(cause: Exception) -> AwsError:
    """What a boundary function raises: aws_error(...) from the botocore error."""
    try:
        raise cause
    except Exception as exc:
        try:
            raise aws_error(exc, "lambda:UpdateAlias", "fn:live") from exc
        except AwsError as wrapped:
            return wrapped


TRANSIENT = {
    "throttled (429)": _client_error("TooManyRequestsException", 429),
    "throttled (400 ThrottlingException)": _client_error("ThrottlingException", 400),
    "a 5xx": _client_error("ServiceException", 500),
    "refused": EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    "read timeout": ReadTimeoutError(endpoint_url="http://127.0.0.1:1"),
}
FINAL = {
    "denied": _client_error("AccessDeniedException", 403),
    "not found": _client_error("ResourceNotFoundException", 404),
    "another deploy": _client_error("PreconditionFailedException", 412),
    "no credentials": NoCredentialsError(),
}


@pytest.mark.parametrize("cause", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_transient_aws_failures_are_transient_bare_and_wrapped(cause: Exception) -> None:
    assert is_transient(cause) and is_transient(_wrapped(cause))


@pytest.mark.parametrize("cause", FINAL.values(), ids=FINAL.keys())
def test_final_aws_failures_are_never_transient(cause: Exception) -> None:
    assert not is_transient(cause) and not is_transient(_wrapped(cause))


def test_only_a_throttle_is_safe_to_repeat_for_an_invoke() -> None:
    # A throttled invoke never ran; a timed-out or failed one may have run its handler.
    assert is_throttled(TRANSIENT["throttled (429)"])
    assert is_throttled(_wrapped(TRANSIENT["throttled (400 ThrottlingException)"]))
    assert not is_throttled(TRANSIENT["a 5xx"]) and not is_throttled(TRANSIENT["read timeout"])


def test_the_aws_error_code_decides_not_words_in_the_message() -> None:
    # An AccessDenied whose message happens to say "Throttling" is still final.
    denied = _client_error("AccessDeniedException", 403)
    denied.response["Error"]["Message"] = "Throttling config is not yours to change"
    assert not is_transient(_wrapped(denied))


def test_other_boundaries_are_judged_by_their_text() -> None:
    assert is_transient(DockerError("push failed", found="ConnectionResetError(104)"))
    assert is_transient(TransientError("registry answered HTTP 503"))
    assert not is_transient(ConfigError("bad setting", found="HTTP 404"))
    assert not is_transient(None)


def test_the_step_retry_condition_uses_the_classifier() -> None:
    assert _retry_condition(None, None, Failed(data=_wrapped(TRANSIENT["refused"])))
    assert not _retry_condition(None, None, Failed(data=_wrapped(FINAL["denied"])))
    assert not _retry_condition(None, None, Completed(data=1))
