"""Seeding the AWS side of an environment is idempotent and never touches deployed code."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gangway.config import DeployConfig, load_config
from gangway.errors import StackError
from rehearsal.aws_seed import seed_environment

pytestmark = pytest.mark.stack

SECRETS = {
    "GANGWAY_DEV_DB_PASSWORD": "seed-test-db-password",
    "GANGWAY_DEV_TELEGRAM_TOKEN": "seed-test-telegram-token",
    "GANGWAY_DEV_LINE_SECRET": "seed-test-line-secret",
}


@pytest.fixture
def dev_on_bridge(bridge: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DeployConfig:
    """The dev configuration, its secrets from the test, its AWS endpoint the test bridge."""
    monkeypatch.setenv("GANGWAY_HOME", str(tmp_path))  # no stack.env from a real stack
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    config = load_config("dev")
    aws = config.environment.aws.model_copy(update={"endpoint_url": bridge})
    return config.model_copy(
        update={"environment": config.environment.model_copy(update={"aws": aws})}
    )


def test_seed_is_idempotent_and_leaves_deployed_code_alone(
    aws: Callable[[str], Any], images: dict[str, str], dev_on_bridge: DeployConfig
) -> None:
    config = dev_on_bridge
    lam = aws("lambda")
    seed_environment(config, images["v1"])

    names = sorted(fn.name for fn in config.functions.values())
    assert len(names) == 7
    listed = sorted(f["FunctionName"] for f in lam.list_functions()["Functions"])
    assert set(names) <= set(listed)
    for fn in config.functions.values():
        conf = lam.get_function_configuration(FunctionName=fn.name)
        assert conf["PackageType"] == "Image"
        assert conf["ImageConfigResponse"]["ImageConfig"]["Command"] == [fn.spec.handler]
        assert (conf["Timeout"], conf["MemorySize"]) == (fn.spec.timeout, fn.spec.memory)
        assert conf["Architectures"] == [fn.spec.architecture]
        assert conf["Environment"]["Variables"] == fn.env_plain()
        assert conf["Role"].endswith(":role/daily-report-dev-lambda")
        alias = lam.get_alias(FunctionName=fn.name, Name=config.environment.alias)
        assert alias["FunctionVersion"] == "1"
        groups = aws("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{fn.name}")
        assert [g["logGroupName"] for g in groups["logGroups"]] == [f"/aws/lambda/{fn.name}"]
    assert config.environment.bucket in [b["Name"] for b in aws("s3").list_buckets()["Buckets"]]
    location = aws("s3").get_bucket_location(Bucket=config.environment.bucket)
    assert location["LocationConstraint"] == config.environment.aws.region
    role = aws("iam").get_role(RoleName="daily-report-dev-lambda")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}

    # A deploy changes one function's code; seeding again must not undo it.
    api = config.functions["api"].name
    lam.update_function_code(FunctionName=api, ImageUri=images["v2"])
    telegram = config.functions["telegram"].name
    lam.delete_alias(FunctionName=telegram, Name=config.environment.alias)
    seed_environment(config, images["v1"])
    seed_environment(config, images["v1"])

    assert lam.get_function(FunctionName=api)["Code"]["ImageUri"] == images["v2"]
    assert lam.get_alias(FunctionName=api, Name="live")["FunctionVersion"] == "1"
    assert lam.get_alias(FunctionName=telegram, Name="live")  # the missing alias is back
    query_tool = config.functions["query_tool"].name
    assert len(lam.list_versions_by_function(FunctionName=query_tool)["Versions"]) == 2


def test_seed_failure_is_a_stack_error_without_secrets(
    dev_on_bridge: DeployConfig,
) -> None:
    aws = dev_on_bridge.environment.aws.model_copy(update={"endpoint_url": "http://127.0.0.1:9"})
    broken = dev_on_bridge.model_copy(
        update={"environment": dev_on_bridge.environment.model_copy(update={"aws": aws})}
    )
    with pytest.raises(StackError) as failed:
        seed_environment(broken, "127.0.0.1:5000/daily-report:bootstrap")
    text = str(failed.value)
    assert "remedy:" in text and "127.0.0.1:9" in text
    assert not any(secret in text for secret in SECRETS.values())
