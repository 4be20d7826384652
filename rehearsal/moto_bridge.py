"""moto as a real HTTP server, with Image functions invoked in their own image under the RIE.

Rehearsal tooling only: gangway's tasks and flows never import this; they speak plain boto3
to whatever endpoint the environment names. Each function below closes one gap between
moto 5.2 and AWS Lambda, so the pipeline can trust what the rehearsal reports:

- ``_invoke_response``: moto reads a lowercase ``qualifier``; boto3 sends ``Qualifier``.
- ``_update_alias_response`` / ``_publish_version_response``: RevisionId and CodeSha256
  preconditions are enforced (moto ignored both), so a concurrent writer is caught.
- ``_publish_version``: versions were shallow copies sharing ``code`` with $LATEST, so an old
  version reported (and would run) the NEW image after ``update_function_code``; and after a
  version was deleted, the next one reused a live version's number (AWS never reuses one).
- ``_set_function_code`` / ``_get_code``: CodeSha256 is the image's manifest digest (from
  the URI or the registry) and ResolvedImageUri is repository@digest, as on AWS (moto hashed
  the URI text and cut a registry's port off).
- ``_update_configuration``: ImageConfig updates are applied (moto dropped them silently).
- ``_backend_invoke``: alias RoutingConfig weights are honoured and the executed version is
  returned (``X-Amz-Executed-Version``).
- ``_function_invoke``: an Image function runs its own image under the Lambda RIE (moto
  cannot pull its runtime images here), with the function's env, memory, architecture and
  timeout; the container's log lines go to CloudWatch Logs in an AWS-style ``[VERSION]``
  stream, and an error the runtime reports sets ``FunctionError: Unhandled`` as AWS does.
- ``run_in_image`` / ``warm_pool``: as Lambda keeps execution environments, a function
  version's container stays warm for fidelity ``warm_s`` after an invoke and serves the next
  invoke of the same version and configuration (a busy one is never shared); idle ones past
  warm_s, or of a changed function, are reaped, and all go when the bridge stops.
- ``log_format``: the RIE's REPORT has a fake ``Init Duration`` and ``Max Memory Used`` equal
  to ``Memory Size``; REPORT carries the real figures (init only on a cold start, the
  container's cgroup memory peak), and ``LoggingConfig.LogFormat: JSON`` (which moto dropped)
  gives AWS's ``platform.start`` / ``platform.runtimeDone`` / ``platform.report`` records.
- ``_environment`` / ``role_credentials``: an invoke runs with its execution role's session
  (sts:AssumeRole on moto's STS, fidelity ``execution_role``), not the stack's key.
- ``_filter_log_events`` / ``TextFilter``: ``?A ?B``, ``-A``, JSON and space-delimited
  patterns matched EVERY event in moto; text terms now follow AWS, the rest is refused.
- ``_authorize``: moto's IAM policy evaluation is all or nothing (``INITIAL_NO_AUTH_ACTION_COUNT``
  switches it on for every caller, which would lock out every other client of a shared stack,
  whose key is no IAM user's). Here the key decides: a request signed with the access key of
  an IAM user in moto's IAM backend gets moto's signature check and policy evaluation, on the
  action's real resource (moto checked Lambda and Logs calls against ``*``) and with the IAM
  action name (``lambda:InvokeFunction``, not the API's ``Invoke``); any other key passes as
  before; a request signed by an execution role's session is evaluated against the role's
  attached and inline policies the same way. moto signed an empty body as the parsed query
  (the request's headers, for a GET), so every GET by a real key failed the signature check;
  the raw body is used.
- ``_json_refusal``: moto answered a refused request in XML to every protocol, so botocore
  saw ``Code: "403"`` and the raw XML as the message on Lambda and CloudWatch Logs. JSON
  services now get AWS's shape: 403, ``x-amzn-ErrorType: AccessDeniedException`` and AWS's
  message naming principal, action, resource and why (no Allow / an explicit Deny);
  ``UnrecognizedClientException`` for an unknown, deleted or inactive user key and
  ``InvalidSignatureException`` for a wrong secret. Query and XML services keep moto's
  (AWS-shaped there) ``AccessDenied`` / ``InvalidClientTokenId`` / ``SignatureDoesNotMatch``.
Lambda's unkind timing, each part switched per function by ``rehearsal.fidelity`` (read at
each request), lives in its own modules, registered by ``install``:
``rehearsal.lambda_lifecycle`` (State ``Pending`` after a create, ``LastUpdateStatus:
InProgress`` after an update, ResourceConflictException for what AWS refuses meanwhile, the
previous code run by $LATEST during an update, stale get_alias/list_aliases reads after an
alias write) and ``rehearsal.log_ingestion`` (CloudWatch Logs events of /aws/lambda/<name>
readable only after an ingestion delay). With ``fidelity.OFF`` the rehearsal is instant again:
Active and Successful at once, fresh reads, logs readable when written.
"""

from __future__ import annotations

import argparse
import base64
import copy
import functools
import json
import logging
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import docker
import httpx
import requests
from botocore.awsrequest import AWSRequest
from docker.errors import DockerException, ImageNotFound
from docker.models.images import Image
from moto.awslambda import exceptions as lambda_exceptions
from moto.awslambda import models as lambda_models
from moto.awslambda import responses as lambda_responses
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import AccessDeniedError, AuthFailureError, SignatureDoesNotMatchError
from moto.core.utils import get_service_model
from moto.iam import models as iam_models
from moto.iam.access_control import (
    IAMPolicy,
    IAMRequest,
    IAMRequestBase,
    PermissionResult,
    S3IAMRequest,
)
from moto.logs import exceptions as logs_exceptions
from moto.logs import models as logs_models
from moto.server import ThreadedMotoServer
from moto.utilities.utils import PARTITION_NAMES
from werkzeug.exceptions import HTTPException

from gangway.errors import StackError
from rehearsal import fidelity, log_format, role_credentials, warm_pool
from rehearsal.role_credentials import RoleCredentials

log = logging.getLogger("gangway.moto_bridge")

