"""The pipeline → AWS boundary: boto3 clients bound to one environment, and one error type.

The rehearsal stack is just another endpoint_url; nothing here knows it is not AWS.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)

from gangway.config import DeployConfig
from gangway.errors import AwsError

BOTO = BotoConfig(
    connect_timeout=5,
    read_timeout=60,
    retries={"mode": "standard", "max_attempts": 3},
)


_clients: dict[tuple[str, str, str | None, int | None, str | None], Any] = {}
_clients_lock = threading.Lock()


def client(config: DeployConfig, service: str, *, read_timeout: int | None = None) -> Any:
    """A boto3 client for service in the environment's region and endpoint (shared).

    Creating a client costs ~0.1 s of CPU, and boto3 clients are thread-safe, so one client
    per service, endpoint and credentials serves every step and thread of a process.
    """
    aws = config.environment.aws
    key = (service, aws.region, aws.endpoint_url, read_timeout, os.environ.get("AWS_ACCESS_KEY_ID"))
    with _clients_lock:
        if key not in _clients:
            boto = (
                BOTO if read_timeout is None else BOTO.merge(BotoConfig(read_timeout=read_timeout))
            )
            _clients[key] = boto3.session.Session().client(
                service, region_name=aws.region, endpoint_url=aws.endpoint_url, config=boto
            )
        return _clients[key]


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError; empty for any other exception."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def aws_error(exc: Exception, action: str, resource: str) -> AwsError:
    """Translate a botocore failure into an AwsError naming the action, resource and remedy."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AwsError(
            f"no AWS credentials for {action}",
            expected="credentials from the environment, a profile or an instance role",
            found=str(exc),
            remedy="export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE",
        )
    if isinstance(exc, EndpointConnectionError):
        return AwsError(
            f"the AWS endpoint did not answer {action}",
            expected="a reachable endpoint",
            found=str(exc),
            remedy="check network access (on the rehearsal stack: `make stack`)",
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("AccessDeniedException", "AccessDenied", "403") or status == 403:
            remedy = f"grant {action} on {resource} to the deploying identity"
        elif code.endswith("NotFoundException") or code == "NoSuchEntity" or status == 404:
            remedy = f"create {resource} first (infrastructure is not gangway's to create)"
        elif code in ("ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId"):
            remedy = "refresh the AWS credentials"
        elif code == "PreconditionFailedException":
            remedy = f"{resource} changed under us (another deploy?): re-read it and retry"
        elif code == "ResourceConflictException":
            remedy = f"another update of {resource} is in progress: wait for it, then retry"
        else:
            remedy = "see the AWS error above"
        return AwsError(
            f"{action} on {resource} failed: {code}",
            expected=f"{action} to succeed",
            found=f"{code} (HTTP {status}): {message}"[:500],
            remedy=remedy,
        )
    return AwsError(
        f"{action} on {resource} failed",
        expected=f"{action} to succeed",
        found=f"{type(exc).__name__}: {exc}"[:500],
        remedy="see the error above",
    )
