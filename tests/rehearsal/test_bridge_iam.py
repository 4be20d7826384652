"""IAM on the bridge, per identity: an IAM user's key meets moto's real policy evaluation and
AWS's error shape; every other key (the stack's) passes as before.

Plain moto either checks every caller (``INITIAL_NO_AUTH_ACTION_COUNT``) or none, and answers a
refusal in XML to every protocol: botocore then reports ``Code: "403"`` with the raw XML as
the message on Lambda and CloudWatch Logs, and every GET by a real key failed the signature
check. Each test here goes through boto3 over HTTP to a bridge subprocess (see conftest.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from gangway.config import load_config
from rehearsal.iam import DEPLOYER_ACTIONS, restricted_identity
from tasks.aws import aws_error, client, error_code

pytestmark = pytest.mark.stack

ACCOUNT = "123456789012"  # moto's default account
REGION = "ap-southeast-1"  # the bridge fixture's clients (conftest.REGION)
def session(key: str, secret: str) -> boto3.session.Session:
    """A boto3 session signing with exactly this key (never the environment's)."""
    return boto3.session.Session(
        aws_access_key_id=key, aws_secret_access_key=secret, region_name=REGION
    )


def refusal(call: Callable[[], Any]) -> tuple[int, str, str]:
    """Run a call that must be refused: (HTTP status, botocore's Error.Code, Error.Message)."""
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    error = response["Error"]
    return response["ResponseMetadata"]["HTTPStatusCode"], error["Code"], error["Message"]


def raw_responses(client: Any) -> list[Any]:
    """Every HTTP response the client receives, as botocore got it (status, headers, body)."""
    seen: list[Any] = []
    client.meta.events.register(
        "after-call.*", lambda http_response=None, **_: seen.append(http_response)
    )
    return seen


def function_arn(name: str, qualifier: str = "") -> str:
    """The ARN AWS names in a refusal for this function (qualified when the call is)."""
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def test_explicit_deny_is_access_denied_in_aws_shape(bridge: str, function: str) -> None:
    user = f"deployer-{uuid.uuid4().hex[:8]}"
    key, secret = restricted_identity(bridge, REGION, user, ["lambda:UpdateFunctionCode"])
    lam = session(key, secret).client("lambda", endpoint_url=bridge)
    raw = raw_responses(lam)

    status, code, message = refusal(
        lambda: lam.update_function_code(FunctionName=function, ImageUri="any:tag")
    )

    assert (status, code) == (403, "AccessDeniedException")
    assert message == (
        f"User: arn:aws:iam::{ACCOUNT}:user/{user} is not authorized to perform: "
        f"lambda:UpdateFunctionCode on resource: {function_arn(function)} "
        "with an explicit deny in an identity-based policy"
    )
    http = raw[-1]
    assert http.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert http.headers["Content-Type"] == "application/json"
    assert json.loads(http.content) == {"Type": "User", "Message": message}
    # The rest of the deployer policy holds: reading and moving the alias are allowed.
    alias = lam.get_alias(FunctionName=function, Name="live")
    moved = lam.update_alias(
        FunctionName=function, Name="live", FunctionVersion="1", RevisionId=alias["RevisionId"]
    )
    assert moved["FunctionVersion"] == "1"


def test_no_allow_is_access_denied_naming_why(
    bridge: str, aws: Callable[[str], Any], function: str
) -> None:
    user = f"reader-{uuid.uuid4().hex[:8]}"
    iam = aws("iam")
    iam.create_user(UserName=user)
    iam.put_user_policy(
        UserName=user,
        PolicyName="only-list",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "lambda:ListFunctions", "Resource": "*"},
                    # Scoped to another function: must not allow this one.
                    {
                        "Effect": "Allow",
                        "Action": "lambda:GetFunction",
                        "Resource": function_arn("someone-else"),
                    },
                ],
            }
        ),
    )
    created = iam.create_access_key(UserName=user)["AccessKey"]
    lam = session(created["AccessKeyId"], created["SecretAccessKey"]).client(
        "lambda", endpoint_url=bridge
    )

    assert any(f["FunctionName"] == function for f in lam.list_functions()["Functions"])
    status, code, message = refusal(lambda: lam.get_function(FunctionName=function))
    assert (status, code) == (403, "AccessDeniedException")
    assert message == (
        f"User: arn:aws:iam::{ACCOUNT}:user/{user} is not authorized to perform: "
        f"lambda:GetFunction on resource: {function_arn(function)} "
        "because no identity-based policy allows the lambda:GetFunction action"
    )


def test_invoke_is_authorized_as_invoke_function_on_the_qualified_arn(
    bridge: str, function: str
) -> None:
    user = f"deployer-{uuid.uuid4().hex[:8]}"
    key, secret = restricted_identity(bridge, REGION, user, ["lambda:InvokeFunction"])
    lam = session(key, secret).client("lambda", endpoint_url=bridge)

    status, code, message = refusal(
        lambda: lam.invoke(FunctionName=function, Qualifier="live", Payload=b"{}")
    )
    assert (status, code) == (403, "AccessDeniedException")
    assert "is not authorized to perform: lambda:InvokeFunction " in message
    assert f"on resource: {function_arn(function, 'live')} " in message
    _, _, by_name = refusal(lambda: lam.invoke(FunctionName=f"{function}:1", Payload=b"{}"))
    assert f"on resource: {function_arn(function, '1')} " in by_name


