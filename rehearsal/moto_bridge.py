"""moto as a real HTTP server, with Image functions invoked in their own image under the RIE.

Rehearsal tooling only: gangway's tasks and flows never import this; they speak plain boto3
to whatever endpoint the environment names. Each function below closes one gap between
moto 5.2 and AWS Lambda, so the pipeline can trust what the rehearsal reports:

- ``_invoke_response``: moto reads a lowercase ``qualifier``; boto3 sends ``Qualifier``.
- ``_update_alias_response`` / ``_publish_version_response``: RevisionId and CodeSha256
  preconditions are enforced (moto ignored both), so a concurrent writer is caught.
- ``_publish_version``: versions were shallow copies sharing ``code`` with $LATEST, so an old
  version reported (and would run) the NEW image after ``update_function_code``.
- ``_set_function_code`` / ``_get_code``: CodeSha256 and ResolvedImageUri for an image by
  digest are the digest, as on AWS (moto hashed the URI string and mangled registry ports).
- ``_backend_invoke``: alias RoutingConfig weights are honoured and the executed version is
  returned (``X-Amz-Executed-Version``).
- ``_function_invoke``: an Image function runs its own image under the Lambda RIE (moto
  cannot pull its runtime images here), with the function's env, memory and timeout; the
  container's log lines go to CloudWatch Logs in an AWS-style ``[VERSION]`` stream, and a
  runtime error sets ``FunctionError: Unhandled`` as AWS does.
Waiters pass at once and State is always Active in moto; that is left as it is.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import logging
import random
import re
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import docker
import httpx
from docker.errors import DockerException, ImageNotFound, NotFound
from moto.awslambda import exceptions as lambda_exceptions
from moto.awslambda import models as lambda_models
from moto.awslambda import responses as lambda_responses
from moto.server import ThreadedMotoServer

log = logging.getLogger("gangway.moto_bridge")

RIE_IN_CONTAINER = "/rie/aws-lambda-rie"
INVOKE_PATH = "/2015-03-31/functions/function/invocations"
START_WAIT_S = 20.0
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- request side
_original_invoke_response = lambda_responses.LambdaResponse.invoke


def _invoke_response(self: Any) -> Any:
    """Honour boto3's ``Qualifier`` query parameter (moto only reads ``qualifier``)."""
    if "Qualifier" in self.querystring and "qualifier" not in self.querystring:
        self.querystring["qualifier"] = self.querystring["Qualifier"]
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
    before = len(self._functions.get(name_or_arn.split(":")[-1], {}).get("versions", []))
    fn = _original_publish(self, name_or_arn, description)
    if fn is None:
        return fn
    versions = self._functions[fn.function_name]["versions"]
    if len(versions) > before and versions[-1] is fn:
        for attr, value in list(vars(fn).items()):
            if isinstance(value, dict | list | lambda_models.ImageConfig):
                setattr(fn, attr, copy.deepcopy(value))
    return fn


_original_set_code = lambda_models.LambdaFunction._set_function_code


def _set_function_code(self: Any, updated_spec: dict[str, Any]) -> None:
    """CodeSha256 of an image deployed by digest is the digest, as on AWS."""
    _original_set_code(self, updated_spec)
    uri = self.code.get("ImageUri") or ""
    if "@sha256:" in uri:
        self.code_sha_256 = uri.split("@sha256:", 1)[1]


_original_get_code = lambda_models.LambdaFunction.get_code


def _get_code(self: Any) -> dict[str, Any]:
    """ResolvedImageUri is repository@digest (moto split a registry's port off)."""
    response = _original_get_code(self)
    uri = self.code.get("ImageUri")
    if uri and "Code" in response:
        repository = uri.split("@", 1)[0] if "@" in uri else uri.rsplit(":", 1)[0]
        response["Code"]["ResolvedImageUri"] = f"{repository}@sha256:{self.code_sha_256}"
    return response


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
    except Exception:  # unknown function: let moto raise its own not-found error
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


def _image_command(client: docker.DockerClient, fn: Any, image: str) -> list[str]:
    command = getattr(getattr(fn, "image_config", None), "cmd", None)
    if command:
        return list(command)
    config = client.images.get(image).attrs.get("Config", {})
    return list(config.get("Cmd") or [])


def _ensure_image(client: docker.DockerClient, image: str) -> None:
    try:
        client.images.get(image)
    except ImageNotFound:
        client.images.pull(image)


def _environment(fn: Any) -> dict[str, str]:
    # What Lambda itself sets for the runtime, then the function's own variables.
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": fn.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": str(fn.version),
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory_size),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(fn.timeout),
        "AWS_LAMBDA_LOG_GROUP_NAME": fn.logs_group_name,
        "AWS_REGION": fn.region,
        "AWS_DEFAULT_REGION": fn.region,
        "AWS_ACCESS_KEY_ID": BridgeSettings.access_key,
        "AWS_SECRET_ACCESS_KEY": BridgeSettings.secret_key,
        # Rehearsal only: on AWS the handler's boto3 finds the real endpoints by itself.
        "AWS_ENDPOINT_URL": BridgeSettings.endpoint,
    }
    env.update({k: str(v) for k, v in (fn.environment_vars or {}).items()})
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
    raise RuntimeError(f"the RIE in {container.short_id} did not listen on 127.0.0.1:{port}")


