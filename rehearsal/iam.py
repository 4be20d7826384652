"""Restricted deploying identities on the rehearsal stack: an IAM user with a real policy.

Rehearsal tooling only (gangway's tasks and flows never import this). The moto bridge
enforces IAM for requests signed with an IAM user's key (see ``moto_bridge._authorize``), so a
deploy run with the key returned here meets real policy evaluation: everything a deploy needs
is allowed, and the actions named are explicitly denied.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from gangway.config import gangway_home
from gangway.errors import StackError
from rehearsal import mariadb_setup

POLICY_NAME = "gangway-deployer"

# What a deploy calls: Lambda (read, update code, publish, aliases, invoke), CloudWatch Logs
# (log scan), CloudWatch metrics (canary counts), S3 (ground truth), passing the function role.
DEPLOYER_ACTIONS = [
    "lambda:*",
    "logs:*",
    "cloudwatch:*",
    "s3:*",
    "iam:PassRole",
    "iam:GetRole",
    "sts:GetCallerIdentity",
]


def deployer_policy(denied_actions: list[str]) -> dict[str, Any]:
    """The deployer's identity-based policy: allow what a deploy needs, deny denied_actions."""
    statements: list[dict[str, Any]] = [
        {"Sid": "Deploy", "Effect": "Allow", "Action": DEPLOYER_ACTIONS, "Resource": "*"}
    ]
    if denied_actions:
        statements.append(
            {"Sid": "Fault", "Effect": "Deny", "Action": list(denied_actions), "Resource": "*"}
        )
    return {"Version": "2012-10-17", "Statement": statements}


def _stack_iam(endpoint: str, region: str) -> Any:
    """An IAM client with the stack's own key: from stack.env, whatever the environment says
    (a test may have switched the process to a restricted identity already)."""
    stack = mariadb_setup.read_stack_env()
    key = stack.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_ACCESS_KEY_ID", "testing")
    secret = stack.get("AWS_SECRET_ACCESS_KEY") or os.environ.get(
        "AWS_SECRET_ACCESS_KEY", "testing"
    )
    session = boto3.session.Session(
        aws_access_key_id=key, aws_secret_access_key=secret, region_name=region
    )
    return session.client("iam", endpoint_url=endpoint)


def restricted_identity(
    endpoint: str, region: str, name: str, denied_actions: list[str]
) -> tuple[str, str]:
    """Create (idempotently) the IAM user ``name`` with the deployer policy denying
    denied_actions; return a fresh (access key id, secret access key) for it.

    The user's earlier keys are deleted first: IAM allows two per user, and an old key must
    not keep working with a policy it was not issued under.
    """
    iam = _stack_iam(endpoint, region)
    try:
        try:
            iam.create_user(UserName=name, Tags=[{"Key": "gangway", "Value": "rehearsal"}])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "EntityAlreadyExists":
                raise
        iam.put_user_policy(
            UserName=name,
            PolicyName=POLICY_NAME,
            PolicyDocument=json.dumps(deployer_policy(denied_actions)),
        )
        for old in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=name, AccessKeyId=old["AccessKeyId"])
        key = iam.create_access_key(UserName=name)["AccessKey"]
    except (ClientError, BotoCoreError) as exc:
        raise StackError(
            f"creating the restricted IAM identity {name} failed",
            expected=f"the IAM API at {endpoint} accepting the stack's own key",
            found=f"{type(exc).__name__}: {exc}"[:400],
            remedy="check the moto bridge (`gangway stack status`)",
        ) from exc
    remember_secret(str(key["SecretAccessKey"]))
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


def issued_keys_path(home: Path | None = None) -> Path:
    """Where the secret keys issued to rehearsal IAM users are kept (0600, like stack.env)."""
    return (home or gangway_home()) / "iam-issued-keys"


def remember_secret(secret: str) -> None:
    """Keep a secret the rehearsal issued (an IAM user's key, a role session's) for the sweep."""
    # The fault matrix's secret sweep must look for these keys too, and IAM never shows a
    # secret key again after it is created.
    path = issued_keys_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as out:
        out.write(secret + "\n")


def issued_secret_keys(home: Path | None = None) -> list[str]:
    """Every secret this rehearsal stack issued: IAM users' keys, role sessions' keys and tokens."""
    path = issued_keys_path(home)
    return path.read_text().split() if path.exists() else []