RIE_IN_CONTAINER = "/rie/aws-lambda-rie"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
START_WAIT_S = 20.0
START_ATTEMPTS = 3
TAIL_BYTES = 4096
RIE_LINE = re.compile(r"^\d\d \w{3} \d{4} [\d:,]+ \[\w+\] \(rapid\)")
TIMED_OUT = re.compile(r"Task timed out after [0-9.]+ seconds")


class BridgeSettings:
    """Where the bridge runs; filled in by ``install``."""

    rie_path: Path = Path("/nonexistent")
    endpoint: str = "http://127.0.0.1:4566"
    access_key: str = "testing"
    secret_key: str = "testing"


_docker_lock = threading.Lock()
_docker: docker.DockerClient | None = None


def _client() -> docker.DockerClient:
    global _docker
    with _docker_lock:
        if _docker is None:
            _docker = docker.from_env(timeout=300)
        return _docker


def _free_ports(count: int) -> list[int]:
    # Held open together so that the ports differ (closing one before binding the next let
    # the kernel hand out the same port twice, and the RIE then refused connections).
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


# --------------------------------------------------------------------------- request side
_original_invoke_response = lambda_responses.LambdaResponse.invoke


def _invoke_response(self: Any) -> Any:
    """Honour boto3's ``Qualifier`` query parameter: moto reads ``qualifier``, from the query
    string and then from the JSON *payload* (an event with a "qualifier" key picked the version)."""
    self.querystring["qualifier"] = self.querystring.get("Qualifier", [None])
    return _original_invoke_response(self)


# --------------------------------------------------------------------------- preconditions
_original_update_alias = lambda_responses.LambdaResponse.update_alias
_original_publish_response = lambda_responses.LambdaResponse.publish_version


def _update_alias_response(self: Any) -> Any:
    """Refuse a stale RevisionId and give the alias a new one on change, as AWS does."""
    function_name = unquote(self.path.rsplit("/")[-3])
    alias_name = unquote(self.path.rsplit("/", 2)[-1])
    wanted = json.loads(self.body or "{}").get("RevisionId")
    alias = self.backend.get_alias(alias_name, function_name)
    if wanted and wanted != alias.revision_id:
        raise lambda_exceptions.PreconditionFailedException(
            "The Revision Id provided does not match the latest Revision Id. "
            "Call the GetAlias API to retrieve the latest Revision Id"
        )
    response = _original_update_alias(self)
    alias.revision_id = str(uuid.uuid4())
    status, headers, _ = response
    return status, headers, json.dumps(alias.to_json())


def _publish_version_response(self: Any) -> Any:
    """Refuse to publish when CodeSha256 is not $LATEST's (a concurrent code change)."""
    function_name = unquote(self.path.split("/")[-2])
    wanted = json.loads(self.body or "{}").get("CodeSha256")
    if wanted:
        latest = self.backend.get_function(function_name)
        if wanted != latest.code_sha_256:
            raise lambda_exceptions.PreconditionFailedException(
                f"CodeSHA256 ({wanted}) is different from current CodeSHA256 in $LATEST "
                f"({latest.code_sha_256}). Please try again with the current CodeSHA256."
            )
    return _original_publish_response(self)


# --------------------------------------------------------------------------- versions
_original_publish = lambda_models.LambdaStorage.publish_version


def _publish_version(self: Any, name_or_arn: str, description: str = "") -> Any:
    """Publish a version that owns its code and configuration (moto's copy was shallow)."""
    existing = list(self._functions.get(name_or_arn.split(":")[-1], {}).get("versions", []))
    fn = _original_publish(self, name_or_arn, description)
    if fn is None:
        return fn
    versions = self._functions[fn.function_name]["versions"]
    if len(versions) > len(existing) and versions[-1] is fn:
        for attr, value in list(vars(fn).items()):
            if isinstance(value, dict | list | lambda_models.ImageConfig):
                setattr(fn, attr, copy.deepcopy(value))
        _number_after_deletes(self, fn, existing)
    return fn


def _number_after_deletes(storage: Any, fn: Any, existing: list[Any]) -> None:
    """AWS never reuses a version number; moto numbered len(versions) + 1, so after a
    deleted version (gangway prune) a new version took the number of a live one."""
    highest_ever: dict[str, int] = storage.__dict__.setdefault("_gangway_highest_version", {})
    name = fn.function_name
    highest = max([highest_ever.get(name, 0), *(int(v.version) for v in existing)])
    highest_ever[name] = highest + 1
    if int(fn.version) == highest + 1:
        return
    wrong = fn.function_arn
    holder = next((v for v in existing if v.function_arn == wrong), None)
    if holder is not None:
        storage._arns[wrong] = holder
    else:
        storage._arns.pop(wrong, None)
    fn.set_version(highest + 1)
    storage._arns[fn.function_arn] = fn


_original_set_code = lambda_models.LambdaFunction._set_function_code


def _set_function_code(self: Any, updated_spec: dict[str, Any]) -> None:
    """CodeSha256 of an image is its manifest digest, as on AWS (moto's ECR stub hashes the
    URI text): the digest in the URI, else the registry's answer for the tag."""
    _original_set_code(self, updated_spec)
    uri = self.code.get("ImageUri") or ""
    digest = uri.split("@", 1)[1] if "@" in uri else _registry_digest(uri)
    if digest and digest.startswith("sha256:"):
        self.code_sha_256 = digest.removeprefix("sha256:")


MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)