def test_logs_refusal_has_the_json_protocol_shape(bridge: str, aws: Callable[[str], Any]) -> None:
    group = f"/aws/lambda/bridge-iam-{uuid.uuid4().hex[:8]}"
    aws("logs").create_log_group(logGroupName=group)
    user = f"deployer-{uuid.uuid4().hex[:8]}"
    key, secret = restricted_identity(bridge, REGION, user, ["logs:FilterLogEvents"])
    logs = session(key, secret).client("logs", endpoint_url=bridge)
    raw = raw_responses(logs)

    status, code, message = refusal(lambda: logs.filter_log_events(logGroupName=group))

    assert (status, code) == (403, "AccessDeniedException")
    assert message == (
        f"User: arn:aws:iam::{ACCOUNT}:user/{user} is not authorized to perform: "
        f"logs:FilterLogEvents on resource: arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}"
        ":log-stream: with an explicit deny in an identity-based policy"
    )
    assert json.loads(raw[-1].content) == {"__type": "AccessDeniedException", "message": message}
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]


def test_keys_that_are_no_users_pass_as_before(
    bridge: str, aws: Callable[[str], Any], function: str
) -> None:
    # A user denied everything exists: only ITS key is refused.
    user = f"denied-{uuid.uuid4().hex[:8]}"
    key, secret = restricted_identity(bridge, REGION, user, ["lambda:*"])
    status, code, _ = refusal(
        lambda: session(key, secret).client("lambda", endpoint_url=bridge).list_functions()
    )
    assert (status, code) == (403, "AccessDeniedException")

    assert aws("lambda").get_function(FunctionName=function)  # the stack's own key
    stranger = session("AKIAIOSFODNN7EXAMPLE", "not-checked").client("lambda", endpoint_url=bridge)
    assert stranger.get_function(FunctionName=function)


def test_bad_secret_deleted_and_inactive_keys_are_refused(
    bridge: str, aws: Callable[[str], Any]
) -> None:
    user = f"deployer-{uuid.uuid4().hex[:8]}"
    key, secret = restricted_identity(bridge, REGION, user, [])
    good = session(key, secret)
    assert good.client("lambda", endpoint_url=bridge).list_functions()

    wrong = session(key, "x" * 40)
    for call in (
        wrong.client("lambda", endpoint_url=bridge).list_functions,
        wrong.client("logs", endpoint_url=bridge).describe_log_groups,
    ):
        status, code, message = refusal(call)
        assert (status, code) == (403, "InvalidSignatureException"), call
        assert message.startswith("The request signature we calculated does not match")

    iam = aws("iam")
    iam.update_access_key(UserName=user, AccessKeyId=key, Status="Inactive")
    lam = good.client("lambda", endpoint_url=bridge)
    status, code, message = refusal(lam.list_functions)
    assert (status, code, message) == (
        403,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )

    # A fresh key for the same user replaces (deletes) the old one: the old one is unknown now.
    new_key, new_secret = restricted_identity(bridge, REGION, user, [])
    assert new_key != key
    assert refusal(lam.list_functions)[:2] == (403, "UnrecognizedClientException")
    assert session(new_key, new_secret).client("lambda", endpoint_url=bridge).list_functions()


def test_query_protocol_services_keep_their_xml_errors(bridge: str) -> None:
    user = f"deployer-{uuid.uuid4().hex[:8]}"
    key, secret = restricted_identity(bridge, REGION, user, [])
    iam = session(key, secret).client("iam", endpoint_url=bridge)
    status, code, message = refusal(iam.list_users)
    assert (status, code) == (403, "AccessDenied")
    assert f"user/{user} is not authorized to perform: iam:ListUsers" in message


def test_restricted_identity_is_idempotent_and_denies_only_what_is_named(
    bridge: str, aws: Callable[[str], Any]
) -> None:
    user = f"deployer-{uuid.uuid4().hex[:8]}"
    restricted_identity(bridge, REGION, user, ["lambda:UpdateFunctionCode"])
    restricted_identity(bridge, REGION, user, ["lambda:InvokeFunction"])
    iam = aws("iam")
    policies = iam.list_user_policies(UserName=user)["PolicyNames"]
    assert policies == ["gangway-deployer"]
    document = iam.get_user_policy(UserName=user, PolicyName="gangway-deployer")["PolicyDocument"]
    if isinstance(document, str):
        document = json.loads(document)
    allow, deny = document["Statement"]
    assert (allow["Effect"], allow["Action"]) == ("Allow", DEPLOYER_ACTIONS)
    assert (deny["Effect"], deny["Action"]) == ("Deny", ["lambda:InvokeFunction"])
    assert len(iam.list_access_keys(UserName=user)["AccessKeyMetadata"]) == 1


