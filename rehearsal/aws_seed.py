"""The AWS side of one rehearsal environment, created idempotently on the moto bridge.

This plays the part of the infrastructure code (Terraform, CDK) on real AWS: it makes the role,
the bucket, the functions with their configuration, the alias and the log groups exist.
gangway itself never creates infrastructure; it deploys code into what exists.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, WaiterError

from gangway.config import DeployConfig, ResolvedFunction
from gangway.errors import StackError
from rehearsal.lambda_waits import wait_active

TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}


# The execution role's inline policy (the rehearsal runs invokes with the role's credentials,
# evaluated by moto's IAM, so a permission the service lacks fails as on AWS).
EXECUTION_POLICY_NAME = "gangway-execution"


def execution_policy(config: DeployConfig, role_arn: str) -> dict[str, Any]:
    """Exactly what the service's handlers need: Lambda's own log writing for each function
    (AWSLambdaBasicExecutionRole, scoped), and s3:PutObject in the env's bucket if it has one
    (the reference service's report worker stores PDFs; no handler reads or lists the bucket)."""
    env = config.environment
    partition, account = role_arn.split(":")[1], role_arn.split(":")[4]
    logs = f"arn:{partition}:logs:{env.aws.region}:{account}"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "CreateLogGroups",
            "Effect": "Allow",
            "Action": "logs:CreateLogGroup",
            "Resource": f"{logs}:*",
        },
        {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": sorted(
                f"{logs}:log-group:/aws/lambda/{fn.name}:*" for fn in config.functions.values()
            ),
        },
    ]
    if env.bucket is not None:
        statements.append(
            {
                "Sid": "StoreReports",
                "Effect": "Allow",
                "Action": "s3:PutObject",
                "Resource": f"arn:{partition}:s3:::{env.bucket}/*",
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _clients(config: DeployConfig) -> dict[str, Any]:
    aws = config.environment.aws
    session = boto3.session.Session()
    return {
        name: session.client(name, region_name=aws.region, endpoint_url=aws.endpoint_url)
        for name in ("iam", "s3", "lambda", "logs")
    }


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _role(iam: Any, name: str) -> str:
    try:
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])
    except ClientError as exc:
        if _code(exc) != "NoSuchEntity":
            raise
    return str(
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(TRUST))["Role"]["Arn"]
    )


def _bucket(s3: Any, name: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=name)
        return
    except ClientError as exc:
        if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise  # 403: the name is someone else's; creating would not help
    kwargs: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
    s3.create_bucket(**kwargs)


def _function(lam: Any, fn: ResolvedFunction, role: str, image_uri: str) -> None:
    try:
        lam.get_function(FunctionName=fn.name)
        return  # code belongs to gangway's deploys; seeding only ensures existence
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
    # The command override only where the configuration says the infrastructure sets one (one
    # image serving several handlers): an override nobody declared would hide a wrong CMD.
    image_config = (
        {"ImageConfig": {"Command": [fn.spec.handler]}} if fn.spec.command_override else {}
    )
    lam.create_function(
        FunctionName=fn.name,
        PackageType="Image",
        Code={"ImageUri": image_uri},
        **image_config,
        Role=role,
        Timeout=fn.spec.timeout,
        MemorySize=fn.spec.memory,
        Architectures=[fn.spec.architecture],
        Environment={"Variables": fn.env_plain()},
        Publish=False,
    )
    # Pending until the image is optimised, on AWS and on the bridge (rehearsal.fidelity): the
    # alias's publish_version next would be refused meanwhile.
    wait_active(lam, fn.name)


def _alias(lam: Any, name: str, alias: str) -> None:
    try:
        lam.get_alias(FunctionName=name, Name=alias)
        return
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.create_alias(FunctionName=name, Name=alias, FunctionVersion=version)


def _log_group(logs: Any, name: str) -> None:
    try:
        logs.create_log_group(logGroupName=name)
    except ClientError as exc:
        if _code(exc) != "ResourceAlreadyExistsException":
            raise


def seed_environment(config: DeployConfig, bootstrap_image_uri: str) -> list[str]:
    """Make the role (with its policy), bucket, functions, alias and log groups of one
    environment exist; returns what it made sure of, in words."""
    env = config.environment
    clients = _clients(config)
    done = []
    try:
        role_name = f"{config.service.name}-{env.name}-lambda"
        role = _role(clients["iam"], role_name)
        # Put on every seeding (not only on creation): a re-seed restores the role's policy.
        clients["iam"].put_role_policy(
            RoleName=role_name,
            PolicyName=EXECUTION_POLICY_NAME,
            PolicyDocument=json.dumps(execution_policy(config, role)),
        )
        done.append(f"role {role_name} ({EXECUTION_POLICY_NAME}: logs"
                    + (f", s3:PutObject on {env.bucket}" if env.bucket else "") + ")")
        if env.bucket is not None:
            _bucket(clients["s3"], env.bucket, env.aws.region)
            done.append(f"bucket {env.bucket}")
        for fn in config.functions.values():
            _function(clients["lambda"], fn, role, bootstrap_image_uri)
            _alias(clients["lambda"], fn.name, env.alias)
            _log_group(clients["logs"], f"/aws/lambda/{fn.name}")
            done.append(
                f"function {fn.name} (alias {env.alias}, log group; "
                + ("command override" if fn.spec.command_override else "the image's CMD")
                + ")"
            )
    except (ClientError, BotoCoreError, WaiterError) as exc:
        found = str(exc)
        for secret in config.secret_values():  # function env values must never be shown
            found = found.replace(secret, "***")
        raise StackError(
            f"seeding the AWS side of {env.name} failed",
            expected=f"the AWS endpoint {env.aws.endpoint_url or '(default)'} accepting the calls "
            "with the credentials in the environment (AWS_ACCESS_KEY_ID=testing for moto)",
            found=f"{type(exc).__name__}: {found}"[:400],
            remedy="check the bridge (`gangway stack status`), or restart it "
            "(`gangway stack down && gangway stack up`)",
        ) from exc
    return done
