"""Network faults: the AWS endpoint refusing connections or throttling, MySQL and the registry
unreachable — each injected for real while a deploy runs.

AWS faults go through rehearsal/fault_proxy.py, a real TCP proxy the deploy's AWS endpoint is
pointed at: it closes its port and resets open connections (a real "connection refused"),
or answers requests with AWS's own throttling errors. The verdicts read the aliases back
from moto directly, never through the proxy.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from gangway.config import load_config
from gangway.errors import AwsError
from rehearsal.fault_proxy import FaultProxy
from tasks import lambda_read
from tasks.aws import MAX_ATTEMPTS
from tasks.lambda_invoke import THROTTLE_BACKOFF_S
from tasks.ledger import Ledger

from .conftest import FAULTS_ENV, FaultRun

pytestmark = pytest.mark.stack

ENDPOINT_VARIABLE = "GANGWAY_ENVIRONMENT__AWS__ENDPOINT_URL"
# Shorter than the restore window (environment.deploy.restore_window_s, 60 s) by far: a blip.
SHORT_OUTAGE_S = 5.0
PAST_WINDOW_S = 3  # a restore window the outage outlasts
# Each burst is shared by the parallel calls of one step (7 functions): more throttles than
# calls, so at least one call is throttled twice.
LAMBDA_BURST = 8
# The log scan turns an AwsError into a failed check (no step retry), so its burst stays
# below one call's attempts: the row proves botocore's retries, not luck.
LOGS_BURST = MAX_ATTEMPTS - 1
THROTTLED_LAMBDA = ("lambda:UpdateFunctionCode", "lambda:PublishVersion", "lambda:UpdateAlias")
# A throttled invoke is retried by the smoke step itself (4 backoffs). Cases of different
# functions run concurrently, so the burst may land on one case or spread over several: each
# case meets at most the whole burst, which must fit one case's attempts.
INVOKE_BURST = len(THROTTLE_BACKOFF_S)


@pytest.fixture
def aws_proxy(fault: FaultRun, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """The deploy's AWS endpoint replaced by a fault proxy in front of the real one.

    Depends on ``fault`` so the row's own reads (before/after aliases) stay direct.
    """
    upstream = fault.config.environment.aws.endpoint_url
    assert upstream, "the fault environment must point at the rehearsal stack's AWS endpoint"
    with FaultProxy(upstream=upstream) as proxy:
        monkeypatch.setenv(ENDPOINT_VARIABLE, proxy.url)
        yield proxy


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------------------- AWS outage


@pytest.mark.fault("AWS endpoint down from the first UpdateFunctionCode", group="network")
def test_aws_endpoint_down_before_traffic_fails_and_moves_nothing(
    fault: FaultRun, aws_proxy: FaultProxy, new_image: None
) -> None:
    aws_proxy.down_when("lambda:UpdateFunctionCode")
    attempt = fault.deploy()
    fault.blocked(
        attempt,
        step="deploy",
        boundary="aws",
        says=(f"the AWS endpoint {aws_proxy.url} did not answer", "check network access to"),
    )
    [reset] = aws_proxy.seen(action="reset")
    assert reset.kind == "lambda:UpdateFunctionCode"
    assert not aws_proxy.is_up, "the outage lasted to the end of the attempt"
    assert not aws_proxy.seen("lambda:UpdateAlias"), "nothing may touch an alias"


@pytest.mark.fault("AWS endpoint down after the alias moved, back after 5 s", group="network")
def test_aws_endpoint_down_after_the_shift_rolls_back_once_it_answers(
    fault: FaultRun, aws_proxy: FaultProxy, new_image: None, caplog: pytest.LogCaptureFixture
) -> None:
    # The first smoke invoke is the first request after every alias moved.
    aws_proxy.down_when("lambda:Invoke", up_after=SHORT_OUTAGE_S)
    attempt = fault.deploy()
    fault.rolled_back(
        attempt,
        step="smoke",
        boundary="deployment",
        says=(aws_proxy.url, "check network access to"),
    )
    down, up = aws_proxy.outages()
    assert (down.action, up.action) == ("down", "up")
    updates = aws_proxy.seen("lambda:UpdateAlias", action="forwarded")
    shifted = [s for s in updates if s.seq < down.seq]
    restored = [s for s in updates if s.seq > up.seq]
    assert len(shifted) == len(restored) == len(fault.config.functions)
    # The restore was tried while the endpoint refused connections, and kept trying (the
    # restore step logs each retry on the task run).
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert retries and all(aws_proxy.url in m and "did not answer" in m for m in retries)


# The default restore window (60 s) would make a slow row; a short one is outlasted.
@pytest.mark.fault(
    "AWS endpoint down past the restore window: rollback FAILED, next deploy recovers",
    group="network",
)
def test_rollback_failed_past_the_window_is_recovered_by_the_next_deploy(
    fault: FaultRun,
    aws_proxy: FaultProxy,
    new_image: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__DEPLOY__RESTORE_WINDOW_S", str(PAST_WINDOW_S))
    aws_proxy.down_when("lambda:Invoke")  # and it stays down past the window
    failed = fault.deploy()
    first = failed.record
    assert first is not None and first.rollback is not None
    assert first.rollback["result"] == "FAILED", first.rollback
    for key, restore in first.rollback["functions"].items():
        assert f"did not accept it within {PAST_WINDOW_S} s" in restore["error"], key
        assert aws_proxy.url in restore["error"] and "update-alias" in restore["error"]
    stranded = {k for k, m in first.functions.items() if m.alias_moved}
    assert stranded and all(not first.functions[k].restore_verified for k in stranded)

    aws_proxy.up()
    monkeypatch.delenv("GANGWAY_SERVICE__BUILD__DOCKERFILE")  # the next deploy: the healthy HEAD
    then = fault.deploy()
    record = fault.recovered(
        then,
        caught_at="next deploy: recovery",
        boundary="aws",
        evidence=f"rollback FAILED after {PAST_WINDOW_S} s; the next deploy restored first",
    )
    closed = Ledger().get(first.deploy_id)
    assert closed is not None and closed.rollback is not None
    assert (closed.rollback["result"], closed.rollback["by"]) == ("verified", "recovery")
    # Recovery ran before the next deploy read the world: it saw the old versions as "before".
    assert {k: record.functions[k].version_before for k in stranded} == {
        k: fault.before[k][0] for k in stranded
    }


# ----------------------------------------------------------------------------- throttling


@pytest.mark.fault(
    "throttling bursts: Lambda 429 (update, publish, alias, invoke), Logs", group="network"
)
def test_throttling_burst_is_retried_and_the_deploy_succeeds(
    fault: FaultRun, aws_proxy: FaultProxy, new_image: None
) -> None:
    for kind in THROTTLED_LAMBDA:
        aws_proxy.throttle(LAMBDA_BURST, match=kind)
    aws_proxy.throttle(LOGS_BURST, match="logs:FilterLogEvents")
    aws_proxy.throttle(INVOKE_BURST, match="lambda:Invoke")
    attempt = fault.deploy()
    throttled = aws_proxy.counts("throttled")
    forwarded = aws_proxy.counts("forwarded")
    fault.recovered(
        attempt,
        caught_at="deploy, shift, smoke, log scan (retried)",
        boundary="aws",
        evidence=", ".join(f"{k} throttled {n}x" for k, n in sorted(throttled.items())),
    )
    # The proxy really answered every throttle, and each call then got through.
    assert throttled == {
        **dict.fromkeys(THROTTLED_LAMBDA, LAMBDA_BURST),
        "logs:FilterLogEvents": LOGS_BURST,
        "lambda:Invoke": INVOKE_BURST,
    }
    functions = len(fault.config.functions)
    assert all(forwarded[kind] >= functions for kind in THROTTLED_LAMBDA), forwarded
    assert forwarded["logs:FilterLogEvents"] >= functions, forwarded


def test_a_burst_longer_than_the_retries_is_reported_with_the_attempts(
    stack: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a row: what a deploy shows once botocore gives up on a throttled call."""
    direct = load_config(FAULTS_ENV)
    with FaultProxy(upstream=str(direct.environment.aws.endpoint_url)) as proxy:
        monkeypatch.setenv(ENDPOINT_VARIABLE, proxy.url)
        config = load_config(FAULTS_ENV)
        proxy.throttle(10 * MAX_ATTEMPTS, match="lambda:GetAlias")
        with pytest.raises(AwsError) as err:
            lambda_read.read_alias(config, config.functions["api"].name)
    text = err.value.render()
    assert f"throttled by AWS after {MAX_ATTEMPTS} attempts" in text
    assert "TooManyRequestsException (HTTP 429): Rate exceeded" in text
    assert "wait a minute and re-run" in err.value.remedy
    # Measured on the wire: exactly MAX_ATTEMPTS requests, every one answered by the proxy.
    assert proxy.counts() == proxy.counts("throttled") == {"lambda:GetAlias": MAX_ATTEMPTS}


# ------------------------------------------------------------------ MySQL and the registry


@pytest.mark.fault("MySQL unreachable (closed port)", group="network")
def test_unreachable_database_blocks_at_the_deploy_lock(
    fault: FaultRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = closed_port()
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__DATABASE__PORT", str(port))
    attempt = fault.deploy()
    record = fault.blocked(
        attempt, step="deploy lock", boundary="data", says=(f"127.0.0.1:{port}", "start MySQL")
    )
    assert not record.steps, "nothing ran without the lock"


@pytest.mark.fault("registry down during push", group="network")
def test_registry_down_during_push_fails_before_anything_moves(
    fault: FaultRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = f"127.0.0.1:{closed_port()}"
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__REGISTRY", registry)
    attempt = fault.deploy()
    record = fault.blocked(attempt, step="push", boundary="registry", says=(registry,))
    assert record.image_digest is None, "no digest can have been read back"
