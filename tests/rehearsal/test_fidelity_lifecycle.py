"""The bridge behaves like Lambda in time: Pending, InProgress, conflicts, stale alias reads,
late log events; and with every switch at 0 it is the old, instant rehearsal.

Each test sets its own values for the functions it creates (``fidelity.override`` on this
module's name prefix), through boto3 over HTTP to the private bridge of conftest.py. The
windows are a few seconds, far longer than the calls made inside them.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from rehearsal import fidelity
from rehearsal.lambda_waits import wait_active, wait_updated

pytestmark = pytest.mark.stack

PREFIX = "lifecycle-test-"
CONFLICT = "ResourceConflictException"
PENDING = (
    "The operation cannot be performed at this time. "
    "The function is currently in the following state: Pending"
)
UPDATING = "The operation cannot be performed at this time. An update is in progress for resource: "
CREATING = ("The function is being created.", "Creating")
INSTANT = {"pending_s": 0.0, "update_s": 0.0, "log_delay_s": 0.0, "log_jitter_s": 0.0}


@pytest.fixture
def settings(bridge_home: Path) -> Iterator[Callable[..., None]]:
    """settings(**fields): the fidelity settings of this module's functions, until the test ends."""
    stack: list[Any] = []

    def apply(**changes: Any) -> None:
        block = fidelity.override(PREFIX, home=bridge_home, **changes)
        block.__enter__()
        stack.append(block)

    yield apply
    for block in reversed(stack):
        block.__exit__(None, None, None)


@pytest.fixture
def make_function(
    aws: Callable[[str], Any], images: dict[str, str], role: str
) -> Iterator[Callable[[], str]]:
    """Create Image functions (v1 image, app.handler) under PREFIX; deleted after the test."""
    names: list[str] = []

    def make() -> str:
        name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
        aws("lambda").create_function(
            FunctionName=name,
            PackageType="Image",
            Code={"ImageUri": images["v1"]},
            ImageConfig={"Command": ["app.handler"]},
            Role=role,
            Timeout=10,
            MemorySize=256,
        )
        names.append(name)
        return name

    yield make
    for name in names:
        aws("lambda").delete_function(FunctionName=name)


def conflict(call: Callable[[], Any]) -> tuple[int, str, str, str]:
    """Run a call that must be refused: (HTTP status, Error.Code, Error.Message, ErrorType)."""
    with pytest.raises(ClientError) as refused:
        call()
    response = refused.value.response
    headers = response["ResponseMetadata"]["HTTPHeaders"]
    return (
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Code"],
        response["Error"]["Message"],
        headers.get("x-amzn-errortype", ""),
    )


def run(lam: Any, name: str, **kwargs: Any) -> tuple[Any, dict[str, Any], str]:
    """Invoke with the log tail: (response, decoded payload, decoded tail)."""
    response = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail", **kwargs)
    body = json.loads(response["Payload"].read())
    return response, body, base64.b64decode(response.get("LogResult", "")).decode()


def status(conf: dict[str, Any]) -> tuple[str, str]:
    """(State, LastUpdateStatus) of a configuration document."""
    return conf.get("State", ""), conf.get("LastUpdateStatus", "")


def test_create_is_pending_then_active(
    aws: Callable[[str], Any], images: dict[str, str], make_function: Callable[[], str],
    settings: Callable[..., None],
) -> None:
    settings(**INSTANT | {"pending_s": 4.0})
    lam = aws("lambda")
    name = make_function()

    conf = lam.get_function(FunctionName=name)["Configuration"]
    assert status(conf) == ("Pending", "InProgress")
    assert (conf["StateReason"], conf["StateReasonCode"]) == CREATING
    refused = [
        conflict(lambda: lam.invoke(FunctionName=name, Payload=b"{}")),
        conflict(lambda: lam.publish_version(FunctionName=name)),
        conflict(lambda: lam.update_function_code(FunctionName=name, ImageUri=images["v2"])),
        conflict(lambda: lam.update_function_configuration(FunctionName=name, Timeout=11)),
    ]
    assert refused == [(409, CONFLICT, PENDING, CONFLICT)] * 4

    wait_active(lam, name)  # botocore's function_active_v2 against the bridge
    conf = lam.get_function_configuration(FunctionName=name)
    assert status(conf) == ("Active", "Successful")
    assert "StateReason" not in conf
    assert run(lam, name)[1] == {"v": 1}
    assert lam.publish_version(FunctionName=name)["Version"] == "1"