def _registry_digest(uri: str) -> str | None:
    host, _, rest = uri.partition("/")
    if not rest or not ("." in host or ":" in host or host == "localhost"):
        return None  # no registry named: nothing to ask
    repository, _, tag = rest.rpartition(":") if ":" in rest else (rest, "", "latest")
    try:
        response = httpx.head(
            f"http://{host}/v2/{repository}/manifests/{tag}",
            headers={"Accept": MANIFEST_TYPES},
            timeout=5.0,
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        log.warning("no digest for %s (%s); CodeSha256 stays moto's URI hash", uri, exc)
        return None
    return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None


_original_get_code = lambda_models.LambdaFunction.get_code


def _get_code(self: Any) -> dict[str, Any]:
    """ResolvedImageUri is repository@digest (moto split a registry's port off)."""
    response = _original_get_code(self)
    uri = self.code.get("ImageUri")
    if uri and "Code" in response:
        repository = uri.split("@", 1)[0]
        if ":" in repository.rsplit("/", 1)[-1]:
            repository = repository.rsplit(":", 1)[0]
        response["Code"]["ResolvedImageUri"] = f"{repository}@sha256:{self.code_sha_256}"
    return response


_original_update_configuration = lambda_models.LambdaFunction.update_configuration


def _update_configuration(self: Any, config_updates: dict[str, Any]) -> dict[str, Any]:
    """moto's update_configuration drops ImageConfig silently; AWS applies it."""
    if "ImageConfig" in config_updates:
        self.image_config = lambda_models.ImageConfig(config_updates["ImageConfig"] or {})
    return _original_update_configuration(self, config_updates)


# --------------------------------------------------------------------------- routing
def _route(backend: Any, function_name: str, qualifier: str | None) -> tuple[str, str | None]:
    """Resolve an alias with RoutingConfig weights to the version that runs this invoke."""
    name = function_name
    if ":" in name and not name.startswith("arn:"):
        name, qualifier = name.split(":", 1)
    elif name.startswith("arn:"):
        parts = name.split(":")
        name = parts[6]
        if len(parts) > 7:
            qualifier = parts[7]
    if not qualifier:
        return name, qualifier
    try:
        aliases = backend._lambdas._get_function_aliases(name)
    except lambda_exceptions.LambdaClientError:  # unknown function: moto raises it below
        return name, qualifier
    alias = aliases.get(qualifier)
    if alias is None:
        return name, qualifier
    weights = (alias.routing_config or {}).get("AdditionalVersionWeights") or {}
    roll = random.random()
    for version, weight in weights.items():
        if roll < float(weight):
            return name, str(version)
        roll -= float(weight)
    return name, alias.function_version


def _backend_invoke(
    self: Any,
    function_name: str,
    qualifier: str | None,
    body: Any,
    headers: Any,
    response_headers: Any,
) -> Any:
    """Invoke with alias weights honoured; report the executed version like AWS."""
    name, qualifier = _route(self, function_name, qualifier)
    fn = self.get_function(name, qualifier)
    payload = fn.invoke(body, headers, response_headers)
    response_headers["Content-Length"] = str(len(payload))
    response_headers["x-amz-executed-version"] = str(fn.version)
    return payload


# --------------------------------------------------------------------------- invoke
_original_function_invoke = lambda_models.LambdaFunction.invoke

# With --log-level debug the RIE logs when the runtime reports an error (POST .../error or
# init/error): the exact signal AWS uses for FunctionError, unlike the payload's shape (a
# handler may return {"errorType": ...} and still have succeeded).
ERROR_REPORTED = re.compile(r"\(rapid\) Sending (?:Init )?Error Response")
REQUEST_ID = re.compile(r"(?:INVOKE START\(requestId: |START RequestId: )([0-9a-f-]{36})")
RIE_INIT = re.compile(r"\(rapid\) INIT REPORT\(durationMs: ([0-9.]+)\)")
RIE_DURATION = re.compile(r"^REPORT RequestId: \S+.*?\tDuration: ([0-9.]+) ms", re.MULTILINE)
REPORT_WAIT_S = 2.0
INVOKE_MARGIN_S = 10.0
LAMBDA_ARCH = {"x86_64": "amd64", "arm64": "arm64"}


@dataclass(frozen=True)
class Invocation:
    """One invoke as Lambda would report it: payload, FunctionError?, CloudWatch lines."""

    payload: bytes
    errored: bool
    lines: list[str]
    # The RequestId of the START/END/REPORT lines; None when the function never started.
    request_id: str | None = None


def _pull_login(uri: str) -> dict[str, str] | None:
    """Lambda pulls from ECR with the account's own permission: here, the login of the
    stack's authenticating registry (from stack.env: the bridge's env has no secrets)."""
    from rehearsal import auth_registry, mariadb_setup

    if not uri.startswith(auth_registry.endpoint() + "/"):
        return None
    password = mariadb_setup.read_stack_env().get(auth_registry.PASSWORD_ENV)
    return {"username": auth_registry.USER, "password": password} if password else None


def _image(client: docker.DockerClient, uri: str) -> Image:
    """The function's image: local if present, else pulled from its registry."""
    try:
        return client.images.get(uri)
    except ImageNotFound:
        pass
    try:
        client.images.pull(uri, auth_config=_pull_login(uri))
        return client.images.get(uri)
    except DockerException as exc:
        raise StackError(
            f"the function image {uri} is neither in the local engine nor pullable",
            expected=f"{uri} built locally or pushed to its registry",
            found=str(exc)[:300],
            remedy="push the image (the pipeline's push step, or `docker push`), and check "
            "that the registry answers (`gangway stack status`)",
        ) from exc


def _environment(fn: Any, credentials: RoleCredentials | None) -> dict[str, str]:
    # The function's own variables, then what Lambda itself sets (reserved names win there).
    env = {k: str(v) for k, v in (fn.environment_vars or {}).items()}
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": str(fn.version),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(fn.timeout),
            "AWS_LAMBDA_LOG_GROUP_NAME": fn.logs_group_name,
            "AWS_REGION": fn.region,
            "AWS_DEFAULT_REGION": fn.region,
            # Rehearsal only: on AWS the handler's boto3 finds the real endpoints by itself.
            "AWS_ENDPOINT_URL": BridgeSettings.endpoint,
        }
    )
    if credentials is None:
        # fidelity execution_role off: the stack's allow-everything key, as before.
        env["AWS_ACCESS_KEY_ID"] = BridgeSettings.access_key
        env["AWS_SECRET_ACCESS_KEY"] = BridgeSettings.secret_key
        env.pop("AWS_SESSION_TOKEN", None)
    else:
        # As Lambda does: the execution role's session, evaluated by moto's IAM.
        env["AWS_ACCESS_KEY_ID"] = credentials.access_key_id
        env["AWS_SECRET_ACCESS_KEY"] = credentials.secret_access_key
        env["AWS_SESSION_TOKEN"] = credentials.session_token
    if log_format.log_format(fn) == "JSON":
        env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        env["AWS_LAMBDA_LOG_LEVEL"] = str(fn.logging_config.get("ApplicationLogLevel", "INFO"))
    return env


