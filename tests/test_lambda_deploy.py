"""The pipeline → Lambda boundary: describe, gate, publish by digest, move and restore aliases
(tasks/lambda_read, lambda_config_gate, lambda_publish, lambda_alias).

Stack tests run against moto over HTTP with the invoke bridge; the ones that move aliases or
change function configuration use the `staging` environment (dev belongs to other tests) and
put everything back. The offline tests stub AWS's own error shapes that moto never produces
(RevisionId conflicts, a failed update, a version that reports another image).
"""

from __future__ import annotations

import re
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from alias_reads import settled_alias
from botocore.stub import Stubber

from gangway.config import DeployConfig, load_config
from gangway.errors import AwsError
from gangway.evidence import GateFailed, Status
from rehearsal.fault_proxy import FaultProxy
from rehearsal.lambda_waits import wait_updated
from tasks import lambda_alias, lambda_publish, lambda_read
from tasks.aws import RESTORE_READ_TIMEOUT_S, client
from tasks.lambda_alias import restore_alias, restore_aliases, set_canary, shift_alias
from tasks.lambda_config_gate import config_gate
from tasks.lambda_publish import DeployedVersion, deploy_version
from tasks.lambda_read import AliasState, LiveFunction, describe_functions
from tasks.registry import PushedImage

# The ticker fetcher answers without the database: the cheapest function to invoke.
CANARY_KEY = "ticker_fetcher"
DIGEST_A = "127.0.0.1:5000/daily-report@sha256:" + "a" * 64
DIGEST_B = "127.0.0.1:5000/daily-report@sha256:" + "b" * 64


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def staging(stack: object) -> DeployConfig:
    """The staging rehearsal environment: the one these tests may change and restore."""
    return load_config("staging")


@pytest.fixture(scope="module")
def lam(staging: DeployConfig) -> Any:
    """A Lambda client for staging, with room for a cold invoke."""
    return client(staging, "lambda", read_timeout=120)


def _versions(lam: Any, name: str) -> list[str]:
    pages = lam.get_paginator("list_versions_by_function").paginate(FunctionName=name)
    return [v["Version"] for p in pages for v in p["Versions"] if v["Version"] != "$LATEST"]


@pytest.fixture(scope="module")
def deployed(
    staging: DeployConfig, lam: Any, pushed_image: PushedImage
) -> tuple[DeployedVersion, DeployedVersion, list[str], list[str]]:
    """The reference image deployed to the canary function twice: (first, rerun, versions)."""
    name = staging.functions[CANARY_KEY].name
    alias = settled_alias(staging, name)
    if alias.weights:  # a run killed mid-canary left weights behind; start from a clean alias
        restore_alias(staging, name, alias.model_copy(update={"weights": {}}))
    live = describe_functions(staging)[CANARY_KEY]
    before = _versions(lam, name)
    first = deploy_version(staging, live, pushed_image.by_digest)
    after_first = _versions(lam, name)
    rerun = deploy_version(staging, describe_functions(staging)[CANARY_KEY], pushed_image.by_digest)
    assert _versions(lam, name) == after_first, "a re-run published another version"
    if first.previous_alias.version == first.version:
        # A previous session moved the alias to this digest and died: give it a baseline.
        shift_alias(staging, name, next(v for v in reversed(after_first) if v != first.version))
    return first, rerun, before, after_first


@pytest.fixture
def restore_config(lam: Any) -> Iterator[Callable[[str], None]]:
    """Remember a function's configuration before a test changes it; put it back after."""
    saved: dict[str, dict[str, Any]] = {}

    def remember(name: str) -> None:
        conf = lam.get_function_configuration(FunctionName=name)
        saved[name] = {
            "Environment": {"Variables": conf["Environment"]["Variables"]},
            "Timeout": conf["Timeout"],
            "MemorySize": conf["MemorySize"],
        }

    yield remember
    for name, conf in saved.items():
        lam.update_function_configuration(FunctionName=name, **conf)
        wait_updated(lam, name)  # the next test's update would be refused meanwhile


# --- describe and the config gate (stack) ---------------------------------------------------


