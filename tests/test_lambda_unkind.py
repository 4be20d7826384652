"""Lambda's unkind behaviour, as the pipeline meets it (offline: pure code and AWS's own
error shapes through a botocore Stubber): ResourceConflictException retried within a budget,
stale alias reads tolerated inside a window, and a published version whose code is not the
gated digest refused. tests/faults/test_lambda_behaviour.py shows the same on the stack.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from test_lambda_deploy import (
    ALIAS_V1,
    DIGEST_A,
    DIGEST_B,
    NAME,
    _conf,
    _live,
    _policy,
    _until_update,
)

from flows.deploy_steps import _foreign_code
from gangway.config import DeployConfig, load_config
from gangway.errors import AwsError
from gangway.evidence import Status
from tasks import lambda_alias, lambda_publish, lambda_read
from tasks.aws import CONFLICT_CAP_S, aws_error, conflict_delay, conflict_remedy, retry_conflicts
from tasks.lambda_alias import restore_alias, shift_alias
from tasks.lambda_publish import ForeignCode, deploy_version
from tasks.lambda_read import AliasState
from tasks.transient import is_conflict, is_transient

CONFLICT_MESSAGE = (
    "The operation cannot be performed at this time. An update is in progress for resource: "
    f"arn:aws:lambda:ap-southeast-1:1:function:{NAME}"
)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> DeployConfig:
    """The staging config with made-up secrets; no stack needed."""
    monkeypatch.setenv("GANGWAY_HOME", str(tmp_path))
    for var in ("DB_PASSWORD", "TELEGRAM_TOKEN", "LINE_SECRET"):
        monkeypatch.setenv(f"GANGWAY_STAGING_{var}", f"offline-{var.lower()}")
    return load_config("staging")


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """A stubbed Lambda client that the lambda_* modules use instead of a real one."""
    lam = boto3.client(
        "lambda", region_name="ap-southeast-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    for module in (lambda_read, lambda_publish, lambda_alias):
        monkeypatch.setattr(module, "client", lambda _config, _service, **_kw: lam)
    with Stubber(lam) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def _conflict(operation: str = "UpdateFunctionCode") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "ResourceConflictException", "Message": CONFLICT_MESSAGE},
            "ResponseMetadata": {"HTTPStatusCode": 409},
        },
        operation,
    )


# --- the conflict budget ----------------------------------------------------------------------


def test_the_backoff_grows_with_equal_jitter_up_to_its_cap() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(CONFLICT_CAP_S, 0.5 * 2 ** (attempt - 1))
        delays = [conflict_delay(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, delays)
        assert len(set(delays)) > 1, "jittered"


def test_a_conflict_is_retried_until_the_write_is_accepted() -> None:
    answers: list[Exception | str] = [_conflict(), _conflict(), "accepted"]
    pauses: list[float] = []

    def write() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    done = retry_conflicts(
        write, budget_s=60, action="lambda:PublishVersion", function=NAME, sleep=pauses.append
    )
    assert done == "accepted" and len(pauses) == 2
    assert 0.25 <= pauses[0] <= 0.5 and 0.5 <= pauses[1] <= 1.0, pauses


def test_past_the_budget_the_error_names_the_function_the_operation_and_who_to_find() -> None:
    calls: list[int] = []

    def write() -> None:
        calls.append(1)
        raise AwsError("wrapped", found="x") from _conflict()

    with pytest.raises(AwsError) as raised:
        retry_conflicts(write, budget_s=0, action="lambda:UpdateFunctionCode", function=NAME)
    error = raised.value
    assert len(calls) == 1
    assert f"lambda:UpdateFunctionCode on {NAME} was refused" in error.message
    assert "another update of the function is in progress" in error.message
    assert "ResourceConflictException on each of 1 attempts" in error.found
    assert CONFLICT_MESSAGE in error.found
    assert error.remedy == conflict_remedy(NAME)
    assert f"someone else is updating {NAME}" in error.remedy
    assert "CloudTrail" in error.remedy and "re-run the deploy" in error.remedy
    assert "conflict_retry_s" in error.expected


def test_other_failures_pass_through_at_once() -> None:
    denied = ClientError({"Error": {"Code": "AccessDeniedException"}}, "UpdateFunctionCode")

    def write() -> None:
        raise denied

    with pytest.raises(ClientError) as raised:
        retry_conflicts(write, budget_s=60, action="lambda:UpdateFunctionCode", function=NAME)
    assert raised.value is denied


def test_a_conflict_is_not_a_step_retry_and_aws_error_words_it_the_same_way() -> None:
    wrapped = aws_error(_conflict(), "lambda:UpdateAlias", NAME)
    assert is_conflict(_conflict()) and not is_transient(_conflict())
    try:
        raise wrapped from _conflict()
    except AwsError as exc:
        assert is_conflict(exc), "found through the exception chain"
    assert wrapped.remedy == conflict_remedy(NAME)


def test_the_conflict_budget_is_a_validated_setting(offline: DeployConfig) -> None:
    policy = offline.environment.deploy
    assert (policy.conflict_retry_s, policy.alias_read_window_s) == (60.0, 5.0)
    with pytest.raises(ValueError):
        type(policy).model_validate({"conflict_retry_s": 600})
    with pytest.raises(ValueError):
        type(policy).model_validate({"alias_read_window_s": -1})


# --- update → publish: conflicts and foreign code --------------------------------------------


def _published(stub: Stubber, version: str = "2", **code: Any) -> None:
    stub.add_response("get_function_configuration", _conf(version))  # Active
    conf = _conf(version, CodeSha256=code.pop("sha", "b" * 64))
    code = {"ImageUri": DIGEST_B, **code}
    stub.add_response("get_function", {"Configuration": conf, "Code": code})


def test_a_publish_refused_for_an_update_in_progress_is_retried(
    offline: DeployConfig, stub: Stubber
) -> None:
    _until_update(stub)
    stub.add_response("get_function_configuration", _conf(CodeSha256="b" * 64))  # Successful
    publish = {"FunctionName": NAME, "CodeSha256": "b" * 64, "Description": f"gangway: {DIGEST_B}"}
    stub.add_client_error(
        "publish_version", "ResourceConflictException", CONFLICT_MESSAGE, 409, publish
    )
    stub.add_response("publish_version", _conf("2", CodeSha256="b" * 64), publish)
    _published(stub)
    deployed = deploy_version(offline, _live(), DIGEST_B, wait_s=5)
    assert deployed.version == "2" and not deployed.reused


def test_another_update_between_ours_and_the_publish_is_foreign_code(
    offline: DeployConfig, stub: Stubber
) -> None:
    _until_update(stub)
    stub.add_response("get_function_configuration", _conf(CodeSha256="b" * 64))
    stub.add_client_error("publish_version", "PreconditionFailedException", "", 412)
    theirs = {"Configuration": _conf(CodeSha256="c" * 64), "Code": {"ImageUri": "other@sha256:c"}}
    stub.add_response("get_function", theirs, {"FunctionName": NAME, "Qualifier": "$LATEST"})
    with pytest.raises(ForeignCode) as raised:
        deploy_version(offline, _live(), DIGEST_B, wait_s=5)
    error = raised.value
    assert error.function == NAME and "publish refused" in error.message.lower()
    assert "sha256:" + "b" * 64 in error.expected and "c" * 64 in error.found
    assert "route nothing to it" in error.remedy and "CloudTrail" in error.remedy
    gate = _foreign_code(error, DIGEST_B)
    assert gate.status is Status.FAILED and gate.failures[0].expected == error.expected


def test_a_version_whose_code_sha_is_not_the_gated_digest_is_refused(
    offline: DeployConfig, stub: Stubber
) -> None:
    # The second layer: an endpoint that published despite the pinned CodeSha256.
    _until_update(stub)
    stub.add_response("get_function_configuration", _conf(CodeSha256="b" * 64))
    stub.add_response("publish_version", _conf("2", CodeSha256="c" * 64))
    _published(stub, sha="c" * 64)
    with pytest.raises(ForeignCode, match="does not run the tested digest") as raised:
        deploy_version(offline, _live(), DIGEST_B, wait_s=5)
    assert raised.value.found == "CodeSha256 " + "c" * 64


def test_an_update_into_a_pending_function_waits_for_it_to_be_active(
    offline: DeployConfig, stub: Stubber, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lambda_publish, "POLL_DELAY_S", 0.01)
    stub.add_response("get_alias", ALIAS_V1)
    latest = {"Configuration": _conf(), "Code": {"ImageUri": DIGEST_A}}
    stub.add_response("get_function", latest)
    stub.add_response("list_versions_by_function", {"Versions": [_conf()]})
    stub.add_response("get_function_configuration", _conf(State="Pending"))
    stub.add_response("get_function", {"Configuration": _conf()})  # the waiter: Active
    stub.add_response("get_function_configuration", _conf())  # our read: Active
    stub.add_response("get_function_configuration", _conf())  # no update in progress
    stub.add_response("update_function_code", _conf(CodeSha256="b" * 64))
    stub.add_response("get_function_configuration", _conf(CodeSha256="b" * 64))
    stub.add_response("publish_version", _conf("2", CodeSha256="b" * 64))
    _published(stub)
    assert deploy_version(offline, _live(), DIGEST_B, wait_s=5).version == "2"


# --- stale alias reads --------------------------------------------------------------------------


def _alias(version: str, revision: str, weights: dict[str, float] | None = None) -> dict:
    routing = {"AdditionalVersionWeights": weights} if weights else {}
    return {"Name": "live", "FunctionVersion": version, "RevisionId": revision, **routing}


def _refused(stub: Stubber, revision: str) -> None:
    stub.add_client_error(
        "update_alias",
        "PreconditionFailedException",
        "The Revision Id provided does not match the latest Revision Id.",
        412,
        {
            "FunctionName": NAME,
            "Name": "live",
            "FunctionVersion": "1",
            "RoutingConfig": {"AdditionalVersionWeights": {}},
            "RevisionId": revision,
        },
    )


def test_a_shift_after_a_stale_read_is_written_on_a_fresh_one_and_read_back(
    offline: DeployConfig, stub: Stubber
) -> None:
    stub.add_response("get_alias", _alias("3", "rev-0"))  # stale: before the last write
    stub.add_client_error("update_alias", "PreconditionFailedException", "", 412)
    stub.add_response("get_alias", _alias("3", "rev-1"))
    stub.add_response("update_alias", _alias("4", "rev-2"))
    stub.add_response("get_alias", _alias("3", "rev-1"))  # the read-back is stale at first
    stub.add_response("get_alias", _alias("4", "rev-2"))
    now = shift_alias(offline, NAME, "4")
    assert (now.version, now.revision_id) == ("4", "rev-2")


def test_a_restore_whose_reads_are_stale_at_first_is_verified(
    offline: DeployConfig, stub: Stubber
) -> None:
    previous = AliasState(name="live", version="1", revision_id="rev-1")
    moved = AliasState(name="live", version="2")
    stub.add_response("get_alias", _alias("1", "rev-1"))  # stale: from before the shift
    _refused(stub, "rev-1")  # so the write on it is refused, not skipped
    stub.add_response("get_alias", _alias("2", "rev-2"))  # fresh: this deploy's move
    stub.add_response("update_alias", _alias("1", "rev-3"))
    stub.add_response("get_alias", _alias("2", "rev-2"))  # the read-back, stale at first
    stub.add_response("get_alias", _alias("1", "rev-3"))
    now = restore_alias(offline, NAME, previous, window_s=5, moved_to=moved)
    assert (now.version, now.revision_id) == ("1", "rev-3")


def test_a_restore_that_never_reads_back_is_not_proven_after_the_read_window(
    offline: DeployConfig, stub: Stubber
) -> None:
    offline = _policy(offline, alias_read_window_s=0)
    stub.add_response("get_alias", _alias("2", "rev-2"))
    stub.add_response("update_alias", _alias("1", "rev-3"))
    stub.add_response("get_alias", _alias("2", "rev-2"))
    with pytest.raises(AwsError, match="is not proven"):
        restore_alias(offline, NAME, AliasState(name="live", version="1"))


def test_a_stale_read_of_someone_elses_older_move_is_not_taken_for_theirs(
    offline: DeployConfig, stub: Stubber
) -> None:
    previous = AliasState(name="live", version="1", revision_id="rev-1")
    moved = AliasState(name="live", version="2")
    stub.add_response("get_alias", _alias("7", "rev-0"))  # stale: an older, foreign state
    stub.add_response("get_alias", _alias("2", "rev-2"))  # fresh: this deploy's move
    stub.add_response("update_alias", _alias("1", "rev-3"))
    stub.add_response("get_alias", _alias("1", "rev-3"))
    now = restore_alias(offline, NAME, previous, window_s=5, moved_to=moved)
    assert (now.version, now.revision_id) == ("1", "rev-3")


def test_a_move_by_another_deploy_that_persists_is_left_alone(
    offline: DeployConfig, stub: Stubber
) -> None:
    offline = _policy(offline, alias_read_window_s=0)  # the window: this one read
    previous = AliasState(name="live", version="1", revision_id="rev-1")
    stub.add_response("get_alias", _alias("7", "rev-9"))
    with pytest.raises(AwsError, match="another deploy moved it"):
        restore_alias(
            offline, NAME, previous, window_s=5, moved_to=AliasState(name="live", version="2")
        )
