"""The bridge's invokes behave like Lambda's execution environments (rehearsal/fidelity.py).

Warm environments per function version (warm_s), REPORT lines with real figures (text and
JSON log formats) and execution-role credentials evaluated by moto's IAM (execution_role),
each against the private bridge of conftest.py with per-function settings.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import docker as docker_sdk
import pytest
from botocore.exceptions import ClientError
from service_repo import make_service

from gangway.config import DeployConfig, load_config
from rehearsal import fidelity
from rehearsal.aws_seed import seed_environment

pytestmark = pytest.mark.stack

APP = '''\
import json
import os
import time
import uuid

import boto3
from botocore.exceptions import ClientError

ENVIRONMENT_ID = uuid.uuid4().hex  # once per execution environment (module init)
MARKER = "/tmp/gangway-fidelity-marker"


def ident(event, context):
    seen = os.path.exists(MARKER)
    with open(MARKER, "w") as out:
        out.write(ENVIRONMENT_ID)
    time.sleep(float(event.get("sleep", 0)))
    print("app line fidelity")
    return {"id": ENVIRONMENT_ID, "marker_seen": seen,
            "key": os.environ.get("AWS_ACCESS_KEY_ID", "")[:4]}


def alloc(event, context):
    block = b"\\x01" * (int(event["mb"]) * 1024 * 1024)
    return {"allocated": len(block)}


def put(event, context):
    try:
        boto3.client("s3").put_object(Bucket=event["bucket"], Key=event["key"], Body=b"report")
    except ClientError as exc:
        return {"error": exc.response["Error"]["Code"]}
    return {"ok": True}
'''

REPORT = re.compile(r"^REPORT RequestId: .*$", re.MULTILINE)
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Principal": {"Service": "lambda.amazonaws.com"},
        }
    ],
}


@pytest.fixture(scope="module")
def fidelity_image(image_builder: Callable[..., str]) -> str:
    """One image with every handler of this module."""
    return image_builder("gangway-bridge-test/fidelity:v1", APP)


@pytest.fixture
def prefix(bridge: str) -> Iterator[str]:
    """A function-name prefix of this test's own, for fidelity.override."""
    yield f"fid-{uuid.uuid4().hex[:8]}-"


Maker = Callable[..., str]


@pytest.fixture
def make_function(
    aws: Callable[[str], Any], fidelity_image: str, role: str, prefix: str
) -> Iterator[Maker]:
    """make(handler, memory=256, role_arn=None, **create_kwargs) -> function name."""
    made: list[str] = []
    lam = aws("lambda")

    def make(handler: str, memory: int = 256, role_arn: str | None = None, **kwargs: Any) -> str:
        name = f"{prefix}{handler}-{len(made)}"
        kwargs.setdefault("Timeout", 30)
        lam.create_function(
            FunctionName=name,
            PackageType="Image",
            Code={"ImageUri": fidelity_image},
            ImageConfig={"Command": [f"app.{handler}"]},
            Role=role_arn or role,
            MemorySize=memory,
            **kwargs,
        )
        lam.get_waiter("function_active_v2").wait(FunctionName=name)
        made.append(name)
        return name

    yield make
    for name in made:
        lam.delete_function(FunctionName=name)


def invoke(
    aws: Callable[[str], Any], name: str, event: dict[str, Any] | None = None, fails: bool = False
) -> tuple[dict[str, Any], str]:
    """(payload, log tail) of one synchronous invoke."""
    response = aws("lambda").invoke(
        FunctionName=name, Payload=json.dumps(event or {}).encode(), LogType="Tail"
    )
    assert ("FunctionError" in response) == fails, response["Payload"].read()
    tail = base64.b64decode(response["LogResult"]).decode()
    return json.loads(response["Payload"].read()), tail


def report(tail: str) -> str:
    found = REPORT.search(tail)
    assert found, tail
    return found.group(0)


def figure(line: str, field: str) -> float:
    found = re.search(rf"\t{field}: ([0-9.]+) (?:ms|MB)", line)
    assert found, f"{field} missing in {line!r}"
    return float(found.group(1))