@pytest.mark.stack
def test_describe_returns_every_function_with_its_alias(
    dev_config: DeployConfig, staging: DeployConfig
) -> None:
    started = time.monotonic()
    live = describe_functions(dev_config)
    elapsed = time.monotonic() - started
    assert set(live) == set(dev_config.functions) and len(live) == 7
    for key, fn in live.items():
        assert fn.name == dev_config.functions[key].name
        assert fn.package_type == "Image" and fn.image_uri
        assert fn.alias.name == "live" and fn.alias.version.isdigit()
        assert fn.arn.endswith(f":function:{fn.name}")
    # Env values are secrets: present for comparison, hidden from every rendering.
    token = dev_config.functions["telegram"].env_plain()["TELEGRAM_BOT_TOKEN"]
    telegram = live["telegram"]
    assert telegram.env["TELEGRAM_BOT_TOKEN"].get_secret_value() == token
    assert token not in repr(telegram) and token not in telegram.model_dump_json()
    print(f"\ndescribe_functions: 7 functions in {elapsed:.2f} s")


@pytest.mark.stack
def test_config_gate_passes_for_the_seeded_functions(staging: DeployConfig) -> None:
    result = config_gate(staging, describe_functions(staging))
    assert result.status is Status.PASSED, result.summary()
    assert result.gate == "function config" and result.boundary == "deployment"
    assert len(result.checks) == 7 * 6


@pytest.mark.stack
def test_config_gate_names_the_function_and_the_missing_env_keys(
    staging: DeployConfig, lam: Any, restore_config: Callable[[str], None]
) -> None:
    fn = staging.functions["telegram"]
    restore_config(fn.name)
    env = {k: v for k, v in fn.env_plain().items() if k not in ("DB_HOST", "TELEGRAM_BOT_TOKEN")}
    lam.update_function_configuration(FunctionName=fn.name, Environment={"Variables": env})
    wait_updated(lam, fn.name)

    result = config_gate(staging, describe_functions(staging))
    assert result.status is Status.FAILED
    failed = {c.name: c for c in result.failures}
    assert set(failed) == {f"telegram ({fn.name}): required env"}
    check = failed[f"telegram ({fn.name}): required env"]
    assert check.found == "missing: DB_HOST, TELEGRAM_BOT_TOKEN"
    assert "add DB_HOST, TELEGRAM_BOT_TOKEN to the function's environment" in check.remedy
    assert check.evidence["function"] == fn.name and check.evidence["key"] == "telegram"
    rendered = str(GateFailed(result)) + result.model_dump_json()
    for secret in (fn.env_plain()["TELEGRAM_BOT_TOKEN"], fn.env_plain()["DB_PASSWORD"]):
        assert secret not in rendered


@pytest.mark.stack
def test_config_gate_fails_on_drifted_values_timeout_and_memory(
    staging: DeployConfig, lam: Any, restore_config: Callable[[str], None]
) -> None:
    fn = staging.functions["api"]
    restore_config(fn.name)
    env = {**fn.env_plain(), "DB_PASSWORD": "not-the-declared-one"}
    lam.update_function_configuration(
        FunctionName=fn.name,
        Timeout=fn.spec.timeout + 30,
        MemorySize=fn.spec.memory * 2,
        Environment={"Variables": env},
    )
    wait_updated(lam, fn.name)

    result = config_gate(staging, describe_functions(staging))
    failed = {c.name.removeprefix(f"api ({fn.name}): "): c for c in result.failures}
    assert set(failed) == {"timeout", "memory", "declared env values"}
    assert failed["timeout"].expected == "30 s" and failed["timeout"].found == "60 s"
    assert failed["memory"].expected == "512 MB" and failed["memory"].found == "1024 MB"
    assert failed["declared env values"].found == "differ: DB_PASSWORD"
    rendered = str(GateFailed(result))
    assert "not-the-declared-one" not in rendered
    assert fn.env_plain()["DB_PASSWORD"] not in rendered


# --- publishing (stack) ---------------------------------------------------------------------


@pytest.mark.stack
def test_deploy_publishes_a_version_running_the_digest_and_a_rerun_reuses_it(
    staging: DeployConfig,
    lam: Any,
    pushed_image: PushedImage,
    deployed: tuple[DeployedVersion, DeployedVersion, list[str], list[str]],
) -> None:
    first, rerun, before, after_first = deployed
    assert first.image_uri == pushed_image.by_digest
    version = lam.get_function(FunctionName=first.name, Qualifier=first.version)
    assert version["Code"]["ImageUri"] == pushed_image.by_digest
    assert version["Configuration"]["CodeSha256"] == first.code_sha256
    if first.reused:  # an earlier session already published this digest
        assert after_first == before and first.version in before
    else:
        assert after_first == [*before, first.version]
        print(f"\nupdate + publish + verify: {first.duration_s:.2f} s")
    assert rerun.reused and rerun.version == first.version
    # The version serving traffic before still runs its own image (rollback depends on it).
    if first.previous_alias.version != first.version:
        old = lam.get_function(FunctionName=first.name, Qualifier=first.previous_alias.version)
        assert old["Code"]["ImageUri"] != pushed_image.by_digest
    assert rerun.code_sha256 == first.code_sha256
    print(f"\nre-run (reuse) check: {rerun.duration_s:.2f} s")


