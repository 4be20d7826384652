"""The pipeline → AWS boundary: the one client factory, its retry profiles, and one error type.

Every boto3 client of the pipeline comes from client(): one per service, retry profile,
endpoint and credentials. Which failures are worth a retry is tasks/transient.py's call. The
rehearsal stack is just another endpoint_url; nothing here knows it is not AWS.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config as BotoConfig
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)

from gangway.config import AwsSpec, DeployConfig
from gangway.errors import AwsError
from tasks.transient import NO_ANSWER, is_conflict, is_throttled

T = TypeVar("T")
log = logging.getLogger(__name__)

# Requests per API call, the first included (botocore's standard mode: exponential backoff
# with full jitter, 1 s base for throttling and 50 ms for connection errors, capped at 20 s).
# Measured through rehearsal/fault_proxy.py: the old "max_attempts": 3 meant 4 requests. Five
# ride out a throttling burst of ~8 s per call (up to 1+2+4+8 = 15 s of backoff): the Lambda
# control plane rate-limits per account and region and a deploy calls it from up to 8 threads
# at once, so one burst hits several calls. A refused connection still fails in < 1 s, and the
# step retries (tasks/prefect_task.py) add a second, coarser layer for what tasks/transient.py calls
# transient.
MAX_ATTEMPTS = 5
BOTO = BotoConfig(
    connect_timeout=5,
    read_timeout=60,
    retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
)
# Calls that must not be repeated by botocore, because their caller is the retry loop or a
# repeat could do harm. One request per call; only the timeouts differ from BOTO.
_ONE_REQUEST = {"mode": "standard", "total_max_attempts": 1}
# A rollback (tasks/lambda_alias.py) retries for a bounded window (restore_window_s): botocore's
# own attempts would multiply that window. Short timeouts: UpdateAlias/GetAlias answer in
# milliseconds, and a hung call must not eat the window.
RESTORE_CONNECT_TIMEOUT_S = 3
RESTORE_READ_TIMEOUT_S = 10
Profile = Literal["standard", "restore", "invoke", "adaptive"]
PROFILES: dict[str, BotoConfig] = {
    "standard": BOTO,
    "restore": BOTO.merge(
        BotoConfig(
            connect_timeout=RESTORE_CONNECT_TIMEOUT_S,
            read_timeout=RESTORE_READ_TIMEOUT_S,
            retries=_ONE_REQUEST,
        )
    ),
    # A synchronous invoke runs a handler that may write: a timed-out or reset invoke may have
    # run, so botocore must not repeat it (tasks/smoke.py repeats only a throttled one). Its
    # read timeout is environment.deploy.invoke_timeout_s (see client()).
    # Concurrent smoke invokes share the client: one pooled connection each.
    "invoke": BOTO.merge(BotoConfig(retries=_ONE_REQUEST, max_pool_connections=16)),
    # issue 15: the drift check's many reads: botocore's adaptive mode adds a client-side rate
    # limiter that slows every thread down after a throttle, instead of each retrying blind.
    "adaptive": BOTO.merge(
        BotoConfig(
            retries={"mode": "adaptive", "total_max_attempts": 8}, max_pool_connections=64
        )
    ),
}


_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()

CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
)


def _credentials_fingerprint() -> str:
    """Which credentials the environment names now: a hash, so no secret is kept as a key."""
    # A new key or secret (a rotation, a test switching identity) must give a new client:
    # a session reads the environment only when it is created.
    text = "\0".join(os.environ.get(name, "") for name in CREDENTIAL_VARIABLES)
    return hashlib.sha256(text.encode()).hexdigest()


def client(
    config: DeployConfig,
    service: str,
    *,
    profile: Profile = "standard",
    read_timeout: int | None = None,
) -> Any:
    """The boto3 client for service in the environment's region and endpoint (shared).

    Every AWS call of the pipeline goes through here. profile names the retry policy:
    "standard" (botocore's standard mode, MAX_ATTEMPTS requests), "restore" and "invoke" (one
    request per call, see PROFILES); read_timeout overrides the profile's (for "invoke" it
    defaults to environment.deploy.invoke_timeout_s). Creating a client costs ~0.1 s of CPU,
    and boto3 clients are thread-safe, so one client per service, profile, endpoint and
    credentials serves every step and thread of a process.
    """
    aws = config.environment.aws
    if profile == "invoke" and read_timeout is None:
        read_timeout = config.environment.deploy.invoke_timeout_s
    fingerprint = _credentials_fingerprint()
    key = (service, profile, aws.region, aws.endpoint_url, read_timeout, fingerprint)
    key += _identity(aws)
    with _clients_lock:
        if key not in _clients:
            boto = PROFILES[profile]
            if read_timeout is not None:
                boto = boto.merge(BotoConfig(read_timeout=read_timeout))
            _clients[key] = _session(aws, fingerprint).client(
                service, region_name=aws.region, endpoint_url=aws.endpoint_url, config=boto
            )
        return _clients[key]


# --- issue 14 (wt-copy): per-environment credentials: a named profile or an assumed role -----
# One session per environment identity: clients of every service share its credentials, and
# an assumed role's are refreshed by botocore before they expire (RefreshableCredentials).
_sessions: dict[tuple[str, ...], boto3.session.Session] = {}
# botocore's RefreshableCredentials assume again within 15 min of the expiry (its advisory
# window), so a long deploy never signs with a token that is about to lapse.
ROLE_SESSION_S = 3600
DEFAULT_SESSION_NAME = "gangway"


def _identity(aws: AwsSpec) -> tuple[str, ...]:
    if aws.role_arn:
        return ("role", aws.role_arn, aws.external_id or "", aws.session_name or "")
    if aws.profile:
        return ("profile", aws.profile)
    return ()


def _session(aws: AwsSpec, fingerprint: str) -> boto3.session.Session:
    """The boto3 session for the environment's identity (called under _clients_lock)."""
    key = (*_identity(aws), aws.region, aws.endpoint_url or "", fingerprint)
    if key not in _sessions:
        if aws.role_arn:
            _sessions[key] = _role_session(aws)
        elif aws.profile:
            try:
                _sessions[key] = boto3.session.Session(profile_name=aws.profile)
            except ProfileNotFound as exc:
                raise AwsError(
                    f"the AWS profile {aws.profile!r} does not exist",
                    expected=f"[profile {aws.profile}] in the AWS config or credentials file",
                    found=str(exc),
                    remedy=f"create the profile (`aws configure --profile {aws.profile}`) or "
                    "fix environment.aws.profile",
                ) from exc
        else:
            _sessions[key] = boto3.session.Session()
    return _sessions[key]


