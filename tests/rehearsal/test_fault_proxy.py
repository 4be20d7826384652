"""The fault proxy against a real moto bridge: transparent when idle, AWS-shaped when throttling,
a real refused/reset connection when down.

Everything goes through boto3 (or raw HTTP for the wire shapes) to the session's private bridge
(conftest.py), so the shared stack is neither needed nor disturbed.
"""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from rehearsal.fault_proxy import LAMBDA_THROTTLE_BODY, FaultProxy, classify
from rehearsal.lambda_waits import wait_updated

pytestmark = pytest.mark.stack

NO_RETRIES = BotoConfig(retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture
def proxy(bridge: str) -> Iterator[FaultProxy]:
    """A proxy in front of the session's bridge."""
    with FaultProxy(upstream=bridge) as running:
        yield running


def through(proxy: FaultProxy, service: str, config: BotoConfig | None = None) -> Any:
    """A boto3 client whose endpoint is the proxy."""
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="ap-southeast-1"
    ).client(service, endpoint_url=proxy.url, config=config)


def wait_until(condition: Callable[[], bool], limit_s: float = 30.0) -> None:
    """Poll condition until it holds (a bound against hanging, not an assertion on time)."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.05)


# ---------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("method", "target", "headers", "kind"),
    [
        ("PUT", "/2015-03-31/functions/f/code", {}, "lambda:UpdateFunctionCode"),
        ("POST", "/2015-03-31/functions/f/invocations", {}, "lambda:Invoke"),
        ("GET", "/2015-03-31/functions/f/aliases/live", {}, "lambda:GetAlias"),
        ("PUT", "/2015-03-31/functions/f/aliases/live", {}, "lambda:UpdateAlias"),
        ("POST", "/2015-03-31/functions/f/versions", {}, "lambda:PublishVersion"),
        ("GET", "/2015-03-31/functions/f/versions?Marker=x", {}, "lambda:ListVersionsByFunction"),
        ("GET", "/2015-03-31/functions/f?Qualifier=3", {}, "lambda:GetFunction"),
        ("GET", "/2015-03-31/functions/f/configuration", {}, "lambda:GetFunctionConfiguration"),
        ("POST", "/", {"x-amz-target": "Logs_20140328.FilterLogEvents"}, "logs:FilterLogEvents"),
        (
            "GET",
            "/bucket/key",
            {"authorization": "AWS4-HMAC-SHA256 Credential=AK/20250101/ap-southeast-1/s3/aws4_"},
            "s3:GET",
        ),
    ],
)
def test_requests_are_classified_by_path_target_or_scope(
    method: str, target: str, headers: dict[str, str], kind: str
) -> None:
    assert classify(method, target, headers).kind == kind


# ------------------------------------------------------------------------ pass-through


def test_boto3_and_invoke_pass_through_unchanged_on_kept_alive_connections(
    proxy: FaultProxy, aws: Callable[[str], Any], function: str
) -> None:
    direct, proxied = aws("lambda"), through(proxy, "lambda")
    assert proxied.get_alias(FunctionName=function, Name="live")["FunctionVersion"] == "1"
    assert (
        proxied.get_function(FunctionName=function)["Configuration"]["CodeSha256"]
        == direct.get_function(FunctionName=function)["Configuration"]["CodeSha256"]
    )
    for _ in range(3):
        response = proxied.invoke(FunctionName=function, Qualifier="live", LogType="Tail")
        assert json.loads(response["Payload"].read()) == {"v": 1}
        assert response["ExecutedVersion"] == "1"
        assert "app line v1" in base64.b64decode(response["LogResult"]).decode()
    counts = proxy.counts("forwarded")
    assert counts["lambda:Invoke"] == 3 and counts["lambda:GetAlias"] == 1
    assert not proxy.counts("failed") and not proxy.counts("throttled")
    # Five requests, one client connection: keep-alive survives the proxy.
    assert proxy.accepted == 1


def test_large_bodies_stream_both_ways_with_expect_continue(
    proxy: FaultProxy, aws: Callable[[str], Any]
) -> None:
    bucket = f"proxy-test-{uuid.uuid4().hex[:8]}"
    aws("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"}
    )
    s3 = through(proxy, "s3")
    body = bytes(range(256)) * (8 * 1024 * 4)  # 8 MiB: boto3 sends Expect: 100-continue
    s3.put_object(Bucket=bucket, Key="big", Body=body)
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == body
    assert proxy.counts("forwarded") == {"s3:PUT": 1, "s3:GET": 1}
    aws("s3").delete_object(Bucket=bucket, Key="big")
    aws("s3").delete_bucket(Bucket=bucket)


# --------------------------------------------------------------------------- throttling


def test_lambda_throttle_has_aws_shape_and_never_reaches_upstream(
    proxy: FaultProxy, aws: Callable[[str], Any], function: str
) -> None:
    proxy.throttle(1, match="lambda:CreateAlias")
    response = httpx.post(
        f"{proxy.url}/2015-03-31/functions/{function}/aliases",
        json={"Name": "throttled", "FunctionVersion": "1"},
        trust_env=False,
    )
    assert response.status_code == 429
    assert response.headers["x-amzn-ErrorType"] == "TooManyRequestsException"
    assert response.json() == LAMBDA_THROTTLE_BODY
    aliases = aws("lambda").list_aliases(FunctionName=function)["Aliases"]
    assert [a["Name"] for a in aliases] == ["live"]  # the throttled create never happened
    assert proxy.counts("throttled") == {"lambda:CreateAlias": 1}
    assert not proxy.counts("forwarded")


def test_boto3_retries_a_short_lambda_burst_and_reports_a_long_one(
    proxy: FaultProxy, function: str
) -> None:
    lam = through(proxy, "lambda", BotoConfig(retries={"mode": "standard", "max_attempts": 3}))
    proxy.throttle(2, match="lambda:GetAlias")
    response = lam.get_alias(FunctionName=function, Name="live")
    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert proxy.counts() == {"lambda:GetAlias": 3}

    proxy.throttle(100, match="lambda:GetAlias")
    with pytest.raises(ClientError) as err:
        lam.get_alias(FunctionName=function, Name="live")
    assert err.value.response["Error"]["Code"] == "TooManyRequestsException"
    # botocore's max_attempts counts retries: 3 means 4 requests on the wire.
    assert err.value.response["ResponseMetadata"]["RetryAttempts"] == 3
    assert proxy.counts("throttled")["lambda:GetAlias"] == 2 + 4
    proxy.clear()
    assert lam.get_alias(FunctionName=function, Name="live")["FunctionVersion"] == "1"


def test_json_protocol_throttle_is_a_400_throttling_exception(
    proxy: FaultProxy, aws: Callable[[str], Any]
) -> None:
    group = f"/proxy-test/{uuid.uuid4().hex[:8]}"
    aws("logs").create_log_group(logGroupName=group)
    logs = through(proxy, "logs", NO_RETRIES)
    proxy.throttle(1, match="logs:FilterLogEvents")
    with pytest.raises(ClientError) as err:
        logs.filter_log_events(logGroupName=group)
    assert err.value.response["Error"]["Code"] == "ThrottlingException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert logs.filter_log_events(logGroupName=group)["events"] == []
    assert proxy.counts("throttled") == {"logs:FilterLogEvents": 1}
    aws("logs").delete_log_group(logGroupName=group)


# ------------------------------------------------------------------------------ outages


def test_down_refuses_new_connections_resets_open_ones_and_up_reopens_the_port(
    proxy: FaultProxy, function: str
) -> None:
    port = proxy.port
    # A request whose body never comes: its connection is open inside the proxy.
    stuck = socket.create_connection(("127.0.0.1", port))
    stuck.sendall(
        f"PUT /2015-03-31/functions/{function}/code HTTP/1.1\r\nHost: x\r\n"
        "Content-Length: 10\r\n\r\n".encode()
    )
    wait_until(lambda: proxy.accepted == 1)
    proxy.down()
    with pytest.raises(ConnectionResetError):
        stuck.recv(1024)  # an RST, not an orderly close
    stuck.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    lam = through(proxy, "lambda", NO_RETRIES)
    with pytest.raises(EndpointConnectionError):
        lam.get_alias(FunctionName=function, Name="live")

    proxy.up()
    assert proxy.port == port
    assert lam.get_alias(FunctionName=function, Name="live")["FunctionVersion"] == "1"
    assert [s.action for s in proxy.outages()] == ["down", "up"]


def test_down_when_starts_the_outage_at_the_matching_request_and_ends_it_later(
    proxy: FaultProxy, function: str
) -> None:
    lam = through(proxy, "lambda", NO_RETRIES)
    proxy.down_when("lambda:UpdateAlias", up_after=1.0)
    assert lam.get_alias(FunctionName=function, Name="live")["FunctionVersion"] == "1"
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        lam.update_alias(FunctionName=function, Name="live", FunctionVersion="1")
    [reset] = proxy.seen(action="reset")
    assert reset.kind == "lambda:UpdateAlias"
    assert not proxy.is_up
    wait_until(lambda: proxy.is_up)
    assert lam.update_alias(FunctionName=function, Name="live", FunctionVersion="1")
    edges = proxy.outages()
    assert [s.action for s in edges] == ["down", "up"]
    # Ordering, not timing: the reset request came before the outage, the retry after it.
    [forwarded] = proxy.seen("lambda:UpdateAlias", action="forwarded")
    assert reset.seq < edges[0].seq < edges[1].seq < forwarded.seq


def test_before_forward_runs_the_hook_first_then_forwards_the_request(
    proxy: FaultProxy, aws: Callable[[str], Any], function: str
) -> None:
    lam = through(proxy, "lambda", NO_RETRIES)
    direct = aws("lambda")
    mark = f"another client {uuid.uuid4().hex[:8]}"
    seen: list[str] = []

    def other_client(request: Any) -> None:
        # Straight to the upstream while the proxied request waits: its answer shows the write.
        seen.append(request.kind)
        direct.update_function_configuration(FunctionName=function, Description=mark)

    proxy.before_forward("lambda:GetFunctionConfiguration", other_client)
    try:
        read = lam.get_function_configuration(FunctionName=function)
        again = lam.get_function_configuration(FunctionName=function)
    finally:
        wait_updated(direct, function)  # the next test's writes would be refused meanwhile
    assert seen == ["lambda:GetFunctionConfiguration"], "once, for the first match only"
    assert read["Description"] == again["Description"] == mark
    assert proxy.counts("forwarded") == {"lambda:GetFunctionConfiguration": 2}
    assert not proxy.hook_errors


def test_a_failing_hook_is_kept_and_the_request_still_forwarded(
    proxy: FaultProxy, function: str
) -> None:
    lam = through(proxy, "lambda", NO_RETRIES)

    def broken(_request: Any) -> None:
        raise RuntimeError("hook broke")

    proxy.before_forward("lambda:GetAlias", broken)
    assert lam.get_alias(FunctionName=function, Name="live")["FunctionVersion"] == "1"
    assert [str(e) for e in proxy.hook_errors] == ["hook broke"]