@pytest.mark.stack
def test_deploy_refuses_a_tag(staging: DeployConfig, pushed_image: PushedImage) -> None:
    live = describe_functions(staging)[CANARY_KEY]
    tagged = f"{pushed_image.registry}/{pushed_image.repository}:{pushed_image.tag}"
    with pytest.raises(AwsError, match=r"refusing to deploy .* from a tag"):
        deploy_version(staging, live, tagged)


# --- moving traffic (stack) -----------------------------------------------------------------


@pytest.mark.stack
def test_shift_then_restore_reads_the_alias_back_on_the_previous_version(
    staging: DeployConfig,
    lam: Any,
    deployed: tuple[DeployedVersion, DeployedVersion, list[str], list[str]],
) -> None:
    first = deployed[0]
    previous = settled_alias(staging, first.name)
    assert previous.version != first.version
    try:
        moved = shift_alias(staging, first.name, first.version)
        assert moved.version == first.version and moved.weights == {}
        assert settled_alias(staging, first.name).routes_like(moved)
        response = lam.invoke(FunctionName=first.name, Qualifier="live", Payload=b"{}")
        assert response["ExecutedVersion"] == first.version
    finally:
        started = time.monotonic()
        back = restore_alias(staging, first.name, previous)
        elapsed = time.monotonic() - started
    assert back.version == previous.version and back.weights == {}
    assert settled_alias(staging, first.name).routes_like(previous)
    print(f"\nrestore_alias (update + read-back): {elapsed:.2f} s")


@pytest.mark.stack
def test_canary_routes_invokes_to_both_versions(
    staging: DeployConfig,
    lam: Any,
    deployed: tuple[DeployedVersion, DeployedVersion, list[str], list[str]],
) -> None:
    first = deployed[0]
    previous = settled_alias(staging, first.name)
    seen: Counter[str] = Counter()
    started = time.monotonic()
    try:
        canary = set_canary(staging, first.name, previous.version, first.version, 50)
        assert canary.version == previous.version and canary.weights == {first.version: 0.5}
        assert settled_alias(staging, first.name).routes_like(canary)
        # Stop once both versions answered: with 50 % each, 20 invokes miss one ~2e-6 of runs.
        for _ in range(20):
            response = lam.invoke(FunctionName=first.name, Qualifier="live", Payload=b"{}")
            seen[response["ExecutedVersion"]] += 1
            if len(seen) == 2 and seen.total() >= 4:
                break
    finally:
        restore_alias(staging, first.name, previous)
    assert set(seen) == {previous.version, first.version}, seen
    print(f"\ncanary: {dict(seen)} in {time.monotonic() - started:.1f} s")


@pytest.mark.stack
def test_invalid_canary_is_refused_before_any_call(staging: DeployConfig) -> None:
    name = staging.functions[CANARY_KEY].name
    with pytest.raises(AwsError, match="invalid canary"):
        set_canary(staging, name, "1", "1", 10)
    with pytest.raises(AwsError, match="must be a published version"):
        shift_alias(staging, name, "$LATEST")


# --- concurrency preconditions (the bridge enforces them as AWS does) ---------------------


@pytest.mark.stack
def test_rehearsal_refuses_an_alias_update_with_a_stale_revision(
    staging: DeployConfig, lam: Any
) -> None:
    name = staging.functions[CANARY_KEY].name
    current = lam.get_alias(FunctionName=name, Name="live")
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        # Same version: if the stack wrongly accepts it, nothing changes.
        lam.update_alias(
            FunctionName=name,
            Name="live",
            FunctionVersion=current["FunctionVersion"],
            RevisionId="stale-revision",
        )


@pytest.mark.stack
def test_rehearsal_refuses_a_publish_with_another_code_sha(
    staging: DeployConfig,
    lam: Any,
    deployed: tuple[DeployedVersion, DeployedVersion, list[str], list[str]],
) -> None:
    # After the deploy $LATEST is unchanged since its publish, so a wrongly accepted call
    # returns the existing version instead of adding one.
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.publish_version(FunctionName=deployed[0].name, CodeSha256="0" * 64)