def test_update_is_in_progress_then_successful_and_refuses_a_second_update(
    aws: Callable[[str], Any], images: dict[str, str], make_function: Callable[[], str],
    settings: Callable[..., None],
) -> None:
    settings(**INSTANT | {"update_s": 4.0})
    lam = aws("lambda")
    name = make_function()
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]

    updated = lam.update_function_code(FunctionName=name, ImageUri=images["v2"])
    assert status(updated) == ("Active", "InProgress")
    assert (updated["LastUpdateStatusReason"], updated["LastUpdateStatusReasonCode"]) == CREATING
    assert status(lam.get_function_configuration(FunctionName=name)) == ("Active", "InProgress")
    second = conflict(lambda: lam.update_function_configuration(FunctionName=name, Timeout=11))
    assert second == (409, CONFLICT, UPDATING + arn, CONFLICT)
    again = conflict(lambda: lam.update_function_code(FunctionName=name, ImageUri=images["v1"]))
    assert again[:2] == (409, CONFLICT)
    # Reads show the new code at once; invokes of $LATEST still run the previous one.
    assert lam.get_function(FunctionName=name)["Code"]["ImageUri"] == images["v2"]
    assert run(lam, name)[1] == {"v": 1}

    wait_updated(lam, name)  # botocore's function_updated_v2 against the bridge
    assert status(lam.get_function(FunctionName=name)["Configuration"]) == ("Active", "Successful")
    assert run(lam, name)[1] == {"v": 2}
    accepted = lam.update_function_configuration(FunctionName=name, Timeout=11)
    assert (accepted["Timeout"], accepted["LastUpdateStatus"]) == (11, "InProgress")
    wait_updated(lam, name)


def test_publish_during_an_update_is_refused(
    aws: Callable[[str], Any], images: dict[str, str], make_function: Callable[[], str],
    settings: Callable[..., None],
) -> None:
    settings(**INSTANT | {"update_s": 4.0})
    lam = aws("lambda")
    name = make_function()
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    new_sha = lam.update_function_code(FunctionName=name, ImageUri=images["v2"])["CodeSha256"]

    refused = conflict(lambda: lam.publish_version(FunctionName=name, CodeSha256=new_sha))
    assert refused == (409, CONFLICT, UPDATING + arn, CONFLICT)
    assert lam.list_versions_by_function(FunctionName=name)["Versions"][-1]["Version"] == "$LATEST"

    wait_updated(lam, name)
    published = lam.publish_version(FunctionName=name, CodeSha256=new_sha)
    assert (published["Version"], published["CodeSha256"]) == ("1", new_sha)


def test_alias_read_is_stale_inside_the_window_and_fresh_after(
    aws: Callable[[str], Any], images: dict[str, str], make_function: Callable[[], str],
    settings: Callable[..., None],
) -> None:
    settings(**INSTANT | {"stale_alias_s": 4.0, "stale_alias_p": 1.0})
    lam = aws("lambda")
    name = make_function()
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    lam.update_function_code(FunctionName=name, ImageUri=images["v2"])
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    weights = {"AdditionalVersionWeights": {"2": 0.5}}
    before = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1",
                              RoutingConfig=weights)
    assert lam.get_alias(FunctionName=name, Name="live")["RevisionId"] == before["RevisionId"]

    moved = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                             RoutingConfig={"AdditionalVersionWeights": {}})
    assert moved["FunctionVersion"] == "2"  # the write's own answer is the new value
    read = lam.get_alias(FunctionName=name, Name="live")
    assert (read["FunctionVersion"], read["RoutingConfig"], read["RevisionId"]) == (
        "1", weights, before["RevisionId"]
    )
    listed = lam.list_aliases(FunctionName=name)["Aliases"]
    assert [(a["Name"], a["FunctionVersion"]) for a in listed] == [("live", "1")]
    # Routing is not stale: every invoke through the alias runs version 2.
    assert {run(lam, name, Qualifier="live")[0]["ExecutedVersion"] for _ in range(3)} == {"2"}

    deadline = time.monotonic() + 20
    while lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"] != "2":
        assert time.monotonic() < deadline, "the alias read never became fresh"
        time.sleep(0.2)
    fresh = lam.get_alias(FunctionName=name, Name="live")
    assert (fresh["RevisionId"], fresh.get("RoutingConfig")) == (
        moved["RevisionId"], moved.get("RoutingConfig")
    )


