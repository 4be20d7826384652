"""Fixtures for the rehearsal tooling: one moto bridge per session, started as the stack does.

The bridge runs as `python -m rehearsal.moto_bridge` on a free port of its own, so these tests
neither need nor disturb the shared stack's bridge. Function images are built FROM the
rehearsal base image once per session (the layer cache makes a rebuild ~1 s).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import docker as docker_sdk
import httpx
import pytest

from gangway.config import gangway_home
from rehearsal import base_image
from rehearsal.lambda_waits import wait_active

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = "ap-southeast-1"
TEST_REPOSITORY = "gangway-bridge-test"

# One image holds every "v1" handler (ImageConfig.Command picks one); "v2" is the next release.
APP_V1 = '''\
import json
import logging
import os
import time
import uuid

import boto3

logging.getLogger().setLevel(logging.INFO)


def handler(event, context):
    print("app line v1")
    return {"v": 1}


def boom(event, context):
    raise RuntimeError("boom")


def slow(event, context):
    time.sleep(5)
    return {"late": True}


def returns_error_shape(event, context):
    # A successful invoke whose result merely looks like an error document.
    return {"errorType": "NotAnError", "errorMessage": "just data"}


def environment(event, context):
    names = [
        "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_TIMEOUT", "AWS_REGION",
        "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "GREETING", "TZ",
    ]
    buckets = [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    return {"env": {n: os.environ.get(n) for n in names}, "buckets": buckets,
            "cwd": os.getcwd(), "remaining_ms": context.get_remaining_time_in_millis()}
'''

APP_V2 = '''\
def handler(event, context):
    print("app line v2")
    return {"v": 2}
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rie_path() -> Path | None:
    candidates = [base_image.rie_host_path(), Path(os.environ.get("GANGWAY_RIE", "/nonexistent"))]
    return next((p for p in candidates if p.is_file()), None)


@pytest.fixture(scope="session")
def engine() -> Iterator[docker_sdk.DockerClient]:
    """A Docker SDK client; the tests need the engine and the rehearsal base image."""
    try:
        client = docker_sdk.from_env(timeout=300)
        client.images.get(base_image.BASE_IMAGE)
    except docker_sdk.errors.ImageNotFound:
        pytest.skip(f"{base_image.BASE_IMAGE} is not built (run `gangway stack up`)")
    except docker_sdk.errors.DockerException as exc:
        pytest.skip(f"no Docker engine: {exc}")
    yield client
    client.close()


def build_image(client: docker_sdk.DockerClient, tag: str, app: str, extra: str = "") -> str:
    """Build FROM the base image with app.py in /var/task; returns the tag."""
    dockerfile = (
        f"FROM {base_image.BASE_IMAGE}\nCOPY app.py /var/task/app.py\n"
        f'CMD ["app.handler"]\n{extra}'
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in (("Dockerfile", dockerfile), ("app.py", app)):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0  # identical context -> cached layers
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    client.images.build(fileobj=buffer, custom_context=True, tag=tag, rm=True)
    return tag


@pytest.fixture(scope="session")
def image_builder(engine: docker_sdk.DockerClient) -> Callable[..., str]:
    """build(tag, app_source, extra_dockerfile_lines="") -> tag, on the session's engine."""
    return lambda tag, app, extra="": build_image(engine, tag, app, extra)


@pytest.fixture(scope="session")
def app_sources() -> dict[str, str]:
    """The handler module of each test release."""
    return {"v1": APP_V1, "v2": APP_V2}


@pytest.fixture(scope="session")
def images(engine: docker_sdk.DockerClient) -> dict[str, str]:
    """The two test images, by release: {"v1": tag, "v2": tag}."""
    return {
        "v1": build_image(engine, f"{TEST_REPOSITORY}/app:v1", APP_V1),
        "v2": build_image(engine, f"{TEST_REPOSITORY}/app:v2", APP_V2),
    }


@pytest.fixture(scope="session")
def bridge_home() -> Path:
    """The GANGWAY_HOME the bridge reads its fidelity settings from (rehearsal.fidelity): this
    process's, so that ``fidelity.override(prefix, home=bridge_home, ...)`` reaches the bridge."""
    return gangway_home()


@pytest.fixture(scope="session")
def bridge(
    engine: docker_sdk.DockerClient, tmp_path_factory: pytest.TempPathFactory, bridge_home: Path
) -> Iterator[str]:
    """A moto bridge subprocess on a free port; yields its endpoint, then stops it by SIGTERM."""
    rie = _rie_path()
    if rie is None:
        pytest.skip("no aws-lambda-rie binary (run `gangway stack up`, or set GANGWAY_RIE)")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("bridge") / "bridge.log"
    # The bridge reads fidelity.json (fidelity.override in a test) from the test's GANGWAY_HOME.
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "GANGWAY_HOME": str(bridge_home),  # fixed at start: a test may point its own elsewhere
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "rehearsal.moto_bridge", "--host", "127.0.0.1",
             "--port", str(port), "--rie", str(rie)],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{endpoint}/moto-api/", timeout=1, trust_env=False).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the bridge did not come up:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.1)
    yield endpoint
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("the bridge did not exit on SIGTERM within 15 s")
    assert code == 0, f"the bridge exited {code} on SIGTERM:\n{log_path.read_text()[-2000:]}"


@pytest.fixture(scope="session")
def aws(bridge: str) -> Callable[[str], Any]:
    """boto3 clients for the bridge: aws("lambda"), aws("logs"), ..."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = session.client(service, endpoint_url=bridge)
        return clients[service]

    return client


ROLE_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "sts:AssumeRole",
            "Principal": {"Service": "lambda.amazonaws.com"},
        }
    ],
}


# Invokes run with their execution role's credentials (fidelity execution_role): the test
# handlers read S3 (list_buckets) and nothing else.
ROLE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": ["s3:ListAllMyBuckets"], "Resource": "*"}],
}


@pytest.fixture(scope="session")
def role(aws: Callable[[str], Any]) -> str:
    """An execution role for the test functions (allowed to list buckets)."""
    name = f"bridge-test-{uuid.uuid4().hex[:8]}"
    created = aws("iam").create_role(
        RoleName=name, AssumeRolePolicyDocument=json.dumps(ROLE_TRUST)
    )
    aws("iam").put_role_policy(
        RoleName=name, PolicyName="test-handlers", PolicyDocument=json.dumps(ROLE_POLICY)
    )
    return str(created["Role"]["Arn"])


@pytest.fixture(scope="module")
def function(aws: Callable[[str], Any], images: dict[str, str], role: str) -> Iterator[str]:
    """One Image function (v1 image, app.handler) with alias live → version 1."""
    name = f"bridge-test-{uuid.uuid4().hex[:8]}"
    lam = aws("lambda")
    lam.create_function(
        FunctionName=name,
        PackageType="Image",
        Code={"ImageUri": images["v1"]},
        ImageConfig={"Command": ["app.handler"]},
        Role=role,
        Timeout=10,
        MemorySize=256,
    )
    wait_active(lam, name)  # Pending first, as on AWS: publish_version would be refused
    lam.publish_version(FunctionName=name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    yield name
    lam.delete_function(FunctionName=name)