# --- missing resources (stack) --------------------------------------------------------------


@pytest.mark.stack
def test_a_missing_function_is_named(staging: DeployConfig) -> None:
    ghost = staging.functions["api"].model_copy(update={"name": "daily-report-staging-ghost"})
    config = staging.model_copy(update={"functions": {**staging.functions, "api": ghost}})
    with pytest.raises(AwsError) as raised:
        describe_functions(config)
    assert raised.value.message == "function daily-report-staging-ghost does not exist"
    assert "infrastructure" in raised.value.remedy


@pytest.mark.stack
def test_a_missing_alias_is_named(staging: DeployConfig) -> None:
    environment = staging.environment.model_copy(update={"alias": "no-such-alias"})
    config = staging.model_copy(update={"environment": environment})
    with pytest.raises(AwsError) as raised:
        describe_functions(config)
    assert raised.value.message.startswith("alias no-such-alias of function daily-report-staging-")
    assert "create alias no-such-alias" in raised.value.remedy


# --- AWS behaviour moto does not produce (offline, stubbed) --------------------------------


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


NAME = "daily-report-staging-ticker-fetcher"
ALIAS_V1 = {"Name": "live", "FunctionVersion": "1", "RevisionId": "rev-1"}


def _conf(version: str = "$LATEST", **extra: Any) -> dict[str, Any]:
    return {
        "FunctionName": NAME,
        "Version": version,
        "PackageType": "Image",
        "Timeout": 60,
        "MemorySize": 256,
        "Architectures": ["x86_64"],
        "Environment": {"Variables": {"TZ": "Asia/Bangkok"}},
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "CodeSha256": "a" * 64,
        **extra,
    }


def _live() -> LiveFunction:
    return LiveFunction.model_validate(
        {
            "key": CANARY_KEY,
            "name": NAME,
            "arn": f"arn:aws:lambda:ap-southeast-1:1:function:{NAME}",
            "package_type": "Image",
            "image_uri": DIGEST_A,
            "code_sha256": "a" * 64,
            "env": {"TZ": "Asia/Bangkok"},
            "timeout": 60,
            "memory": 256,
            "architectures": ["x86_64"],
            "state": "Active",
            "last_update_status": "Successful",
            "alias": AliasState(name="live", version="1", revision_id="rev-1"),
        }
    )


def _until_listing(stub: Stubber) -> None:
    """Stub a deploy's first reads: the alias, then $LATEST running DIGEST_A."""
    stub.add_response("get_alias", ALIAS_V1, {"FunctionName": NAME, "Name": "live"})
    latest = {"Configuration": _conf(), "Code": {"ImageUri": DIGEST_A}}
    stub.add_response("get_function", latest, {"FunctionName": NAME, "Qualifier": "$LATEST"})


def _reused(stub: Stubber, version: str) -> None:
    """Stub the reads of a reused version running DIGEST_B: in full, Active, verified."""
    on_b = {"Configuration": _conf(version, CodeSha256="b" * 64), "Code": {"ImageUri": DIGEST_B}}
    stub.add_response("get_function", on_b, {"FunctionName": NAME, "Qualifier": version})
    stub.add_response("get_function_configuration", _conf(version, CodeSha256="b" * 64))  # Active
    stub.add_response("get_function", on_b, {"FunctionName": NAME, "Qualifier": version})


def _until_update(stub: Stubber) -> None:
    """Stub a deploy of DIGEST_B up to and including UpdateFunctionCode."""
    _until_listing(stub)
    # Version 1 runs DIGEST_A (its listed CodeSha256): not read in full, nothing to reuse.
    stub.add_response("list_versions_by_function", {"Versions": [_conf(), _conf("1")]})
    stub.add_response("get_function_configuration", _conf())  # Active (not Pending)
    stub.add_response("get_function_configuration", _conf())  # no update in progress
    stub.add_response("update_function_code", _conf(CodeSha256="b" * 64))


def test_a_failed_update_is_reported_with_lambdas_reason(
    offline: DeployConfig, stub: Stubber
) -> None:
    _until_update(stub)
    failed = _conf(
        LastUpdateStatus="Failed",
        LastUpdateStatusReason="Lambda does not have permission to access the ECR image.",
        LastUpdateStatusReasonCode="ImageAccessDenied",
    )
    stub.add_response("get_function_configuration", _conf(LastUpdateStatus="InProgress"))
    stub.add_response("get_function", {"Configuration": failed})  # the waiter's Failed acceptor
    stub.add_response("get_function_configuration", failed)
    with pytest.raises(AwsError) as raised:
        deploy_version(offline, _live(), DIGEST_B, wait_s=5)
    assert raised.value.message == f"{NAME}:$LATEST failed: LastUpdateStatus is Failed"
    assert "ImageAccessDenied" in raised.value.found and "ECR" in raised.value.remedy


