"""Deployment faults at the IAM boundary: the deploying identity lacks one permission.

Each row creates a real IAM user on the rehearsal bridge (rehearsal/iam.py) whose policy
allows what a deploy needs and explicitly denies one action, and runs the deploy with that
user's key. The bridge evaluates the policy with moto's IAM engine and refuses the way AWS does
(403 AccessDeniedException naming principal, action and resource). The error the user sees
must name the missing permission, the resource and the principal, and say what to grant to
whom. Only the deploy runs as the restricted user; the judge reads the world with the stack's
own key.
"""

from __future__ import annotations

import json
import os

import boto3
import pytest

from rehearsal.aws_seed import EXECUTION_POLICY_NAME, execution_policy
from rehearsal.iam import restricted_identity
from tasks.aws import client

from .conftest import Attempt, FaultRun

pytestmark = pytest.mark.stack


class Identity:
    """A restricted deploying identity: its key (secret kept out of every message) and ARN."""

    def __init__(self, fault: FaultRun, name: str, denied: list[str]) -> None:
        aws = fault.config.environment.aws
        if not aws.endpoint_url:
            pytest.skip("restricted identities are created on the rehearsal bridge only")
        # One user per environment: rows of several environments may run side by side.
        name = f"{name}-{fault.config.environment.name}"
        self.key, self.secret = restricted_identity(aws.endpoint_url, aws.region, name, denied)
        sts = boto3.session.Session(
            aws_access_key_id=self.key, aws_secret_access_key=self.secret, region_name=aws.region
        ).client("sts", endpoint_url=aws.endpoint_url)
        self.arn = str(sts.get_caller_identity()["Arn"])

    def deploy(self, fault: FaultRun, monkeypatch: pytest.MonkeyPatch) -> Attempt:
        """Run the deploy, and only the deploy, with this identity's key in the environment."""
        with monkeypatch.context() as scoped:
            scoped.setenv("AWS_ACCESS_KEY_ID", self.key)
            scoped.setenv("AWS_SECRET_ACCESS_KEY", self.secret)
            scoped.delenv("AWS_SESSION_TOKEN", raising=False)
            scoped.delenv("AWS_PROFILE", raising=False)
            attempt = fault.deploy()
        assert os.environ.get("AWS_ACCESS_KEY_ID") != self.key
        return attempt

    def assert_secret_kept(self, attempt: Attempt) -> None:
        """The restricted secret is in no output, error or ledger record."""
        texts = [attempt.error, attempt.output, *(r.model_dump_json() for r in attempt.records)]
        assert not any(self.secret in text for text in texts), "the secret access key leaked"


def code_shas(fault: FaultRun) -> dict[str, str]:
    """Each function's $LATEST CodeSha256, read with the stack's own key."""
    lam = client(fault.config, "lambda")
    return {
        key: lam.get_function(FunctionName=fn.name)["Configuration"]["CodeSha256"]
        for key, fn in fault.config.functions.items()
    }


def function_arn(fault: FaultRun, key: str) -> str:
    """The function's ARN, read with the stack's own key."""
    name = fault.config.functions[key].name
    return str(
        client(fault.config, "lambda").get_function(FunctionName=name)["Configuration"][
            "FunctionArn"
        ]
    )


@pytest.mark.fault("AccessDenied on UpdateFunctionCode (IAM explicit deny)", group="deployment")
def test_access_denied_on_update_function_code_blocks_before_traffic(
    fault: FaultRun, new_image: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = Identity(fault, "gangway-fault-deny-update-code", ["lambda:UpdateFunctionCode"])
    arn = function_arn(fault, "api")
    code_before = code_shas(fault)

    attempt = identity.deploy(fault, monkeypatch)

    record = fault.blocked(
        attempt,
        step="deploy",
        boundary="aws",
        says=(
            "AccessDeniedException",
            f"{identity.arn} lacks lambda:UpdateFunctionCode on {arn}",
            f"User: {identity.arn} is not authorized to perform: lambda:UpdateFunctionCode "
            f"on resource: {arn} with an explicit deny in an identity-based policy",
            f"grant lambda:UpdateFunctionCode on {arn} to {identity.arn}",
            "remove the explicit Deny of lambda:UpdateFunctionCode",
        ),
    )
    # Refused for real: no function's code changed, no version was published.
    assert code_shas(fault) == code_before
    assert all(m.version_after is None for m in record.functions.values())
    identity.assert_secret_kept(attempt)


@pytest.mark.fault("AccessDenied on Invoke (IAM explicit deny)", group="deployment")
def test_access_denied_on_invoke_rolls_back(
    fault: FaultRun, new_image: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = Identity(fault, "gangway-fault-deny-invoke", ["lambda:InvokeFunction"])
    alias = fault.config.environment.alias
    qualified = f"{function_arn(fault, 'api')}:{alias}"

    attempt = identity.deploy(fault, monkeypatch)

    # The alias moved (UpdateAlias is allowed), the smoke invoke was refused, and the same
    # identity put every alias back: the judge reads them back with the stack's key.
    record = fault.rolled_back(
        attempt,
        step="smoke",
        boundary="deployment",
        says=(
            "AccessDeniedException",
            f"User: {identity.arn} is not authorized to perform: lambda:InvokeFunction "
            f"on resource: {qualified} with an explicit deny in an identity-based policy",
            f"grant lambda:InvokeFunction on {qualified} to {identity.arn}",
        ),
    )
    assert all(m.alias_moved and m.version_after for m in record.functions.values())
    # Every smoke case was refused at its invoke (named "<case>: invoke"), none ran.
    refused = [c for c in record.trigger["checks"] if c["name"].endswith(": invoke")]
    assert len(refused) == len(fault.config.smoke), record.trigger["checks"]
    assert all("AccessDeniedException (HTTP 403)" in c["found"] for c in refused)
    identity.assert_secret_kept(attempt)


@pytest.mark.fault(
    "The execution role lacks s3:PutObject (the function's own identity)", group="deployment"
)
def test_execution_role_without_put_object_rolls_back(fault: FaultRun, new_image: None) -> None:
    # The deployer may do everything; the FUNCTION may not store its report. Invokes run with
    # the execution role's credentials (rehearsal/fidelity.py execution_role), so moto's IAM
    # refuses the handler's PutObject as AWS would, and the deploy must not keep traffic there.
    config = fault.config
    if config.environment.bucket is None or not config.environment.aws.endpoint_url:
        pytest.skip("the row needs the rehearsal bridge and an environment with a bucket")
    iam = client(config, "iam")
    role = f"{config.service.name}-{config.environment.name}-lambda"
    policy = execution_policy(config, str(iam.get_role(RoleName=role)["Role"]["Arn"]))
    kept = [s for s in policy["Statement"] if "s3:PutObject" not in json.dumps(s)]
    assert len(kept) < len(policy["Statement"]), "the seeded policy grants no s3:PutObject"
    iam.put_role_policy(
        RoleName=role,
        PolicyName=EXECUTION_POLICY_NAME,
        PolicyDocument=json.dumps({**policy, "Statement": kept}),
    )
    try:
        attempt = fault.deploy()
    finally:
        iam.put_role_policy(
            RoleName=role, PolicyName=EXECUTION_POLICY_NAME, PolicyDocument=json.dumps(policy)
        )
    record = fault.rolled_back(
        attempt,
        step="smoke",
        boundary="deployment",
        says=("AccessDenied", "PutObject"),
    )
    assert all(m.alias_moved and m.version_after for m in record.functions.values())