def _wait_for_port(port: int, container: Any, deadline: float) -> None:
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        container.reload()
        if container.status not in ("created", "running"):
            break
        time.sleep(0.02)
    tail = container.logs(tail=10).decode(errors="replace").strip()
    raise StackError(
        f"the RIE in the function container did not listen on 127.0.0.1:{port}",
        expected=f"the emulator up within {START_WAIT_S:.0f} s",
        found=f"container {container.status}; last lines: {tail[-600:] or '(none)'}",
        remedy="check the image's ENTRYPOINT (/lambda-entrypoint.sh) and the RIE binary",
    )


def _since(stamped: str, since: float | None) -> str:
    """The log text without docker's timestamps, only lines written at or after since."""
    kept: list[str] = []
    for line in stamped.split("\n"):
        stamp, _, text = line.partition(" ")
        if since is not None:
            try:
                seconds = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
            except ValueError:
                seconds = since
            if seconds < since:
                continue
        kept.append(text)
    return "\n".join(kept)


def _logs_after_invoke(container: Any, wait_for_report: bool, since: float | None = None) -> str:
    """The container's log from since on (a warm container holds earlier invokes' lines)."""
    # The RIE can answer before it has written REPORT; read until it is there (bounded).
    deadline = time.monotonic() + (REPORT_WAIT_S if wait_for_report else 0.0)
    while True:
        stamped = container.logs(
            stdout=True, stderr=True, timestamps=True, since=since
        ).decode(errors="replace")
        raw = _since(stamped, since)
        if "REPORT RequestId:" in raw or time.monotonic() >= deadline:
            return raw
        time.sleep(0.05)


def _function_lines(raw: str) -> list[str]:
    """The lines a real function's log stream would have: no emulator lines, none after REPORT."""
    lines: list[str] = []
    for line in raw.split("\n"):
        if RIE_LINE.match(line) or not line.strip():
            continue
        lines.append(line.rstrip("\n"))
        if line.startswith("REPORT RequestId:"):
            break  # later lines belong to no invoke (e.g. the runtime dying on removal)
    return lines


def _error_lines(lines: list[str], request_id: str, error_type: str, message: str) -> list[str]:
    """AWS's lines for a sandbox failure that the RIE leaves out (exit, bad entrypoint)."""
    extra = [message, error_type] if message.startswith("RequestId:") else []
    if not any(line.startswith("END RequestId:") for line in lines):
        extra += [
            f"END RequestId: {request_id}",
            f"REPORT RequestId: {request_id}\tStatus: error\tError Type: {error_type}",
        ]
    return lines + extra


def _timed_out_lines(lines: list[str], request_id: str, seconds: str) -> list[str]:
    """AWS logs the timeout before END; the RIE does not log it at all."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    line = f"{stamp} {request_id} Task timed out after {seconds} seconds"
    for index, existing in enumerate(lines):
        if existing.startswith("END RequestId:"):
            return [*lines[:index], line, *lines[index:]]
    return [*lines, line]


def _architecture_mismatch(fn: Any, image: Image) -> Invocation | None:
    """An arm64 function on an amd64 image (or the reverse) fails as on AWS, not silently."""
    wanted = LAMBDA_ARCH.get((fn.architectures or ["x86_64"])[0])
    found = image.attrs.get("Architecture")
    if not found or found == wanted:
        return None
    request_id = str(uuid.uuid4())
    message = f"RequestId: {request_id} Error: fork/exec /lambda-entrypoint.sh: exec format error"
    document = {"errorType": "Runtime.InvalidEntrypoint", "errorMessage": message}
    lines = _error_lines(
        [f"START RequestId: {request_id} Version: {fn.version}"],
        request_id, "Runtime.InvalidEntrypoint", message,
    )
    return Invocation(json.dumps(document).encode(), True, lines, request_id)


def _interpret(fn: Any, status: int, payload: bytes, raw: str) -> Invocation:
    """Turn the RIE's answer and log into what Lambda reports."""
    found = REQUEST_ID.search(raw)
    request_id = found.group(1) if found else str(uuid.uuid4())
    lines = _function_lines(raw)
    timed_out = TIMED_OUT.fullmatch(payload.decode(errors="replace").strip())
    if status == 0 or (status == 200 and timed_out):
        seconds = timed_out.group(0).split()[-2] if timed_out else f"{float(fn.timeout):.2f}"
        message = f"RequestId: {request_id} Error: Task timed out after {seconds} seconds"
        document = {"errorType": "Sandbox.Timedout", "errorMessage": message}
        return Invocation(
            json.dumps(document).encode(),
            True,
            _timed_out_lines(lines, request_id, seconds),
            request_id,
        )
    if status != 200:
        try:
            document = json.loads(payload)
        except ValueError:
            document = {}
        if not isinstance(document, dict):
            document = {}
        error_type = str(document.get("errorType") or "Runtime.Unknown")
        message = str(document.get("errorMessage") or payload.decode(errors="replace"))
        return Invocation(
            payload, True, _error_lines(lines, request_id, error_type, message), request_id
        )
    return Invocation(payload, bool(ERROR_REPORTED.search(raw)), lines, request_id)


def _config_key(fn: Any, image_id: str, credentials: str) -> str:
    """What makes an execution environment this function version's: a change retires it."""
    spec = {
        "name": fn.function_name,
        "version": str(fn.version),
        "code": fn.code_sha_256,
        "uri": fn.code.get("ImageUri"),
        "image": image_id,
        "entrypoint": fn.image_config.entry_point,
        "cmd": fn.image_config.cmd,
        "cwd": fn.image_config.working_directory,
        "env": fn.environment_vars,
        "memory": fn.memory_size,
        "timeout": fn.timeout,
        "arch": fn.architectures,
        "role": fn.role,
        "logging": getattr(fn, "logging_config", None),
        "credentials": credentials,
    }
    return json.dumps(spec, sort_keys=True, default=str)