def test_a_publish_racing_another_deploy_is_refused(offline: DeployConfig, stub: Stubber) -> None:
    _until_update(stub)
    stub.add_response("get_function_configuration", _conf(CodeSha256="b" * 64))
    stub.add_client_error(
        "publish_version",
        service_error_code="PreconditionFailedException",
        http_status_code=412,
        expected_params={
            "FunctionName": NAME,
            "CodeSha256": "b" * 64,
            "Description": f"gangway: {DIGEST_B}",
        },
    )
    with pytest.raises(AwsError, match="changed between update and publish: another deploy"):
        deploy_version(offline, _live(), DIGEST_B, wait_s=5)


def test_a_version_reporting_another_image_is_refused(offline: DeployConfig, stub: Stubber) -> None:
    _until_update(stub)
    stub.add_response("get_function_configuration", _conf(CodeSha256="b" * 64))
    stub.add_response("publish_version", _conf("2", CodeSha256="b" * 64))
    stub.add_response("get_function_configuration", _conf("2"))  # Active
    stub.add_response("get_function", {"Configuration": _conf("2"), "Code": {"ImageUri": DIGEST_A}})
    with pytest.raises(AwsError, match=r"version 2 of .* does not run the tested digest") as raised:
        deploy_version(offline, _live(), DIGEST_B, wait_s=5)
    assert raised.value.expected == DIGEST_B and DIGEST_A in raised.value.found


def test_an_update_still_in_progress_at_the_deadline_is_a_clear_error(
    offline: DeployConfig, stub: Stubber
) -> None:
    _until_update(stub)
    busy = _conf(LastUpdateStatus="InProgress")
    stub.add_response("get_function_configuration", busy)
    stub.add_response("get_function", {"Configuration": busy})  # waiter: 1 attempt, no verdict
    stub.add_response("get_function_configuration", busy)
    with pytest.raises(AwsError, match="did not settle: LastUpdateStatus is InProgress"):
        deploy_version(offline, _live(), DIGEST_B, wait_s=0)


def _policy(config: DeployConfig, **changes: float) -> DeployConfig:
    deploy = config.environment.deploy.model_copy(update=changes)
    return config.model_copy(
        update={"environment": config.environment.model_copy(update={"deploy": deploy})}
    )


def test_an_alias_changed_by_another_writer_is_a_clear_error(
    offline: DeployConfig, stub: Stubber
) -> None:
    # Refused on every fresh read until the read window ends (here: at once).
    offline = _policy(offline, alias_read_window_s=0)
    stub.add_response("get_alias", ALIAS_V1)
    stub.add_client_error(
        "update_alias",
        service_error_code="PreconditionFailedException",
        http_status_code=412,
        expected_params={
            "FunctionName": NAME,
            "Name": "live",
            "FunctionVersion": "2",
            "RoutingConfig": {"AdditionalVersionWeights": {}},
            "RevisionId": "rev-1",
        },
    )
    with pytest.raises(AwsError, match="the alias changed under us: another deploy"):
        shift_alias(offline, NAME, "2")


def test_a_restore_that_does_not_read_back_is_not_proven(
    offline: DeployConfig, stub: Stubber
) -> None:
    stub.add_response("get_alias", {**ALIAS_V1, "FunctionVersion": "2"})
    stub.add_response("update_alias", ALIAS_V1)
    stub.add_response("get_alias", {**ALIAS_V1, "FunctionVersion": "3"})  # someone moved it
    with pytest.raises(AwsError, match=r"rollback of .* is not proven") as raised:
        restore_alias(offline, NAME, AliasState(name="live", version="1"))
    assert raised.value.expected == "live → 1" and raised.value.found == "live → 3"