def run_in_image(fn: Any, event: bytes) -> tuple[bytes, bool, str]:
    """Run one invoke of fn in its own image under the RIE: (payload, errored, log text)."""
    client = _client()
    image = fn.code["ImageUri"]
    _ensure_image(client, image)
    api_port, rie_port = _free_port(), _free_port()
    container = client.containers.run(
        image,
        entrypoint=[
            RIE_IN_CONTAINER,
            "--runtime-interface-emulator-address",
            f"127.0.0.1:{rie_port}",
            "--runtime-api-address",
            f"127.0.0.1:{api_port}",
            "/lambda-entrypoint.sh",
        ],
        command=_image_command(client, fn, image),
        environment=_environment(fn),
        network_mode="host",
        volumes={str(BridgeSettings.rie_path): {"bind": RIE_IN_CONTAINER, "mode": "ro"}},
        labels={"dev.gangway.role": "lambda-invoke", "dev.gangway.function": fn.function_name},
        detach=True,
    )
    try:
        _wait_for_port(rie_port, container, time.monotonic() + START_WAIT_S)
        timeout = float(fn.timeout) + 10.0
        response = httpx.post(
            f"http://127.0.0.1:{rie_port}{INVOKE_PATH}", content=event, timeout=timeout
        )
        payload = response.content
        logs = container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        try:
            container.remove(force=True)
        except NotFound:
            pass
    # The emulator's own "(rapid)" lines are not in a real function's log stream.
    logs = "\n".join(line for line in logs.splitlines() if not RIE_LINE.match(line))
    timed_out = TIMED_OUT.search(payload.decode(errors="replace"))
    if timed_out and not _is_error(payload):
        # The RIE answers the bare text; AWS answers an error document and logs the line.
        payload = json.dumps(
            {"errorType": "Sandbox.Timedout", "errorMessage": timed_out.group(0)}
        ).encode()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        end = logs.find("\nEND RequestId")
        line = f"\n{stamp}.000Z Task timed out after {timed_out.group(0).split()[-2]} seconds"
        logs = logs[:end] + line + logs[end:] if end >= 0 else logs + line
    return payload, _is_error(payload), logs


def _is_error(payload: bytes) -> bool:
    try:
        document = json.loads(payload or b"null")
    except ValueError:
        return False
    return isinstance(document, dict) and "errorType" in document and "errorMessage" in document


def _function_invoke(self: Any, body: Any, request_headers: Any, response_headers: Any) -> Any:
    """Image functions run their own image; other package types keep moto's behaviour."""
    if getattr(self, "package_type", None) != "Image":
        return _original_function_invoke(self, body, request_headers, response_headers)
    event = body if isinstance(body, bytes) else (body or "{}").encode()
    self.logs_backend.ensure_log_group(self.logs_group_name)
    try:
        payload, errored, logs = run_in_image(self, event)
    except (DockerException, RuntimeError, httpx.HTTPError) as exc:
        message = f"gangway rehearsal bridge could not run {self.code.get('ImageUri')}: {exc}"
        log.error(message)
        payload = json.dumps({"errorType": "Runtime.BridgeError", "errorMessage": message}).encode()
        errored, logs = True, f"[ERROR] {message}"
    self.save_logs(logs)
    if errored:
        response_headers["x-amz-function-error"] = "Unhandled"
    inv_type = request_headers.get("x-amz-invocation-type", "RequestResponse")
    if inv_type == "RequestResponse":
        tail = logs.encode()[-TAIL_BYTES:]
        response_headers["x-amz-log-result"] = base64.b64encode(tail).decode()
    return payload


def _save_logs(self: Any, output: str) -> None:
    """AWS-style stream name ``YYYY/MM/DD/[VERSION]id`` with real timestamps per line."""
    now = time.gmtime()
    stream = f"{now.tm_year}/{now.tm_mon:02d}/{now.tm_mday:02d}/[{self.version}]{uuid.uuid4().hex}"
    self.logs_backend.create_log_stream(self.logs_group_name, stream)
    millis = int(time.time() * 1000)
    events = [{"timestamp": millis, "message": line} for line in output.splitlines() if line]
    if events:
        self.logs_backend.put_log_events(self.logs_group_name, stream, events)


def install(rie_path: Path, endpoint: str) -> None:
    """Apply every patch to moto, in this process."""
    BridgeSettings.rie_path = rie_path
    BridgeSettings.endpoint = endpoint
    lambda_responses.LambdaResponse.invoke = _invoke_response
    lambda_responses.LambdaResponse.update_alias = _update_alias_response
    lambda_responses.LambdaResponse.publish_version = _publish_version_response
    lambda_models.LambdaStorage.publish_version = _publish_version
    lambda_models.LambdaFunction._set_function_code = _set_function_code
    lambda_models.LambdaFunction.get_code = _get_code
    lambda_models.LambdaBackend.invoke = _backend_invoke
    lambda_models.LambdaFunction.invoke = _function_invoke
    lambda_models.LambdaFunction.save_logs = _save_logs


def main(argv: list[str] | None = None) -> int:
    """Serve moto with the bridge until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m rehearsal.moto_bridge")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    parser.add_argument("--rie", type=Path, required=True, help="host path of aws-lambda-rie")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not args.rie.exists():
        print(
            f"[stack] the RIE binary {args.rie} does not exist; run `gangway stack up`",
            file=sys.stderr,
        )
        return 2
    install(args.rie.resolve(), f"http://{args.host}:{args.port}")
    server = ThreadedMotoServer(ip_address=args.host, port=args.port, verbose=False)
    server.start()
    log.info("moto bridge serving on http://%s:%s", args.host, args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