def _credentials(fn: Any, settings: fidelity.Fidelity) -> RoleCredentials | None:
    return role_credentials.for_function(fn) if settings.execution_role else None


def _current_key(fn: Any, image_id: str, with_role: bool) -> Callable[[], str]:
    def current() -> str:
        session = role_credentials.peek(fn) if with_role else None
        return _config_key(fn, image_id, session.access_key_id if session else "stack")

    return current


def _start_environment(
    client: docker.DockerClient, fn: Any, image: Image, key: str,
    credentials: RoleCredentials | None, current_key: Callable[[], str],
) -> warm_pool.Environment:
    """A cold start: a new RIE container, its emulator listening; init_ms is the time from
    the container's start to the emulator listening (the runtime's own init is added later)."""
    config = image.attrs.get("Config") or {}
    entrypoint = list(fn.image_config.entry_point or config.get("Entrypoint") or [])
    command = list(fn.image_config.cmd or config.get("Cmd") or [])
    # Each container gets its own two ports, so invokes run concurrently.
    rie_port, api_port = _free_ports(2)
    container = client.containers.run(
        image.id,
        entrypoint=[
            RIE_IN_CONTAINER,
            "--log-level", "debug",
            "--runtime-interface-emulator-address", f"127.0.0.1:{rie_port}",
            "--runtime-api-address", f"127.0.0.1:{api_port}",
            *(entrypoint or ["/lambda-entrypoint.sh"]),
        ],
        command=command,
        working_dir=fn.image_config.working_directory or None,
        environment=_environment(fn, credentials),
        network_mode="host",
        mem_limit=f"{int(fn.memory_size)}m",
        volumes={str(BridgeSettings.rie_path): {"bind": RIE_IN_CONTAINER, "mode": "ro"}},
        labels={
            "dev.gangway.role": "lambda-invoke",
            "dev.gangway.function": fn.function_name,
            "dev.gangway.bridge": str(os.getpid()),
        },
        detach=True,
    )
    started = time.monotonic()
    environment = warm_pool.Environment(
        key=key, container=container, rie_port=rie_port, current_key=current_key,
        label=fn.function_name,
    )
    warm_pool.POOL.add(environment)
    try:
        _wait_for_port(rie_port, container, time.monotonic() + START_WAIT_S)
    except BaseException:
        warm_pool.POOL.release(environment, 0.0, reusable=False)
        raise
    environment.init_ms = (time.monotonic() - started) * 1000.0
    return environment


def _rie_figure(pattern: re.Pattern[str], raw: str) -> float | None:
    found = pattern.search(raw)
    return float(found.group(1)) if found else None


def _measured(
    fn: Any, environment: warm_pool.Environment, cold: bool, raw: str, wall_ms: float,
    timed_out: bool,
) -> log_format.Measured:
    """Lambda's figures for this invoke: the RIE's own are fake (init, memory) or include the
    init (a cold start's Duration)."""
    runtime_init = _rie_figure(RIE_INIT, raw) if cold else None
    duration = _rie_figure(RIE_DURATION, raw)
    if duration is None:
        duration = wall_ms
    duration = max(0.0, duration - (runtime_init or 0.0))
    if timed_out:
        duration = float(fn.timeout) * 1000.0  # AWS reports the whole timeout
    return log_format.Measured(
        duration_ms=duration,
        memory_size_mb=int(fn.memory_size),
        max_memory_used_mb=log_format.memory_peak_mb(environment.container.id),
        init_ms=environment.init_ms + (runtime_init or 0.0) if cold else None,
        status="timeout" if timed_out else None,
    )


def run_in_image(fn: Any, event: bytes) -> Invocation:
    """Run one invoke of fn in its own image under the RIE, on the host network: in an idle
    warm environment of the same function version if there is one, else a new container."""
    client = _client()
    image = _image(client, fn.code["ImageUri"])
    mismatch = _architecture_mismatch(fn, image)
    if mismatch:
        return mismatch
    settings = fidelity.for_function(fn.function_name)
    credentials = _credentials(fn, settings)
    key = _config_key(fn, image.id, credentials.access_key_id if credentials else "stack")
    current_key = _current_key(fn, image.id, credentials is not None)
    environment = warm_pool.POOL.acquire(key) if settings.warm_s > 0 else None
    cold = environment is None
    if environment is None:
        environment = _start_environment(client, fn, image, key, credentials, current_key)
    reusable = False
    try:
        # A warm container's log holds earlier invokes: read only what this one writes.
        since = None if cold else time.time()
        began = time.monotonic()
        try:
            response = httpx.post(
                f"http://127.0.0.1:{environment.rie_port}{INVOKE_PATH}",
                content=event,
                timeout=float(fn.timeout) + INVOKE_MARGIN_S,
                trust_env=False,
            )
            status, payload = response.status_code, response.content
        except httpx.TimeoutException:
            status, payload = 0, b""  # the RIE itself did not enforce the timeout
        wall_ms = (time.monotonic() - began) * 1000.0
        raw = _logs_after_invoke(environment.container, status == 200, since)
        result = _interpret(fn, status, payload, raw)
        timed_out = status == 0 or bool(
            status == 200 and TIMED_OUT.fullmatch(payload.decode(errors="replace").strip())
        )
        # After a timeout or a crashed runtime Lambda resets the environment: no reuse.
        reusable = status == 200 and not timed_out
        measured = _measured(fn, environment, cold, raw, wall_ms, timed_out)
        json_format = log_format.log_format(fn) == "JSON"
        lines = log_format.rewrite(result.lines, measured, json_format)
        return Invocation(result.payload, result.errored, lines, result.request_id)
    finally:
        warm_pool.POOL.release(environment, settings.warm_s, reusable)