def test_allowed_calls_pass_the_signature_check_on_every_protocol(
    bridge: str, aws: Callable[[str], Any]
) -> None:
    # GET (rest-json), JSON POST, form POST (query) and S3 (rest-xml, payload-signed) requests
    # signed by a user's key are checked for real and must verify.
    user = f"deployer-{uuid.uuid4().hex[:8]}"
    key, secret = restricted_identity(bridge, REGION, user, ["s3:DeleteObject"])
    bucket = f"bridge-iam-{uuid.uuid4().hex[:8]}"
    aws("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    as_user = session(key, secret)
    identity = as_user.client("sts", endpoint_url=bridge).get_caller_identity()
    assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/{user}"
    assert "Functions" in as_user.client("lambda", endpoint_url=bridge).list_functions()
    assert "logGroups" in as_user.client("logs", endpoint_url=bridge).describe_log_groups()
    s3 = as_user.client("s3", endpoint_url=bridge)
    s3.put_object(Bucket=bucket, Key="reports/a.json", Body=b'{"a": 1}')
    assert s3.get_object(Bucket=bucket, Key="reports/a.json")["Body"].read() == b'{"a": 1}'
    assert s3.head_object(Bucket=bucket, Key="reports/a.json")["ContentLength"] == 8
    status, code, _ = refusal(lambda: s3.delete_object(Bucket=bucket, Key="reports/a.json"))
    assert (status, code) == (403, "AccessDenied")


# --------------------------------------------------------------------------- gangway's side


def test_aws_error_names_permission_resource_principal_and_what_to_grant(
    bridge: str, function: str
) -> None:
    user = f"deployer-{uuid.uuid4().hex[:8]}"
    key, secret = restricted_identity(bridge, REGION, user, ["lambda:UpdateFunctionCode"])
    lam = session(key, secret).client("lambda", endpoint_url=bridge)
    with pytest.raises(ClientError) as caught:
        lam.update_function_code(FunctionName=function, ImageUri="any:tag")

    error = aws_error(caught.value, "lambda:UpdateFunctionCode", function)

    principal, arn = f"arn:aws:iam::{ACCOUNT}:user/{user}", function_arn(function)
    assert error.message == (
        f"{principal} lacks lambda:UpdateFunctionCode on {arn} (AccessDeniedException)"
    )
    assert error.expected == f"{principal} allowed lambda:UpdateFunctionCode on {arn}"
    assert error.found.startswith("AccessDeniedException (HTTP 403): User: ")
    assert error.remedy.startswith(f"grant lambda:UpdateFunctionCode on {arn} to {principal}; ")
    assert "remove the explicit Deny of lambda:UpdateFunctionCode" in error.remedy


def test_aws_error_grants_an_assumed_roles_permission_to_its_role() -> None:
    # AWS's wording for a role session refused by a missing Allow (no bridge involved).
    message = (
        "User: arn:aws:sts::111122223333:assumed-role/deployer/ci-4711 is not authorized to "
        "perform: lambda:InvokeFunction on resource: "
        "arn:aws:lambda:eu-west-1:111122223333:function:api:live because no identity-based "
        "policy allows the lambda:InvokeFunction action"
    )
    denied = ClientError(
        {
            "Error": {"Code": "AccessDeniedException", "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        },
        "Invoke",
    )

    error = aws_error(denied, "lambda:InvokeFunction", "api:live")

    assert error.remedy == (
        "grant lambda:InvokeFunction on arn:aws:lambda:eu-west-1:111122223333:function:api:live "
        "to arn:aws:iam::111122223333:role/deployer"
    )
    assert "assumed-role/deployer/ci-4711 lacks lambda:InvokeFunction" in error.message


def test_client_follows_credentials_switched_in_the_environment(
    bridge: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__AWS__ENDPOINT_URL", bridge)
    config = load_config("dev")
    user = f"deployer-{uuid.uuid4().hex[:8]}"
    key, secret = restricted_identity(
        bridge, config.environment.aws.region, user, ["lambda:ListFunctions"]
    )
    assert "Functions" in client(config, "lambda").list_functions()  # the stack's key

    with monkeypatch.context() as scoped:
        scoped.setenv("AWS_ACCESS_KEY_ID", key)
        scoped.setenv("AWS_SECRET_ACCESS_KEY", secret)
        with pytest.raises(ClientError) as denied:
            client(config, "lambda").list_functions()
        assert error_code(denied.value) == "AccessDeniedException"
        assert f"user/{user} is not authorized" in str(denied.value)
        # Same key id, another secret (a rotation): a new client, signing with the new secret.
        scoped.setenv("AWS_SECRET_ACCESS_KEY", "x" * 40)
        with pytest.raises(ClientError) as bad_secret:
            client(config, "lambda").list_functions()
        assert error_code(bad_secret.value) == "InvalidSignatureException"

    assert "Functions" in client(config, "lambda").list_functions()  # back on the stack's key
