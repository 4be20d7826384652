"""The moto bridge closes moto's Lambda fidelity gaps; each test here fails on plain moto.

Everything is asserted through boto3 over HTTP against a bridge subprocess, which runs each
function's own image under the Lambda RIE (see conftest.py).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker as docker_sdk
import httpx
import pytest
from botocore.exceptions import ClientError

from rehearsal.lambda_waits import wait_active, wait_updated

pytestmark = pytest.mark.stack
LOG_WAIT_S = 20.0  # far beyond the ingestion delay the bridge imitates (rehearsal.fidelity)

@pytest.fixture
def make_function(
    aws: Callable[[str], Any], images: dict[str, str], role: str
) -> Iterator[Callable[..., str]]:
    """Create Image functions (v1 image unless told otherwise); deleted after the test."""
    names: list[str] = []

    def make(handler: str = "app.handler", image: str | None = None, **extra: Any) -> str:
        name = f"bridge-test-{uuid.uuid4().hex[:8]}"
        aws("lambda").create_function(
            FunctionName=name,
            PackageType="Image",
            Code={"ImageUri": image or images["v1"]},
            ImageConfig={"Command": [handler]},
            Role=role,
            Timeout=extra.pop("Timeout", 10),
            MemorySize=extra.pop("MemorySize", 256),
            **extra,
        )
        names.append(name)
        wait_active(aws("lambda"), name)  # Pending first, as on AWS
        return name

    yield make
    for name in names:
        aws("lambda").delete_function(FunctionName=name)


def invoke(lam: Any, name: str, payload: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """Invoke with the log tail; returns (response, decoded payload, decoded tail)."""
    response = lam.invoke(
        FunctionName=name, Payload=json.dumps(payload or {}).encode(), LogType="Tail", **kwargs
    )
    body = json.loads(response["Payload"].read())
    return response, body, base64.b64decode(response.get("LogResult", "")).decode()


def v1_then_v2(lam: Any, name: str, images: dict[str, str]) -> None:
    """Publish version 1 from the v1 image, then put the v2 image on $LATEST (update done)."""
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    update_code(lam, name, images["v2"])


def update_code(lam: Any, name: str, image: str) -> None:
    """update_function_code, then wait until LastUpdateStatus is Successful."""
    lam.update_function_code(FunctionName=name, ImageUri=image)
    wait_updated(lam, name)


def ingested(
    read: Callable[[], list[dict[str, Any]]],
    until: Callable[[list[dict[str, Any]]], bool] = bool,
) -> list[dict[str, Any]]:
    """Read log events until they satisfy until (CloudWatch Logs shows an event only some time
    after it was written); the last read when they never do, for the assertion to show."""
    deadline = time.monotonic() + LOG_WAIT_S
    while True:
        events = read()
        if until(events) or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


# --------------------------------------------------------------------------- (a) qualifiers


def test_invoke_runs_latest_version_or_alias_as_qualified(
    aws: Callable[[str], Any], images: dict[str, str], make_function: Callable[..., str]
) -> None:
    lam = aws("lambda")
    name = make_function()
    v1_then_v2(lam, name, images)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]

    cases = [
        ({}, "$LATEST", 2),
        ({"Qualifier": "$LATEST"}, "$LATEST", 2),
        ({"Qualifier": "1"}, "1", 1),
        ({"Qualifier": "live"}, "1", 1),
        ({"FunctionName": f"{name}:live"}, "1", 1),
        ({"FunctionName": f"{arn}:1"}, "1", 1),
    ]
    for kwargs, executed, release in cases:
        target = kwargs.pop("FunctionName", name)
        response, body, _ = invoke(lam, target, **kwargs)
        assert (response["ExecutedVersion"], body) == (executed, {"v": release}), kwargs

    # moto read the qualifier from the JSON payload too: an event key must not pick a version.
    response, body, _ = invoke(lam, name, {"qualifier": "1"})
    assert (response["ExecutedVersion"], body) == ("$LATEST", {"v": 2})


# --------------------------------------------------------------------------- (b) versions


def test_published_version_keeps_and_runs_its_own_image(
    aws: Callable[[str], Any], images: dict[str, str], make_function: Callable[..., str]
) -> None:
    lam = aws("lambda")
    name = make_function()
    sha_v1 = lam.get_function(FunctionName=name)["Configuration"]["CodeSha256"]
    v1_then_v2(lam, name, images)
    sha_v2 = lam.get_function(FunctionName=name)["Configuration"]["CodeSha256"]
    assert sha_v1 != sha_v2

    version_1 = lam.get_function(FunctionName=name, Qualifier="1")
    assert version_1["Code"]["ImageUri"] == images["v1"]
    assert version_1["Configuration"]["CodeSha256"] == sha_v1
    assert lam.get_function(FunctionName=name)["Code"]["ImageUri"] == images["v2"]
    assert invoke(lam, name, Qualifier="1")[1] == {"v": 1}

    # Rollback target stays intact after a second publish too.
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    assert lam.get_function(FunctionName=name, Qualifier="1")["Code"]["ImageUri"] == images["v1"]
    assert invoke(lam, name, Qualifier="2")[1] == {"v": 2}


def test_a_deleted_versions_number_is_never_reused(
    aws: Callable[[str], Any], images: dict[str, str], make_function: Callable[..., str]
) -> None:
    """After `gangway prune` deletes a version, the next publish takes a new number (moto
    numbered len(versions) + 1 and shadowed a live version)."""
    lam = aws("lambda")
    name = make_function()
    v1_then_v2(lam, name, images)
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    update_code(lam, name, images["v1"])
    assert lam.publish_version(FunctionName=name)["Version"] == "3"
    lam.delete_function(FunctionName=name, Qualifier="2")
    update_code(lam, name, images["v2"])
    assert lam.publish_version(FunctionName=name)["Version"] == "4"
    lam.delete_function(FunctionName=name, Qualifier="4")
    update_code(lam, name, images["v1"])
    assert lam.publish_version(FunctionName=name)["Version"] == "5"
    listed = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in listed] == ["$LATEST", "1", "3", "5"]
    assert lam.get_function(FunctionName=name, Qualifier="3")["Code"]["ImageUri"] == images["v1"]
    assert invoke(lam, name, Qualifier="3")[1] == {"v": 1}


def test_publish_refuses_a_stale_code_sha(
    aws: Callable[[str], Any], images: dict[str, str], make_function: Callable[..., str]
) -> None:
    lam = aws("lambda")
    name = make_function()
    stale = lam.get_function(FunctionName=name)["Configuration"]["CodeSha256"]
    update_code(lam, name, images["v2"])
    with pytest.raises(ClientError) as refused:
        lam.publish_version(FunctionName=name, CodeSha256=stale)
    assert refused.value.response["Error"]["Code"] == "PreconditionFailedException"


def test_image_config_update_is_applied(
    aws: Callable[[str], Any], make_function: Callable[..., str]
) -> None:
    lam = aws("lambda")
    name = make_function()
    lam.update_function_configuration(
        FunctionName=name, ImageConfig={"Command": ["app.returns_error_shape"]}
    )
    wait_updated(lam, name)  # until then, invokes run the previous configuration
    config = lam.get_function_configuration(FunctionName=name)
    assert config["ImageConfigResponse"]["ImageConfig"]["Command"] == ["app.returns_error_shape"]
    assert invoke(lam, name)[1]["errorType"] == "NotAnError"


# --------------------------------------------------------------------------- (c) routing


def test_weighted_alias_runs_both_versions_and_reports_which(
    aws: Callable[[str], Any], images: dict[str, str], make_function: Callable[..., str]
) -> None:
    lam = aws("lambda")
    name = make_function()
    v1_then_v2(lam, name, images)
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    lam.create_alias(
        FunctionName=name,
        Name="live",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}},
    )
    # Concurrent invokes also prove that containers with their own ports coexist.
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: invoke(lam, name, Qualifier="live"), range(20)))
    seen: dict[str, set[int]] = {}
    for response, body, tail in results:
        seen.setdefault(response["ExecutedVersion"], set()).add(body["v"])
        assert f"app line v{body['v']}" in tail
    # Each executed version ran its own image; p(one never chosen) = 2 * 0.5**20.
    assert seen == {"1": {1}, "2": {2}}

    lam.update_alias(FunctionName=name, Name="live", RoutingConfig={"AdditionalVersionWeights": {}})
    assert {invoke(lam, name, Qualifier="live")[0]["ExecutedVersion"] for _ in range(3)} == {"1"}


# --------------------------------------------------------------------------- errors, logs


def test_runtime_error_is_unhandled_and_in_the_logs(
    aws: Callable[[str], Any], make_function: Callable[..., str]
) -> None:
    lam, logs = aws("lambda"), aws("logs")
    name = make_function("app.boom")
    version = lam.publish_version(FunctionName=name)["Version"]
    response, body, tail = invoke(lam, name, Qualifier=version)
    assert response["FunctionError"] == "Unhandled"  # AWS's value; moto said "Handled"
    assert (body["errorType"], body["errorMessage"]) == ("RuntimeError", "boom")
    assert "[ERROR] RuntimeError: boom" in tail and "REPORT RequestId:" in tail
    assert "(rapid)" not in tail  # the emulator's own lines are not function output

    events = ingested(
        lambda: logs.filter_log_events(
            logGroupName=f"/aws/lambda/{name}", filterPattern="ERROR"
        )["events"],
        lambda found: any(e["message"].startswith("[ERROR] RuntimeError: boom") for e in found),
    )
    messages = [e["message"] for e in events]
    assert any(m.startswith("[ERROR] RuntimeError: boom") for m in messages), messages
    assert {e["logStreamName"].split("]")[0].rsplit("[", 1)[1] for e in events} == {version}


def test_invoke_request_id_is_the_request_id_of_its_log_lines(
    aws: Callable[[str], Any], make_function: Callable[..., str]
) -> None:
    # On AWS x-amzn-RequestId of an invoke is the RequestId of its START/END/REPORT lines;
    # moto stamps a random id of its own, so a log scan could not find the invoke by it.
    lam, logs = aws("lambda"), aws("logs")
    name = make_function()
    ok, _, ok_tail = invoke(lam, name)
    failed, _, failed_tail = invoke(lam, make_function("app.boom"))
    for response, tail in ((ok, ok_tail), (failed, failed_tail)):
        request_id = response["ResponseMetadata"]["RequestId"]
        assert f"START RequestId: {request_id} " in tail
        assert f"REPORT RequestId: {request_id}" in tail
        assert "x-gangway-invocation-id" not in response["ResponseMetadata"]["HTTPHeaders"]
    assert ok["ResponseMetadata"]["RequestId"] != failed["ResponseMetadata"]["RequestId"]
    events = ingested(
        lambda: logs.filter_log_events(
            logGroupName=f"/aws/lambda/{name}",
            filterPattern=f'"{ok["ResponseMetadata"]["RequestId"]}"',
        )["events"],
        lambda found: any(e["message"].startswith("END RequestId:") for e in found),
    )
    assert any(e["message"].startswith("END RequestId:") for e in events), events
    # Other actions keep an id of their own.
    listed = lam.list_functions()["ResponseMetadata"]["RequestId"]
    assert listed and listed != ok["ResponseMetadata"]["RequestId"]


def test_error_shaped_result_is_not_a_function_error(
    aws: Callable[[str], Any], make_function: Callable[..., str]
) -> None:
    # FunctionError comes from the runtime's error report, not from the payload's shape.
    response, body, _ = invoke(aws("lambda"), make_function("app.returns_error_shape"))
    assert "FunctionError" not in response
    assert body == {"errorType": "NotAnError", "errorMessage": "just data"}


def test_timeout_is_enforced_and_logged(
    aws: Callable[[str], Any], make_function: Callable[..., str]
) -> None:
    name = make_function("app.slow", Timeout=2)
    begun = time.monotonic()
    response, body, tail = invoke(aws("lambda"), name)
    assert time.monotonic() - begun < 8
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in body["errorMessage"]
    assert "Task timed out after 2.00 seconds" in tail
    events = ingested(
        lambda: aws("logs").filter_log_events(
            logGroupName=f"/aws/lambda/{name}", filterPattern='"Task timed out"'
        )["events"]
    )
    assert len(events) == 1


def test_log_streams_are_named_for_the_executed_version(
    aws: Callable[[str], Any], images: dict[str, str], make_function: Callable[..., str]
) -> None:
    lam, logs = aws("lambda"), aws("logs")
    name = make_function()
    v1_then_v2(lam, name, images)
    invoke(lam, name, Qualifier="1")
    invoke(lam, name)
    streams = logs.describe_log_streams(logGroupName=f"/aws/lambda/{name}")["logStreams"]
    stamp = time.strftime("%Y/%m/%d", time.gmtime())
    assert sorted(s["logStreamName"][:-32] for s in streams) == sorted(
        [f"{stamp}/[1]", f"{stamp}/[$LATEST]"]
    )
    found = ingested(
        lambda: logs.filter_log_events(
            logGroupName=f"/aws/lambda/{name}", filterPattern='"app line v1"'
        )["events"]
    )
    assert [e["logStreamName"][:-32] for e in found] == [f"{stamp}/[1]"]


def test_function_sees_lambda_environment_and_reaches_moto(
    aws: Callable[[str], Any], make_function: Callable[..., str]
) -> None:
    lam = aws("lambda")
    aws("s3").create_bucket(
        Bucket="bridge-test-env", CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"}
    )
    name = make_function(
        "app.environment",
        Timeout=7,
        MemorySize=384,
        Environment={"Variables": {"GREETING": "hello", "TZ": "Asia/Bangkok"}},
    )
    version = lam.publish_version(FunctionName=name)["Version"]
    response, body, _ = invoke(lam, name, Qualifier=version)
    assert "FunctionError" not in response, body
    env = body["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == version
    assert (env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], env["AWS_LAMBDA_FUNCTION_TIMEOUT"]) == (
        "384",
        "7",
    )
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "ap-southeast-1"
    assert (env["GREETING"], env["TZ"]) == ("hello", "Asia/Bangkok")
    assert env["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert "bridge-test-env" in body["buckets"]  # the handler's boto3 reached moto
    assert body["cwd"] == "/var/task"
    assert 5000 < body["remaining_ms"] <= 7000


def test_wrong_architecture_fails_like_lambda(
    aws: Callable[[str], Any], make_function: Callable[..., str]
) -> None:
    response, body, tail = invoke(aws("lambda"), make_function(Architectures=["arm64"]))
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Runtime.InvalidEntrypoint"
    assert "exec format error" in tail


def test_missing_image_is_a_clear_stack_error(
    aws: Callable[[str], Any], make_function: Callable[..., str]
) -> None:
    name = make_function(image="127.0.0.1:9/gangway-bridge-test/absent:nope")
    response, body, tail = invoke(aws("lambda"), name)
    assert response["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Rehearsal.StackError"
    assert "neither in the local engine nor pullable" in body["errorMessage"]
    assert "remedy:" in tail


def test_event_invoke_returns_at_once_and_still_logs(
    aws: Callable[[str], Any], make_function: Callable[..., str]
) -> None:
    name = make_function()
    response = aws("lambda").invoke(FunctionName=name, InvocationType="Event", Payload=b"{}")
    assert response["StatusCode"] == 202
    deadline = time.monotonic() + 15
    events: list[dict[str, Any]] = []
    while not events and time.monotonic() < deadline:
        time.sleep(0.2)
        events = aws("logs").filter_log_events(
            logGroupName=f"/aws/lambda/{name}", filterPattern='"app line v1"'
        )["events"] if _group_exists(aws, name) else []
    assert len(events) == 1


def _group_exists(aws: Callable[[str], Any], name: str) -> bool:
    groups = aws("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")
    return bool(groups["logGroups"])


# --------------------------------------------------------------------------- (e) filters


def test_filter_patterns_follow_aws_text_semantics(aws: Callable[[str], Any]) -> None:
    logs = aws("logs")
    group = f"/aws/lambda/bridge-test-filters-{uuid.uuid4().hex[:6]}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    lines = ["[ERROR] RuntimeError: boom", "Traceback (most recent call last):", "INFO all fine"]
    now = int(time.time() * 1000)
    logs.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(lines)],
    )

    def matched(pattern: str) -> list[str]:
        events = logs.filter_log_events(logGroupName=group, filterPattern=pattern)["events"]
        return [e["message"] for e in events]

    # A function's log group: the events are readable only after the ingestion delay.
    ingested(lambda: logs.filter_log_events(logGroupName=group)["events"], lambda e: len(e) == 3)
    assert matched("ERROR") == [lines[0]]
    assert matched('"RuntimeError: boom"') == [lines[0]]
    assert matched("INFO fine") == [lines[2]]
    assert matched("?ERROR ?Traceback") == lines[:2]  # moto matched all three
    assert matched("?WARN ?CRITICAL") == []
    assert matched("ERROR -boom") == []  # moto matched all three
    assert matched("error") == []  # case-sensitive, as on AWS
    assert matched("") == lines
    empty = f"{group}-empty"
    logs.create_log_group(logGroupName=empty)
    for unsupported in ("[level, message]", '{ $.level = "ERROR" }', '"unbalanced'):
        for target in (group, empty):  # refused even where no event would be read
            with pytest.raises(ClientError) as refused:
                logs.filter_log_events(logGroupName=target, filterPattern=unsupported)
            assert refused.value.response["Error"]["Code"] == "InvalidParameterException"


# --------------------------------------------------------------------------- registry


@pytest.fixture(scope="module")
def registry() -> str:
    try:
        httpx.get("http://127.0.0.1:5000/v2/", timeout=2, trust_env=False).raise_for_status()
    except httpx.HTTPError:
        pytest.skip("no registry at 127.0.0.1:5000 (run `gangway stack up`)")
    return "127.0.0.1:5000"


def test_image_is_pulled_from_the_registry_and_reported_by_digest(
    aws: Callable[[str], Any],
    engine: docker_sdk.DockerClient,
    image_builder: Callable[..., str],
    app_sources: dict[str, str],
    registry: str,
    make_function: Callable[..., str],
) -> None:
    nonce = uuid.uuid4().hex[:10]
    repository = f"{registry}/gangway-bridge-test"
    image_builder(f"{repository}:{nonce}", app_sources["v2"], f"LABEL nonce={nonce}\n")
    digest = ""
    for chunk in engine.images.push(repository, tag=nonce, stream=True, decode=True):
        assert "error" not in chunk, chunk
        digest = (chunk.get("aux") or {}).get("Digest", digest)
    assert digest.startswith("sha256:")
    engine.images.remove(f"{repository}:{nonce}", force=True)  # the bridge must pull it

    lam = aws("lambda")
    by_digest = make_function(image=f"{repository}@{digest}")
    by_tag = make_function(image=f"{repository}:{nonce}")
    for name in (by_digest, by_tag):
        function = lam.get_function(FunctionName=name)
        assert function["Configuration"]["CodeSha256"] == digest.removeprefix("sha256:")
        assert function["Code"]["ResolvedImageUri"] == f"{repository}@{digest}"
    assert invoke(lam, by_digest)[1] == {"v": 2}
    engine.images.remove(f"{repository}@{digest}", force=True)
    # Best effort: the registry runs with delete enabled; a leftover manifest is harmless.
    httpx.delete(f"http://{registry}/v2/gangway-bridge-test/manifests/{digest}", trust_env=False)