def _bridge_failure(fn: Any, exc: Exception) -> Invocation:
    """The rehearsal stack (not the function) failed: say so in the payload and the log."""
    text = exc.render() if isinstance(exc, StackError) else f"[stack] {type(exc).__name__}: {exc}"
    log.error("invoke of %s:%s failed in the bridge: %s", fn.function_name, fn.version, text)
    document = {"errorType": "Rehearsal.StackError", "errorMessage": text}
    lines = [f"[ERROR] {line}" for line in text.split("\n")]
    return Invocation(json.dumps(document).encode(), True, lines)


def _record(fn: Any, event: bytes) -> Invocation:
    """Run the invoke and write its lines to /aws/lambda/NAME through the function's save_logs."""
    started = time.monotonic()
    for attempt in range(START_ATTEMPTS):
        try:
            result = run_in_image(fn, event)
            break
        except (StackError, httpx.ConnectError) as exc:
            # The event never reached the handler (the emulator did not come up, or lost its
            # port to another socket): starting again cannot run the handler twice.
            result = _bridge_failure(fn, exc)
            log.warning("invoke of %s did not start (attempt %d): %s", fn.function_name,
                        attempt + 1, exc)
        except (DockerException, httpx.HTTPError, requests.RequestException) as exc:
            # requests: the docker SDK's transport, when the engine itself is gone.
            result = _bridge_failure(fn, exc)
            break
    if result.lines:
        fn.logs_backend.ensure_log_group(fn.logs_group_name)
        fn.save_logs("\n".join(result.lines))  # moto's: AWS-style YYYY/MM/DD/[VERSION]id
    log.info(
        "invoked %s:%s in %.2f s%s",
        fn.function_name, fn.version, time.monotonic() - started,
        " (function error)" if result.errored else "",
    )
    return result


def _event_bytes(body: Any) -> bytes:
    event = body.encode() if isinstance(body, str) else bytes(body or b"")
    event = event or b"{}"
    try:
        json.loads(event)
    except ValueError as exc:
        raise lambda_exceptions.LambdaClientError(
            "InvalidRequestContentException", f"Could not parse request body into json: {exc}"
        ) from exc
    return event


def _function_invoke(self: Any, body: Any, request_headers: Any, response_headers: Any) -> Any:
    """moto cannot run PackageType=Image (its docker path pulls public runtime images) and says
    FunctionError "Handled"; run the function's own image and say "Unhandled" as AWS does."""
    if getattr(self, "package_type", None) != "Image":
        return _original_function_invoke(self, body, request_headers, response_headers)
    event = _event_bytes(body)
    inv_type = request_headers.get("x-amz-invocation-type", "RequestResponse")
    if inv_type == "DryRun":
        return b""
    if inv_type == "Event":
        threading.Thread(target=_record, args=(self, event), daemon=True).start()
        return b""
    result = _record(self, event)
    if result.errored:
        response_headers["x-amz-function-error"] = "Unhandled"
    tail = "\n".join(result.lines).encode()[-TAIL_BYTES:]
    response_headers["x-amz-log-result"] = base64.b64encode(tail).decode()
    if result.request_id:
        response_headers[INVOCATION_ID_HEADER] = result.request_id
    return result.payload


# On AWS an invoke's x-amzn-RequestId is the RequestId of its START/END/REPORT lines; moto
# stamps every response with a random id of its own. The invoke hands its id over in a
# private header that only this hook reads (and removes).
INVOCATION_ID_HEADER = "x-gangway-invocation-id"
_original_enrich_response = lambda_responses.LambdaResponse._enrich_response


def _enrich_response(headers: dict[str, str], body: Any) -> tuple[dict[str, str], Any]:
    """moto's response enrichment, keeping an invoke's own request id as x-amzn-RequestId."""
    invocation_id = headers.pop(INVOCATION_ID_HEADER, None)
    headers, body = _original_enrich_response(headers, body)
    if invocation_id:
        headers["x-amzn-requestid"] = invocation_id
    return headers, body


# --------------------------------------------------------------------------- log filters
TERM = re.compile(r'\s*([?-]?)(?:"([^"]*)"|([^\s"]+))')


@functools.lru_cache(maxsize=256)
def _text_pattern(pattern: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Parse an unstructured-text filter pattern into (all of, any of, none of)."""
    text = pattern.strip()
    every: list[str] = []
    anyof: list[str] = []
    none: list[str] = []
    if text[:1] in ("{", "["):
        raise logs_exceptions.InvalidParameterException(
            msg="JSON and space-delimited filter patterns are not implemented by the rehearsal "
            "bridge (moto would match every event); use terms, or match client-side"
        )
    position = 0
    while position < len(text):
        term = TERM.match(text, position)
        if term is None or term.end() == position:
            raise logs_exceptions.InvalidParameterException(
                msg=f"invalid filter pattern {pattern!r} (unbalanced quote?)"
            )
        position = term.end()
        word = term.group(2) if term.group(2) is not None else term.group(3)
        {"?": anyof, "-": none}.get(term.group(1), every).append(word)
    if anyof and (every or none):
        raise logs_exceptions.InvalidParameterException(
            msg="the rehearsal bridge does not mix '?term' with other terms; use one form"
        )
    return tuple(every), tuple(anyof), tuple(none)


class TextFilter:
    """AWS text filter: every plain/quoted term, at least one ``?term``, no ``-term``."""

    def __init__(self, pattern: str | None) -> None:
        self.every, self.anyof, self.none = _text_pattern(pattern or "")

    def matches(self, message: str) -> bool:
        """Case-sensitive substring match of the terms, as CloudWatch Logs does."""
        return (
            all(term in message for term in self.every)
            and (not self.anyof or any(term in message for term in self.anyof))
            and not any(term in message for term in self.none)
        )


_original_filter_log_events = logs_models.LogsBackend.filter_log_events


def _filter_log_events(self: Any, *args: Any, **kwargs: Any) -> Any:
    """moto's EventMessageFilter matches EVERY event for ``?A ?B``, ``-A``, ``[...]`` or
    ``{...}``; use AWS's text semantics and refuse what is not implemented, before matching."""
    pattern = args[6] if len(args) > 6 else kwargs.get("filter_pattern")
    TextFilter(pattern)  # refuses an unsupported pattern even when no event would be read
    return _original_filter_log_events(self, *args, **kwargs)


# --------------------------------------------------------------------------- IAM, per identity
# Signing name -> IAM prefix, and API operation -> IAM action, where they differ.
IAM_PREFIX = {"monitoring": "cloudwatch"}
IAM_ACTION = {
    ("lambda", "Invoke"): "InvokeFunction",
    ("lambda", "InvokeWithResponseStream"): "InvokeFunction",
}
JSON_PROTOCOLS = ("json", "rest-json")
CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")
LAMBDA_PATH = re.compile(r"^/[\d-]+/(functions|tags)/([^/]+)(?:/([^/]+))?")
INVALID_TOKEN = "The security token included in the request is invalid."
BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check "
    "your AWS Secret Access Key and signing method. Consult the service documentation for "
    "details."
)

