"""The rehearsal bridge closes moto's Lambda fidelity gaps; each test fails on plain moto.

Everything goes through boto3 over HTTP to the bridge, which runs the function's own image
under the Lambda RIE.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
import uuid
from collections.abc import Iterator

import boto3
import docker as docker_sdk
import pytest

from rehearsal.base_image import BASE_IMAGE
from rehearsal.stack import moto_endpoint

pytestmark = pytest.mark.stack

HANDLERS = {
    "v1": "import logging\nlogging.getLogger().setLevel(logging.INFO)\n"
    'def handler(event, context):\n    logging.info("app line v1")\n    return {"v": 1}\n',
    "v2": 'def handler(event, context):\n    print("app line v2")\n    return {"v": 2}\n',
    "boom": 'def handler(event, context):\n    raise RuntimeError("boom")\n',
    "slow": "import time\n"
    'def handler(event, context):\n    time.sleep(5)\n    return {"late": True}\n',
}


def _image(client: docker_sdk.DockerClient, name: str, source: str) -> str:
    dockerfile = (
        f'FROM {BASE_IMAGE}\nCOPY app.py ${{LAMBDA_TASK_ROOT}}/app.py\nCMD ["app.handler"]\n'
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for filename, text in (("Dockerfile", dockerfile), ("app.py", source)):
            data = text.encode()
            info = tarfile.TarInfo(filename)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    tag = f"gangway-bridge-test/{name}:latest"
    client.images.build(fileobj=buffer, custom_context=True, tag=tag, rm=True)
    return tag


@pytest.fixture(scope="module")
def images(stack: object, docker: docker_sdk.DockerClient) -> dict[str, str]:
    return {name: _image(docker, name, source) for name, source in HANDLERS.items()}


@pytest.fixture(scope="module")
def aws(stack: object) -> dict[str, object]:
    session = boto3.session.Session()
    return {
        name: session.client(name, region_name="ap-southeast-1", endpoint_url=moto_endpoint())
        for name in ("lambda", "logs", "iam")
    }


@pytest.fixture(scope="module")
def role(aws: dict) -> str:
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"Service": "lambda.amazonaws.com"},
            }
        ],
    }
    name = f"bridge-test-{uuid.uuid4().hex[:8]}"
    created = aws["iam"].create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    return created["Role"]["Arn"]


@pytest.fixture
def function(aws: dict, images: dict[str, str], role: str) -> Iterator[str]:
    name = f"bridge-test-{uuid.uuid4().hex[:8]}"
    aws["lambda"].create_function(
        FunctionName=name,
        PackageType="Image",
        Code={"ImageUri": images["v1"]},
        Role=role,
        Timeout=2,
        MemorySize=256,
    )
    yield name
    aws["lambda"].delete_function(FunctionName=name)


def _invoke(lam, name: str, **kwargs) -> tuple[dict, object]:
    response = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail", **kwargs)
    return response, json.loads(response["Payload"].read())


def test_qualifier_and_published_versions_keep_their_own_image(
    aws: dict, images: dict[str, str], function: str
) -> None:
    lam = aws["lambda"]
    v1 = lam.publish_version(FunctionName=function)["Version"]
    lam.update_function_code(FunctionName=function, ImageUri=images["v2"])
    v2 = lam.publish_version(FunctionName=function)["Version"]
    lam.create_alias(FunctionName=function, Name="live", FunctionVersion=v1)

    assert lam.get_function(FunctionName=function, Qualifier=v1)["Code"]["ImageUri"] == images["v1"]
    assert lam.get_function(FunctionName=function, Qualifier=v2)["Code"]["ImageUri"] == images["v2"]
    response, payload = _invoke(lam, function, Qualifier=v1)
    assert payload == {"v": 1} and response["ExecutedVersion"] == v1
    response, payload = _invoke(lam, function, Qualifier="live")
    assert payload == {"v": 1} and response["ExecutedVersion"] == v1
    response, payload = _invoke(lam, f"{function}:live")
    assert payload == {"v": 1}
    response, payload = _invoke(lam, function)
    assert payload == {"v": 2} and response["ExecutedVersion"] == "$LATEST"


def test_alias_routing_weights_are_honoured(
    aws: dict, images: dict[str, str], function: str
) -> None:
    lam = aws["lambda"]
    v1 = lam.publish_version(FunctionName=function)["Version"]
    lam.update_function_code(FunctionName=function, ImageUri=images["v2"])
    v2 = lam.publish_version(FunctionName=function)["Version"]
    lam.create_alias(
        FunctionName=function,
        Name="live",
        FunctionVersion=v1,
        RoutingConfig={"AdditionalVersionWeights": {v2: 0.5}},
    )
    seen = {}
    for _ in range(16):
        response, payload = _invoke(lam, function, Qualifier="live")
        seen[response["ExecutedVersion"]] = payload["v"]
    # Each executed version ran its own image, and both were chosen (p(miss) = 2 * 0.5**16).
    assert seen == {v1: 1, v2: 2}


def test_error_sets_function_error_and_reaches_logs(
    aws: dict, images: dict[str, str], function: str
) -> None:
    lam = aws["lambda"]
    lam.update_function_code(FunctionName=function, ImageUri=images["boom"])
    version = lam.publish_version(FunctionName=function)["Version"]
    response, payload = _invoke(lam, function, Qualifier=version)
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "RuntimeError" and payload["errorMessage"] == "boom"
    tail = base64.b64decode(response["LogResult"]).decode()
    assert "REPORT RequestId" in tail
    # The emulator's own "(rapid)" lines would pass for application lines; AWS has none.
    assert "(rapid)" not in tail
    events = aws["logs"].filter_log_events(
        logGroupName=f"/aws/lambda/{function}", filterPattern="ERROR"
    )["events"]
    assert any("[ERROR] RuntimeError: boom" in e["message"] for e in events)
    assert all(f"[{version}]" in e["logStreamName"] for e in events)


def test_function_timeout_is_enforced(aws: dict, images: dict[str, str], function: str) -> None:
    lam = aws["lambda"]
    lam.update_function_code(FunctionName=function, ImageUri=images["slow"])
    response, payload = _invoke(lam, function)
    assert response.get("FunctionError")
    assert (
        "Task timed out after 2.00 seconds"
        in json.dumps(payload) + base64.b64decode(response["LogResult"]).decode()
    )


def test_application_log_lines_land_in_the_version_stream(
    aws: dict, images: dict[str, str], function: str
) -> None:
    lam = aws["lambda"]
    version = lam.publish_version(FunctionName=function)["Version"]
    _invoke(lam, function, Qualifier=version)
    streams = aws["logs"].describe_log_streams(logGroupName=f"/aws/lambda/{function}")
    names = [s["logStreamName"] for s in streams["logStreams"]]
    assert names and all(f"/[{version}]" in n for n in names)
    events = aws["logs"].filter_log_events(
        logGroupName=f"/aws/lambda/{function}", filterPattern='"app line v1"'
    )["events"]
    assert len(events) == 1