def test_the_reuse_scan_reads_every_page_of_versions(offline: DeployConfig, stub: Stubber) -> None:
    # The version running the digest is on the second page (Lambda lists oldest first): a
    # scan of the first page alone would publish a duplicate instead of reusing it.
    _until_listing(stub)
    stub.add_response(
        "list_versions_by_function",
        {"Versions": [_conf(), _conf("1")], "NextMarker": "page-2"},
        {"FunctionName": NAME},
    )
    stub.add_response(
        "list_versions_by_function",
        {"Versions": [_conf("2", CodeSha256="b" * 64)]},
        {"FunctionName": NAME, "Marker": "page-2"},
    )
    _reused(stub, "2")
    deployed = deploy_version(offline, _live(), DIGEST_B, wait_s=5)
    assert deployed.reused and deployed.version == "2"
    assert deployed.code_sha256 == "b" * 64


def test_the_healthy_version_is_reused_however_many_versions_came_after_it(
    offline: DeployConfig, stub: Stubber
) -> None:
    # The healthy image's version 1 and 30 newer versions of canaries (each its own digest),
    # as a matrix or a busy month leaves them. The listing's CodeSha256 finds version 1 at
    # once; a scan of only the newest versions (GetFunction each) published a duplicate.
    _until_listing(stub)
    canaries = [_conf(str(n), CodeSha256=f"{n:064x}") for n in range(2, 32)]
    stub.add_response(
        "list_versions_by_function",
        {"Versions": [_conf(), _conf("1", CodeSha256="b" * 64), *canaries]},
        {"FunctionName": NAME},
    )
    _reused(stub, "1")
    deployed = deploy_version(offline, _live(), DIGEST_B, wait_s=5)
    assert deployed.reused and deployed.version == "1"
    stub.assert_no_pending_responses()


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """An AWS endpoint that accepts connections and never answers (a hung control plane)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # the kernel completes the handshakes; nobody ever reads a request
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_restore_against_an_endpoint_that_never_answers_ends_with_its_window(
    offline: DeployConfig, silent_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one rollback of the deploy and of crash recovery: with botocore's own retries (5
    # attempts of a 60 s read timeout each) one call would hold it for minutes past its window.
    for name, value in (("AWS_ACCESS_KEY_ID", "offline"), ("AWS_SECRET_ACCESS_KEY", "offline")):
        monkeypatch.setenv(name, value)
    aws = offline.environment.aws.model_copy(update={"endpoint_url": silent_endpoint})
    environment = offline.environment.model_copy(update={"aws": aws})
    config = offline.model_copy(update={"environment": environment})
    window_s = 1.0
    started = time.monotonic()
    results = restore_aliases(config, {NAME: AliasState(name="live", version="1")}, window_s)
    elapsed = time.monotonic() - started
    failed = results[NAME]
    assert isinstance(failed, str)
    assert f"{NAME}:live FAILED: AWS did not accept it within 1 s (1 attempts)" in failed
    assert f"the AWS endpoint {silent_endpoint} did not answer" in failed
    # One request of at most the restore read timeout, then the window is over.
    assert elapsed < window_s + RESTORE_READ_TIMEOUT_S + 2, elapsed
    print(f"\nrestore against a silent endpoint gave up after {elapsed:.1f} s")


@pytest.mark.stack
def test_a_throttled_restore_sends_one_request_per_attempt_and_ends_with_its_window(
    staging: DeployConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [staging.functions[key].name for key in ("api", CANARY_KEY)]
    with FaultProxy(upstream=str(staging.environment.aws.endpoint_url)) as proxy:
        monkeypatch.setenv("GANGWAY_ENVIRONMENT__AWS__ENDPOINT_URL", proxy.url)
        config = load_config("staging")
        proxy.throttle(10_000, match="lambda:*")  # AWS refuses every call for its rate
        retries: list[str] = []
        window_s = 2.0
        started = time.monotonic()
        results = restore_aliases(
            config,
            {name: AliasState(name="live", version="1") for name in names},
            window_s,
            on_retry=retries.append,
        )
        elapsed = time.monotonic() - started
    attempts = 0
    for name in names:
        failed = results[name]
        assert isinstance(failed, str)
        found = re.search(rf"{name}:live FAILED: .* within 2 s \((\d+) attempts\)", failed)
        assert found, failed
        attempts += int(found.group(1))
        assert "throttled by AWS" in failed and "update-alias" in failed
    # On the wire: each attempt was one GetAlias (the first call of a restore), never
    # botocore's 5 with their 1 s-based backoff, which would multiply the window.
    assert proxy.counts() == proxy.counts("throttled") == {"lambda:GetAlias": attempts}
    assert len(retries) == attempts - len(names), retries
    assert all("retrying in" in m and "of the window left" in m for m in retries)
    assert elapsed < window_s + 1.5, elapsed