def _request_events(logs: Any, name: str, request_id: str) -> list[dict[str, Any]]:
    return logs.filter_log_events(
        logGroupName=f"/aws/lambda/{name}", filterPattern=f'"{request_id}"'
    )["events"]


def test_log_event_is_invisible_before_the_ingestion_delay_and_visible_after(
    aws: Callable[[str], Any], make_function: Callable[[], str], settings: Callable[..., None]
) -> None:
    settings(**INSTANT | {"log_delay_s": 4.0})
    lam, logs = aws("lambda"), aws("logs")
    name = make_function()
    response, _, tail = run(lam, name)
    request_id = response["ResponseMetadata"]["RequestId"]
    assert f"REPORT RequestId: {request_id}" in tail  # written: the invoke's own tail has it

    assert _request_events(logs, name, request_id) == []
    [stream] = logs.describe_log_streams(logGroupName=f"/aws/lambda/{name}")["logStreams"]
    assert "lastIngestionTime" not in stream and "lastEventTimestamp" not in stream
    unread = logs.get_log_events(
        logGroupName=f"/aws/lambda/{name}", logStreamName=stream["logStreamName"]
    )
    assert unread["events"] == []

    deadline = time.monotonic() + 20
    while not (events := _request_events(logs, name, request_id)):
        assert time.monotonic() < deadline, "the invoke's log lines never became visible"
        time.sleep(0.2)
    kinds = {e["message"].split(" ", 1)[0] for e in events}
    assert {"START", "END", "REPORT"} <= kinds
    # Ingested (readable) no earlier than the delay after the event's own timestamp.
    assert all(e["ingestionTime"] >= e["timestamp"] + 3900 for e in events)
    [stream] = logs.describe_log_streams(logGroupName=f"/aws/lambda/{name}")["logStreams"]
    assert stream["lastIngestionTime"] >= max(e["ingestionTime"] for e in events)
    read = logs.get_log_events(
        logGroupName=f"/aws/lambda/{name}", logStreamName=stream["logStreamName"]
    )
    assert any(request_id in e["message"] for e in read["events"])


def test_every_switch_at_zero_is_the_old_instant_rehearsal(
    aws: Callable[[str], Any], images: dict[str, str], make_function: Callable[[], str],
    settings: Callable[..., None],
) -> None:
    settings(**asdict(fidelity.OFF))
    lam, logs = aws("lambda"), aws("logs")
    name = make_function()

    # No wait anywhere: each call is accepted and every read is final at once.
    assert status(lam.get_function(FunctionName=name)["Configuration"]) == ("Active", "Successful")
    assert lam.publish_version(FunctionName=name)["Version"] == "1"
    assert status(lam.update_function_code(FunctionName=name, ImageUri=images["v2"])) == (
        "Active", "Successful"
    )
    lam.update_function_configuration(FunctionName=name, Timeout=11)
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    moved = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
    for _ in range(5):
        assert lam.get_alias(FunctionName=name, Name="live")["RevisionId"] == moved["RevisionId"]
    response, body, _ = run(lam, name)
    assert body == {"v": 2}
    request_id = response["ResponseMetadata"]["RequestId"]
    kinds = {e["message"].split(" ", 1)[0] for e in _request_events(logs, name, request_id)}
    assert {"START", "END", "REPORT"} <= kinds
