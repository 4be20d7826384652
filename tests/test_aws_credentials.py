"""Per-environment AWS credentials (tasks/aws.py): a role assumed through moto's STS on the
stack's bridge, whose policies the bridge evaluates for the session's keys, and a named
profile of the shared config file."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from gangway.config import DeployConfig, apply_env_file
from gangway.errors import AwsError
from rehearsal import stack as rehearsal_stack
from tasks.aws import aws_error, client

pytestmark = pytest.mark.stack

ACCOUNT = "123456789012"


@pytest.fixture(scope="session")
def stack() -> object:
    """The shared stack as it runs: only read (the moto bridge is all these tests need)."""
    status = rehearsal_stack.status()
    if not status.component("moto").ok or not status.component("aws-seed").ok:
        pytest.skip("the shared stack's moto bridge is not running and seeded")
    apply_env_file()
    return status


@pytest.fixture
def iam(dev_config: DeployConfig) -> object:
    aws = dev_config.environment.aws
    return boto3.client("iam", region_name=aws.region, endpoint_url=aws.endpoint_url)


def with_aws(config: DeployConfig, **changes: str) -> DeployConfig:
    aws = config.environment.aws.model_copy(update=changes)
    environment = config.environment.model_copy(update={"aws": aws})
    return config.model_copy(update={"environment": environment})


@pytest.fixture
def reader_role(iam: object) -> Iterator[str]:
    """A role that may read Lambda functions (GetFunction) and nothing else."""
    name = f"gangway-test-reader-{uuid.uuid4().hex[:8]}"
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
        "Action": "sts:AssumeRole"}]}
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
        "Arn"
    ]
    iam.put_role_policy(RoleName=name, PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["lambda:GetFunction"], "Resource": "*"}],
    }))
    yield arn
    iam.delete_role_policy(RoleName=name, PolicyName="read")
    iam.delete_role(RoleName=name)


@pytest.fixture
def user_key(iam: object) -> Iterator[tuple[str, str, str]]:
    """An IAM user allowed lambda:GetFunction only (not sts:AssumeRole): (arn, key, secret)."""
    name = f"gangway-test-user-{uuid.uuid4().hex[:8]}"
    arn = iam.create_user(UserName=name)["User"]["Arn"]
    iam.put_user_policy(UserName=name, PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["lambda:GetFunction"], "Resource": "*"}],
    }))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    yield arn, key["AccessKeyId"], key["SecretAccessKey"]
    iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    iam.delete_user_policy(UserName=name, PolicyName="read")
    iam.delete_user(UserName=name)


def test_a_role_assumed_through_sts_reads_and_is_refused_what_it_may_not(
    dev_config: DeployConfig, reader_role: str
) -> None:
    config = with_aws(dev_config, role_arn=reader_role, session_name="gangway-test")
    role_name = reader_role.rsplit("/", 1)[1]
    who = client(config, "sts").get_caller_identity()["Arn"]
    assert who == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/gangway-test"
    fn = next(iter(dev_config.functions.values())).name
    lam = client(config, "lambda")
    assert lam is client(config, "lambda")  # one session and client per environment identity
    assert lam is not client(dev_config, "lambda")
    assert lam.get_function(FunctionName=fn)["Configuration"]["FunctionName"] == fn
    with pytest.raises(ClientError) as refused:
        lam.list_aliases(FunctionName=fn)
    error = aws_error(refused.value, "lambda:ListAliases", fn)
    assert "lambda:ListAliases" in error.message and f"role/{role_name}" in error.remedy


def test_a_refused_assume_role_names_the_role_and_the_remedy(
    dev_config: DeployConfig,
    reader_role: str,
    user_key: tuple[str, str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, key, secret = user_key
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    with pytest.raises(AwsError) as err:
        client(with_aws(dev_config, role_arn=reader_role), "lambda")
    assert reader_role in err.value.message and "refused" in err.value.message
    assert "sts:AssumeRole" in err.value.remedy and "trust policy" in err.value.remedy
    assert secret not in str(err.value)


def test_a_named_profile_is_the_environments_identity(
    dev_config: DeployConfig,
    user_key: tuple[str, str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    arn, key, secret = user_key
    profile = f"gangway-test-{uuid.uuid4().hex[:6]}"
    config_file = tmp_path / "config"
    config_file.write_text(
        f"[profile {profile}]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config_file))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    config = with_aws(dev_config, profile=profile)
    assert client(config, "sts").get_caller_identity()["Arn"] == arn
    fn = next(iter(dev_config.functions.values())).name
    assert client(config, "lambda").get_function(FunctionName=fn)
    with pytest.raises(AwsError) as err:
        client(with_aws(dev_config, profile=profile + "-missing"), "lambda")
    assert "does not exist" in err.value.message and "aws configure" in err.value.remedy