def containers(engine: docker_sdk.DockerClient, name: str) -> list[Any]:
    return list(engine.containers.list(all=True, filters={"label": f"dev.gangway.function={name}"}))


def wait_until(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


QUIET = {"pending_s": 0.0, "update_s": 0.0}  # other behaviours are not under test here


def test_second_invoke_is_warm_in_the_same_environment(
    aws: Callable[[str], Any], make_function: Maker, prefix: str
) -> None:
    with fidelity.override(prefix, warm_s=30.0, **QUIET):
        name = make_function("ident")
        first, first_tail = invoke(aws, name)
        second, second_tail = invoke(aws, name)
    cold, warm = report(first_tail), report(second_tail)
    assert figure(cold, "Init Duration") > 0
    assert "Init Duration" not in warm
    assert second["id"] == first["id"] and second["marker_seen"] and not first["marker_seen"]


def test_concurrent_invokes_get_their_own_environment(
    aws: Callable[[str], Any], make_function: Maker, prefix: str, engine: docker_sdk.DockerClient
) -> None:
    results: list[dict[str, Any]] = []
    with fidelity.override(prefix, warm_s=30.0, **QUIET):
        name = make_function("ident")

        def call() -> None:
            results.append(invoke(aws, name, {"sleep": 2})[0])

        threads = [threading.Thread(target=call) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len({r["id"] for r in results}) == 2  # a busy environment is never shared
        assert len(containers(engine, name)) == 2  # both kept warm
        after, tail = invoke(aws, name)
    assert after["id"] in {r["id"] for r in results}
    assert "Init Duration" not in report(tail)


def test_idle_environment_is_reaped_after_warm_s(
    aws: Callable[[str], Any], make_function: Maker, prefix: str, engine: docker_sdk.DockerClient
) -> None:
    with fidelity.override(prefix, warm_s=1.0, **QUIET):
        name = make_function("ident")
        first, _ = invoke(aws, name)
        assert len(containers(engine, name)) == 1  # warm, idle
        assert wait_until(lambda: not containers(engine, name), 15.0)
        again, tail = invoke(aws, name)
    assert again["id"] != first["id"]
    assert figure(report(tail), "Init Duration") > 0


def test_changed_configuration_retires_the_warm_environment(
    aws: Callable[[str], Any], make_function: Maker, prefix: str, engine: docker_sdk.DockerClient
) -> None:
    with fidelity.override(prefix, warm_s=60.0, **QUIET):
        name = make_function("ident")
        first, _ = invoke(aws, name)
        old = {c.id for c in containers(engine, name)}
        aws("lambda").update_function_configuration(
            FunctionName=name, Environment={"Variables": {"RELEASE": "2"}}
        )
        aws("lambda").get_waiter("function_updated_v2").wait(FunctionName=name)
        assert wait_until(lambda: not old & {c.id for c in containers(engine, name)}, 10.0)
        again, tail = invoke(aws, name)
    assert again["id"] != first["id"] and "Init Duration" in report(tail)


def test_timeout_keeps_its_status_and_resets_the_environment(
    aws: Callable[[str], Any], make_function: Maker, prefix: str
) -> None:
    with fidelity.override(prefix, warm_s=30.0, **QUIET):
        text = make_function("ident", Timeout=1)
        structured = make_function("ident", Timeout=1, LoggingConfig={"LogFormat": "JSON"})
        timed_out, tail = invoke(aws, text, {"sleep": 3}, fails=True)
        _, json_tail = invoke(aws, structured, {"sleep": 3}, fails=True)
        after, after_tail = invoke(aws, text)
    line = report(tail)
    assert timed_out["errorType"] == "Sandbox.Timedout" and "\tStatus: timeout" in line
    assert figure(line, "Max Memory Used") > 0
    record = json.loads(json_tail.strip().splitlines()[-1])
    assert record["type"] == "platform.report" and record["record"]["status"] == "timeout"
    assert "Init Duration" in report(after_tail)  # Lambda resets a timed-out environment
    assert not after["marker_seen"]


def test_max_memory_used_is_the_containers_peak(
    aws: Callable[[str], Any], make_function: Maker, prefix: str
) -> None:
    with fidelity.override(prefix, warm_s=0.0, **QUIET):
        big = make_function("alloc", memory=512)
        small = make_function("ident", memory=512)
        _, big_tail = invoke(aws, big, {"mb": 200})
        _, small_tail = invoke(aws, small)
    big_used = figure(report(big_tail), "Max Memory Used")
    small_used = figure(report(small_tail), "Max Memory Used")
    print(f"max memory used: 200 MB handler {big_used} MB, small handler {small_used} MB")
    assert figure(report(big_tail), "Memory Size") == 512
    assert 200 <= big_used < 512
    assert small_used < 128  # far below Memory Size, unlike the RIE's own figure


def test_json_log_format_gives_platform_records(
    aws: Callable[[str], Any], make_function: Maker, prefix: str
) -> None:
    with fidelity.override(prefix, warm_s=30.0, **QUIET):
        name = make_function("ident", LoggingConfig={"LogFormat": "JSON"})
        config = aws("lambda").get_function_configuration(FunctionName=name)
        assert config["LoggingConfig"]["LogFormat"] == "JSON"
        _, cold_tail = invoke(aws, name)
        _, warm_tail = invoke(aws, name)
    assert "app line fidelity" in cold_tail.splitlines()  # application lines as they are
    records = [
        [json.loads(line) for line in tail.splitlines() if line.startswith('{"time"')]
        for tail in (cold_tail, warm_tail)
    ]
    for found in records:
        assert [r["type"] for r in found][-3:] == [
            "platform.start", "platform.runtimeDone", "platform.report"
        ]
        assert "REPORT RequestId" not in cold_tail + warm_tail
    cold, warm = records[0][-1]["record"], records[1][-1]["record"]
    assert cold["status"] == "success" and cold["metrics"]["memorySizeMB"] == 256
    assert set(cold["metrics"]) == {
        "durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB", "initDurationMs"
    }
    assert "initDurationMs" not in warm["metrics"]
    assert cold["requestId"] == records[0][-3]["record"]["requestId"]


def _role(aws: Callable[[str], Any], actions: list[str], bucket: str) -> str:
    name = f"fid-role-{uuid.uuid4().hex[:8]}"
    arn = str(
        aws("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))[
            "Role"
        ]["Arn"]
    )
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": actions, "Resource": f"arn:aws:s3:::{bucket}/*"}
        ],
    }
    aws("iam").put_role_policy(
        RoleName=name, PolicyName="bucket", PolicyDocument=json.dumps(policy)
    )
    return arn


@pytest.fixture
def bucket(aws: Callable[[str], Any]) -> str:
    name = f"fid-bucket-{uuid.uuid4().hex[:8]}"
    aws("s3").create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "ap-southeast-1"}
    )
    return name


def test_execution_role_without_put_object_is_denied(
    aws: Callable[[str], Any], make_function: Maker, prefix: str, bucket: str
) -> None:
    reader = _role(aws, ["s3:GetObject"], bucket)
    writer = _role(aws, ["s3:GetObject", "s3:PutObject"], bucket)
    with fidelity.override(prefix, warm_s=30.0, **QUIET):
        denied = make_function("put", role_arn=reader)
        allowed = make_function("put", role_arn=writer)
        refused, _ = invoke(aws, denied, {"bucket": bucket, "key": "a.pdf"})
        stored, _ = invoke(aws, allowed, {"bucket": bucket, "key": "b.pdf"})
        who, _ = invoke(aws, make_function("ident"))
    assert refused == {"error": "AccessDenied"}
    assert stored == {"ok": True}
    keys = [o["Key"] for o in aws("s3").list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["b.pdf"]
    assert who["key"] == "ASIA"  # a role session, not the stack's key


def test_switches_off_give_the_old_behaviour(
    aws: Callable[[str], Any],
    make_function: Maker,
    prefix: str,
    bucket: str,
    engine: docker_sdk.DockerClient,
) -> None:
    reader = _role(aws, ["s3:GetObject"], bucket)
    with fidelity.override(prefix, warm_s=0.0, execution_role=False, **QUIET):
        name = make_function("ident")
        first, first_tail = invoke(aws, name)
        assert not containers(engine, name)  # removed after the invoke, as before
        second, second_tail = invoke(aws, name)
        put = make_function("put", role_arn=reader)
        stored, _ = invoke(aws, put, {"bucket": bucket, "key": "c.pdf"})
    assert first["id"] != second["id"] and not second["marker_seen"]
    assert "Init Duration" in report(first_tail) and "Init Duration" in report(second_tail)
    assert first["key"] == "test" and stored == {"ok": True}  # the stack's key: allowed


# --------------------------------------------------------------------------- seeded roles
SECRETS = {
    "GANGWAY_DEV_DB_PASSWORD": "seed-test-db-password",
    "GANGWAY_DEV_TELEGRAM_TOKEN": "seed-test-telegram-token",
    "GANGWAY_DEV_LINE_SECRET": "seed-test-line-secret",
}


def _on_bridge(config: DeployConfig, bridge: str) -> DeployConfig:
    aws = config.environment.aws.model_copy(update={"endpoint_url": bridge})
    return config.model_copy(
        update={"environment": config.environment.model_copy(update={"aws": aws})}
    )


@pytest.fixture
def seed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The dev configurations' secrets and the stack's key, from the test."""
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def _role_session(aws: Callable[[str], Any], role_arn: str, bridge: str) -> boto3.Session:
    """A session of the role, as an invoke of a function with that role gets one."""
    found = aws("sts").assume_role(RoleArn=role_arn, RoleSessionName="seed-check")
    creds = found["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name="ap-southeast-1",
    )


def _code(call: Callable[[], Any]) -> str:
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"


def test_seeded_reference_role_stores_reports_and_nothing_more(
    aws: Callable[[str], Any],
    bridge: str,
    images: dict[str, str],
    make_function: Maker,
    prefix: str,
    seed_env: None,
) -> None:
    config = _on_bridge(load_config("dev"), bridge)
    seed_environment(config, images["v1"])
    worker = config.functions["report_worker"].name
    role_arn = aws("lambda").get_function_configuration(FunctionName=worker)["Role"]
    bucket = str(config.environment.bucket)
    session = _role_session(aws, role_arn, bridge)
    s3 = session.client("s3", endpoint_url=bridge)
    logs = session.client("logs", endpoint_url=bridge)
    assert _code(lambda: s3.put_object(Bucket=bucket, Key="reports/x.pdf", Body=b"%")) == "ok"
    assert _code(lambda: s3.get_object(Bucket=bucket, Key="reports/x.pdf")) == "AccessDenied"
    assert _code(lambda: s3.list_buckets()) == "AccessDenied"
    assert _code(lambda: logs.create_log_stream(
        logGroupName=f"/aws/lambda/{worker}", logStreamName="seed-check")) == "ok"
    assert _code(lambda: logs.create_log_stream(
        logGroupName="/aws/lambda/someone-else", logStreamName="x")) == "AccessDeniedException"
    # A handler run by the bridge with the seeded role stores its report, as report_worker does.
    with fidelity.override(prefix, **QUIET):
        stored, _ = invoke(aws, make_function("put", role_arn=role_arn),
                           {"bucket": bucket, "key": "reports/by-handler.pdf"})
    assert stored == {"ok": True}


def test_seeded_role_of_a_service_without_bucket_has_no_s3(
    aws: Callable[[str], Any],
    bridge: str,
    images: dict[str, str],
    bucket: str,
    seed_env: None,
    tmp_path: Path,
) -> None:
    project = make_service(tmp_path / "echo")
    config = _on_bridge(load_config("dev", project=project), bridge)
    assert config.environment.bucket is None
    seed_environment(config, images["v1"])
    fn = next(iter(config.functions.values())).name
    role_arn = aws("lambda").get_function_configuration(FunctionName=fn)["Role"]
    session = _role_session(aws, role_arn, bridge)
    s3 = session.client("s3", endpoint_url=bridge)
    assert _code(lambda: s3.put_object(Bucket=bucket, Key="a", Body=b"%")) == "AccessDenied"
    logs = session.client("logs", endpoint_url=bridge)
    assert _code(lambda: logs.create_log_stream(
        logGroupName=f"/aws/lambda/{fn}", logStreamName="seed-check")) == "ok"