# Every key moto's IAM has issued to a user: a deleted one must be refused, not waved through
# as if it were the stack's own key.
_issued_keys: set[str] = set()
_issued_lock = threading.Lock()


@dataclass(frozen=True)
class Caller:
    """Who signed a request (SigV4 credential scope)."""

    key_id: str
    region: str
    service: str


class AuthRefused(HTTPException):
    """An authentication/authorization refusal whose body is already in the protocol's shape."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(description=body)
        self.code = status


def _caller(headers: Any) -> Caller | None:
    """The access key, region and signing name of a SigV4 Authorization header."""
    found = CREDENTIAL.search(headers.get("Authorization", "") or "")
    return Caller(found.group(1), found.group(2), found.group(3)) if found else None


def _user_key(key_id: str) -> Any | None:
    """The IAM user access key (any account, any partition) with this id, if there is one."""
    for account in list(iam_models.iam_backends.values()):
        for partition in PARTITION_NAMES:
            key = account[partition].access_keys.get(key_id)
            if key is not None and key.user_name:
                return key
    return None


_original_create_access_key = iam_models.IAMBackend.create_access_key


def _create_access_key(self: Any, *args: Any, **kwargs: Any) -> Any:
    """Remember the key, so that a request with it after its deletion is refused."""
    key = _original_create_access_key(self, *args, **kwargs)
    with _issued_lock:
        _issued_keys.add(key.access_key_id)
    return key


@functools.lru_cache(maxsize=64)
def _protocol(service: str) -> str:
    """The service's wire protocol (json, rest-json, query, rest-xml, ec2), "" if unknown."""
    if not service:
        return ""
    try:
        return str(get_service_model(service).metadata.get("protocol", ""))
    except Exception:  # no botocore model under that name: treat it like an XML service
        return ""


def _iam_action(caller: Caller, operation: str) -> str:
    service = IAM_PREFIX.get(caller.service, caller.service)
    return f"{service}:{IAM_ACTION.get((service, operation), operation)}"


def _lambda_resource(response: Any, caller: Caller) -> str:
    """The ARN AWS authorizes a Lambda call on: the function, qualified when the call is."""
    path = LAMBDA_PATH.match(unquote(response.path))
    if path is None:
        return "*"  # ListFunctions, layers, event source mappings: AWS checks "*"
    kind, name, rest = path.groups()
    if kind == "tags":
        return name
    qualifier = (parse_qs(urlparse(response.uri).query).get("Qualifier") or [None])[0]
    if name.startswith("arn:"):
        parts = name.split(":")
        name, qualifier = parts[6], parts[7] if len(parts) > 7 else qualifier
    elif ":" in name:
        name, qualifier = name.split(":", 1)
    if rest == "aliases":
        qualifier = None  # alias actions are on the function
    arn = (
        f"arn:{response.partition}:lambda:{caller.region}:{response.current_account}"
        f":function:{name}"
    )
    return f"{arn}:{qualifier}" if qualifier else arn


def _logs_resource(response: Any, caller: Caller) -> str:
    """The log group (and stream) ARN AWS names for a CloudWatch Logs call."""
    try:
        body = json.loads(response.body or "{}")
    except ValueError:
        return "*"
    if not isinstance(body, dict):
        return "*"
    identifier = str(body.get("logGroupIdentifier") or "")
    if identifier.startswith("arn:"):
        return identifier.removesuffix(":*")
    group = body.get("logGroupName") or identifier
    if not group:
        return "*"
    stream = body.get("logStreamName") or ""
    return (
        f"arn:{response.partition}:logs:{caller.region}:{response.current_account}"
        f":log-group:{group}:log-stream:{stream}"
    )


def _resource(response: Any, caller: Caller, given: str) -> str:
    if caller.service == "lambda":
        return _lambda_resource(response, caller)
    if caller.service == "logs":
        return _logs_resource(response, caller)
    return given


class _SignedBody(IAMRequestBase):
    """moto signs an empty body as its parsed query, which falls back to the request's headers:
    every GET by a real key failed the check. The signature is over the raw body, except for a
    form (query protocol), whose raw body the server has already parsed into the query."""

    def _create_aws_request(self) -> AWSRequest:
        request = super()._create_aws_request()
        content_type = str(self._headers.get("Content-Type", ""))
        if not content_type.startswith("application/x-www-form-urlencoded"):
            request.data = self._body or b""
        return request


class _Request(_SignedBody, IAMRequest):
    """IAMRequest with the raw body signed."""


class _S3Request(_SignedBody, S3IAMRequest):
    """S3IAMRequest with the raw body signed."""


def _decision(request: IAMRequestBase, action: str, resource: str) -> PermissionResult:
    """moto's evaluation of the caller's identity-based policies: an explicit Deny wins."""
    result = PermissionResult.NEUTRAL
    try:
        policies = request._access_key.collect_policies()
    except iam_models.NotFoundException:  # a session of a role deleted since: nothing allows
        return result
    for policy in policies:
        found = IAMPolicy(policy).is_action_permitted(action, resource)
        if found == PermissionResult.DENIED:
            return found
        if found == PermissionResult.PERMITTED:
            result = found
    return result