def _role_session(aws: AwsSpec) -> boto3.session.Session:
    """A session on role_arn's credentials, assumed now and again before they expire."""
    assert aws.role_arn is not None
    role_arn = aws.role_arn
    sts = boto3.session.Session().client(
        "sts", region_name=aws.region, endpoint_url=aws.endpoint_url, config=BOTO
    )

    def assume() -> dict[str, str]:
        arguments: dict[str, Any] = {
            "RoleArn": role_arn,
            "RoleSessionName": aws.session_name or DEFAULT_SESSION_NAME,
            "DurationSeconds": ROLE_SESSION_S,
        }
        if aws.external_id:
            arguments["ExternalId"] = aws.external_id
        try:
            issued = sts.assume_role(**arguments)["Credentials"]
        except (ClientError, BotoCoreError) as exc:
            raise _assume_refused(exc, role_arn) from exc
        return {
            "access_key": issued["AccessKeyId"],
            "secret_key": issued["SecretAccessKey"],
            "token": issued["SessionToken"],
            "expiry_time": issued["Expiration"].isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(
        metadata=assume(), refresh_using=assume, method="sts-assume-role"
    )
    core = botocore.session.get_session()
    core._credentials = credentials
    return boto3.session.Session(botocore_session=core, region_name=aws.region)


def _assume_refused(exc: Exception, role_arn: str) -> AwsError:
    """AssumeRole refused: name the role, who asked, and what to change."""
    translated = aws_error(exc, "sts:AssumeRole", role_arn)
    return AwsError(
        f"assuming the role {role_arn} was refused",
        expected=f"the deploying identity allowed sts:AssumeRole on {role_arn}, and the role's "
        "trust policy naming it",
        found=translated.found or translated.message,
        remedy=f"allow sts:AssumeRole on {role_arn} for the identity gangway runs as, and add it "
        "to the role's trust policy (with the external id when environment.aws.external_id "
        "is set); or fix environment.aws.role_arn",
    )


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError; empty for any other exception."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


ACCESS_DENIED = ("AccessDeniedException", "AccessDenied", "403")
BAD_CREDENTIALS = (
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
)
# How IAM words a refusal, for every service: "User: <principal> is not authorized to perform:
# <action> [on resource: <arn>] [because no identity-based policy allows the <action> action |
# with an explicit deny in a <kind of> policy[: <policy arn>]]".
DENIED_MESSAGE = re.compile(
    r"User: (?P<principal>\S+) is not authorized to perform: (?P<action>[\w-]+:[\w*-]+)"
    r"(?: on resource: (?P<resource>\S+))?(?P<why>.*)",
    re.DOTALL,
)
EXPLICIT_DENY = re.compile(r"explicit deny in (?:an? )?(?P<where>[\w -]+?policy)")
ASSUMED_ROLE = re.compile(r"^arn:(?P<p>[\w-]+):sts::(?P<account>\d+):assumed-role/(?P<role>[^/]+)/")


def _grantee(principal: str) -> str:
    """Whom to grant to: an assumed-role session's permissions are its role's."""
    session = ASSUMED_ROLE.match(principal)
    if session:
        return f"arn:{session['p']}:iam::{session['account']}:role/{session['role']}"
    return principal


def _access_denied(
    action: str, resource: str, code: str, message: str, status: object
) -> AwsError:
    """AccessDenied naming the missing permission, the resource and the principal, when AWS's
    message says them (it does for IAM-evaluated refusals), and what to grant to whom."""
    found = f"{code} (HTTP {status}): {message}"[:500]
    denied = DENIED_MESSAGE.search(message)
    if denied is None:
        return AwsError(
            f"{action} on {resource} failed: {code}",
            expected=f"the deploying identity allowed {action} on {resource}",
            found=found,
            remedy=f"grant {action} on {resource} to the deploying identity",
        )
    principal, permission = denied["principal"], denied["action"]
    target = (denied["resource"] or resource).rstrip(".,;")
    grantee = _grantee(principal)
    remedy = f"grant {permission} on {target} to {grantee}"
    explicit = EXPLICIT_DENY.search(denied["why"] or "")
    if explicit:
        # A Deny wins over every Allow: granting alone would change nothing.
        remedy += (
            f"; first remove the explicit Deny of {permission} in the {explicit['where']} "
            "that applies to it (a Deny overrides any Allow)"
        )
    lacks = f"{principal} lacks {permission} on {target} ({code})"
    return AwsError(
        # The call named only when it is not the permission AWS checked (e.g. iam:PassRole).
        lacks if permission == action else f"{action} on {resource} failed: {lacks}",
        expected=f"{principal} allowed {permission} on {target}",
        found=found,
        remedy=remedy,
    )


def _endpoint(exc: Exception) -> str:
    """scheme://host[:port] of the URL a botocore connection error names (never a path)."""
    url = str(getattr(exc, "kwargs", {}).get("endpoint_url", ""))
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else (url or "the AWS endpoint")


def _throttled(exc: ClientError, action: str, resource: str) -> AwsError:
    """Throttled on every attempt: say how many, and that waiting is the remedy."""
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    attempts = int(meta.get("RetryAttempts", 0)) + 1
    code = str(error.get("Code", "")) or f"HTTP {meta.get('HTTPStatusCode')}"
    return AwsError(
        f"{action} on {resource} was throttled by AWS after {attempts} attempts",
        expected=f"{action} accepted within {MAX_ATTEMPTS} attempts (exponential backoff)",
        found=f"{code} (HTTP {meta.get('HTTPStatusCode')}): {error.get('Message', '')}"[:500],
        remedy="AWS is rate-limiting this account and region: wait a minute and re-run the "
        "deploy; if it recurs, spread concurrent deploys out or ask AWS for a higher API rate",
    )


def aws_error(exc: Exception, action: str, resource: str) -> AwsError:
    """Translate a botocore failure into an AwsError naming the action, resource and remedy."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AwsError(
            f"no AWS credentials for {action}",
            expected="credentials from the environment, a profile or an instance role",
            found=str(exc),
            remedy="export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE",
        )
    if isinstance(exc, NO_ANSWER):
        endpoint = _endpoint(exc)
        return AwsError(
            f"the AWS endpoint {endpoint} did not answer {action} on {resource}",
            expected=f"{endpoint} to accept the connection and answer",
            found=f"{type(exc).__name__}: {exc}"[:500],
            remedy=f"check network access to {endpoint} (DNS, VPN, proxy, security groups), "
            "then re-run the deploy; on the rehearsal stack: `gangway stack status`",
        )
    if isinstance(exc, ClientError) and is_throttled(exc):
        return _throttled(exc, action, resource)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ACCESS_DENIED or (status == 403 and code not in BAD_CREDENTIALS):
            return _access_denied(action, resource, code, message, status)
        if code in BAD_CREDENTIALS:
            remedy = (
                "the access key is unknown, inactive or expired, or its secret does not "
                "match: check or refresh AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the "
                "profile) of the deploying identity"
            )
        elif code.endswith("NotFoundException") or code == "NoSuchEntity" or status == 404:
            remedy = f"create {resource} first (infrastructure is not gangway's to create)"
        elif code in ("ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId"):
            remedy = "refresh the AWS credentials"
        elif code == "PreconditionFailedException":
            remedy = f"{resource} changed under us (another deploy?): re-read it and retry"
        elif code == "ResourceConflictException":
            remedy = conflict_remedy(resource)
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


# --- another update in progress -------------------------------------------------------------
# Lambda refuses a code or configuration update, a publish and (briefly) an alias write while
# an update of the function is InProgress. Our own updates are waited for (tasks/
# lambda_publish.py); a conflict is someone else's update landing in between, which ends by
# itself within seconds to a minute: retried with exponential backoff and equal jitter (half
# the ceiling fixed, half random), so the parallel writes of one deploy do not retry in step.
CONFLICT_BASE_S = 0.5
CONFLICT_CAP_S = 8.0


def conflict_delay(attempt: int, rng: random.Random | None = None) -> float:
    """The pause before retry number attempt (1, 2, …): equal jitter under 0.5·2^(n-1), ≤ 8 s."""
    ceiling = min(CONFLICT_CAP_S, CONFLICT_BASE_S * 2 ** (attempt - 1))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def conflict_remedy(function: str) -> str:
    """What to do about a function someone else is updating (the same words everywhere)."""
    return (
        f"someone else is updating {function} (another deploy, an infrastructure tool or a "
        "person): find who (CloudTrail: UpdateFunctionCode / UpdateFunctionConfiguration / "
        f"PublishVersion on {function}), wait until its LastUpdateStatus is Successful, then "
        "re-run the deploy"
    )


def _aws_message(exc: BaseException) -> str:
    link: BaseException | None = exc
    while link is not None and not isinstance(link, ClientError):
        link = link.__cause__ or link.__context__
    if isinstance(link, ClientError):
        return str(link.response.get("Error", {}).get("Message", ""))
    return str(exc)


def retry_conflicts(
    write: Callable[[], T],
    *,
    budget_s: float,
    action: str,
    function: str,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run write; while Lambda answers ResourceConflictException, retry it with backoff and
    jitter for budget_s. Past the budget: an AwsError naming the function, the operation
    refused and who to look for. Every other failure passes through unchanged."""
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        try:
            return write()
        except Exception as exc:
            if not is_conflict(exc):
                raise
            elapsed = time.monotonic() - started
            left = budget_s - elapsed
            if left <= 0:
                raise AwsError(
                    f"{action} on {function} was refused for {elapsed:.0f} s: another update "
                    "of the function is in progress (ResourceConflictException)",
                    expected=f"{action} accepted within {budget_s:.0f} s "
                    "(environment.deploy.conflict_retry_s, exponential backoff)",
                    found=f"ResourceConflictException on each of {attempt} attempts: "
                    f"{_aws_message(exc)}"[:500],
                    remedy=conflict_remedy(function),
                ) from exc
            pause = min(left, conflict_delay(attempt))
            log.warning(
                "%s on %s refused (ResourceConflictException: another update in progress), "
                "attempt %d; retrying in %.1f s (%.0f s of the conflict budget left)",
                action,
                function,
                attempt,
                pause,
                left,
            )
            sleep(pause)