def _json_refusal(
    response: Any, protocol: str, status: int, code: str, message: str
) -> AuthRefused:
    """The refusal as AWS's JSON protocols send it; botocore reads the code from the header
    (rest-json) or ``__type`` (json)."""
    body = (
        {"Type": "User", "Message": message}
        if protocol == "rest-json"
        else {"__type": code, "message": message}
    )
    response.response_headers["x-amzn-ErrorType"] = code
    response.response_headers["Content-Type"] = "application/json"
    return AuthRefused(status, json.dumps(body))


def _denied_message(principal: str, action: str, resource: str, explicit: bool) -> str:
    why = (
        "with an explicit deny in an identity-based policy"
        if explicit
        else f"because no identity-based policy allows the {action} action"
    )
    return f"User: {principal} is not authorized to perform: {action} on resource: {resource} {why}"


_original_authorize = ActionAuthenticatorMixin._authenticate_and_authorize_action


def _authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
    """Enforce IAM for requests signed by an IAM user's key; every other key as before."""
    caller = _caller(self.headers)
    key = _user_key(caller.key_id) if caller else None
    # An execution role's session (an invoke's credentials) is evaluated like a user's key,
    # against the role's attached and inline policies.
    session = role_credentials.session_of(caller.key_id) if caller and key is None else None
    with _issued_lock:
        issued = caller is not None and caller.key_id in _issued_keys
    if caller is None or (key is None and session is None and not issued):
        return _original_authorize(self, iam_request_cls, resource)
    protocol = _protocol(self.boto3_service_name)
    json_protocol = protocol in JSON_PROTOCOLS
    active = session is not None or (key is not None and key.status == "Active")
    if not active and json_protocol:
        raise _json_refusal(self, protocol, 403, "UnrecognizedClientException", INVALID_TOKEN)
    query = urlparse(self.uri).query
    action = _iam_action(caller, self._get_action())
    resource = _resource(self, caller, resource)
    request_cls = _S3Request if issubclass(iam_request_cls, S3IAMRequest) else _Request
    # A deleted key makes moto's request class raise the service's own "invalid key" error.
    request = request_cls(
        account_id=self.current_account,
        method=self.method,
        path=self.raw_path + (f"?{query}" if query else ""),
        data=self.data,
        body=self.raw_body,
        headers=self.headers,
        action=self._get_action(),
    )
    request._action = action
    if not active:
        request._raise_invalid_access_key("InvalidId")  # an inactive key, as AWS refuses it
    if not json_protocol:
        # Query and XML services: moto's errors already have AWS's shape there.
        request.check_signature()
        request.check_action_permitted(resource)
        return None
    try:
        request.check_signature()
    except (SignatureDoesNotMatchError, AuthFailureError):
        raise _json_refusal(
            self, protocol, 403, "InvalidSignatureException", BAD_SIGNATURE
        ) from None
    decision = _decision(request, action, resource)
    principal = request._access_key.arn
    if decision != PermissionResult.PERMITTED:
        explicit = decision == PermissionResult.DENIED
        message = _denied_message(principal, action, resource, explicit)
        log.info("IAM refused %s", message)
        raise _json_refusal(self, protocol, 403, "AccessDeniedException", message)
    try:
        request.check_action_permitted(resource)  # moto's remaining checks (role trust)
    except AccessDeniedError:
        message = _denied_message(principal, action, resource, explicit=False)
        raise _json_refusal(self, protocol, 403, "AccessDeniedException", message) from None
    return None


def install(rie_path: Path, endpoint: str) -> None:
    """Apply every patch to moto, in this process."""
    BridgeSettings.rie_path = rie_path
    BridgeSettings.endpoint = endpoint
    lambda_responses.LambdaResponse.invoke = _invoke_response
    lambda_responses.LambdaResponse._enrich_response = staticmethod(_enrich_response)
    lambda_responses.LambdaResponse.update_alias = _update_alias_response
    lambda_responses.LambdaResponse.publish_version = _publish_version_response
    lambda_models.LambdaStorage.publish_version = _publish_version
    lambda_models.LambdaFunction._set_function_code = _set_function_code
    lambda_models.LambdaFunction.get_code = _get_code
    lambda_models.LambdaBackend.invoke = _backend_invoke
    lambda_models.LambdaFunction.invoke = _function_invoke
    lambda_models.LambdaFunction.update_configuration = _update_configuration
    logs_models.EventMessageFilter = TextFilter
    logs_models.LogsBackend.filter_log_events = _filter_log_events
    ActionAuthenticatorMixin._authenticate_and_authorize_action = _authorize
    iam_models.IAMBackend.create_access_key = _create_access_key
    # Here, not at the top, to keep these registrations in one place. After the patches
    # above: the lifecycle wraps the invoke installed here.
    from rehearsal import lambda_lifecycle, log_ingestion

    lambda_lifecycle.install()
    log_ingestion.install()
    log_format.install()  # last: it wraps the configuration methods patched above


def main(argv: list[str] | None = None) -> int:
    """Serve moto with the bridge until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m rehearsal.moto_bridge")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--rie", type=Path, required=True, help="host path of aws-lambda-rie")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per RIE call is noise
    if not args.rie.is_file():
        error = StackError(
            "the Lambda Runtime Interface Emulator binary is missing",
            expected=f"an executable at {args.rie}",
            found="no such file",
            remedy="run `gangway stack up` (it unpacks the RIE from the aws-sam-cli wheel)",
        )
        print(error.render(), file=sys.stderr)
        return 2
    # Function containers share the host network: a wildcard bind is reached on loopback.
    reach = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    install(args.rie.resolve(), f"http://{reach}:{args.port}")
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    log.info("moto bridge serving on http://%s:%s", args.host, args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
    _remove_own_containers()
    return 0


def _remove_own_containers() -> None:
    """Containers of invokes still running at shutdown (e.g. async ones) go with the bridge."""
    warm_pool.POOL.close()
    try:
        client = _client()
        label = f"dev.gangway.bridge={os.getpid()}"
        for container in client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
    except DockerException as exc:
        log.warning("could not remove this bridge's function containers: %s", exc)


if __name__ == "__main__":
    sys.exit(main())
