"""Stack faults: a service the deploy stands on (not MySQL) dies mid-deploy.

- dockerd killed as smoke starts: every invoke fails (the moto bridge runs the function's image
  through dockerd and the Lambda RIE), the rollback still reaches AWS (moto needs no dockerd).
- the Prefect server stopped after traffic moved: the deploy stops at the next step boundary
  with an [orchestration] error and rolls back (the rule: README, "Plan, executor, record").

These rows kill a shared daemon: they run alone (the suite is serial; by hand, under
``flock /tmp/stack.lock``) and bring the daemon back, and prove it answers, whatever happened.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client

from gangway.record import EventKind, Outcome
from rehearsal.base_image import BASE_IMAGE
from rehearsal.system import (
    docker_client,
    docker_ready,
    ensure_dockerd,
    ensure_prefect,
    prefect_ready,
    registry_ready,
    stop_pid,
)
from tasks.aws import client
from tasks.ledger import Ledger

from .conftest import FAULTS_ENV, FaultRun
from .daemons import kill, stack_pid
from .test_orchestration import other_image

# These rows kill daemons every test shares: no other stack test runs meanwhile.
pytestmark = [pytest.mark.stack, pytest.mark.alone]

# What an all-at-once deploy runs after the alias moved, then its check before success.
AFTER_SHIFT = ("smoke", "log scan", "ground truth", "success")


def assert_invokes(fault: FaultRun) -> None:
    """The stack runs functions again: an invoke through the alias reaches the handler."""
    fn = fault.config.functions["query_tool"]
    answer = client(fault.config, "lambda").invoke(
        FunctionName=fn.name,
        Qualifier=fault.config.environment.alias,
        Payload=b'{"report_date": "2000-01-03"}',
    )
    payload = answer["Payload"].read().decode()
    assert "Rehearsal.StackError" not in payload, payload[:500]
    assert answer.get("ExecutedVersion"), answer


@pytest.mark.fault("dockerd killed during smoke", group="stack")
def test_dockerd_killed_during_smoke_rolls_back_through_aws(
    fault: FaultRun, tmp_path: Path
) -> None:
    pid = stack_pid("dockerd")
    spawned = fault.spawn("deploy", "--env", FAULTS_ENV, env=other_image(tmp_path, "dockerd"))
    try:
        seen = spawned.wait_for_step("shift traffic")
        kill(pid, "dockerd")  # smoke starts now: its invokes find no engine
        attempt = spawned.finish()
    finally:
        ensure_dockerd()
        # What dockerd's death must not take with it: the local base image (on disk under
        # /var/lib/docker) and the registry (its own daemon, not a container).
        assert docker_ready() and registry_ready()
        engine = docker_client(timeout=30)
        try:
            engine.images.get(BASE_IMAGE)
        finally:
            engine.close()
    # The bridge answers an invoke it cannot run with the stack's own error, not the handler's.
    record = fault.rolled_back(
        attempt, step="smoke", boundary="deployment", says=("Rehearsal.StackError", "[stack]")
    )
    assert record.deploy_id == seen.deploy_id
    assert attempt.exit_code == 1, attempt.output[-2000:]
    kinds = [e.kind for e in Ledger().events(record.deploy_id)]
    assert kinds.index(EventKind.MOVING) < kinds.index(EventKind.RESTORED)
    assert kinds.count(EventKind.FINISHED) == 1
    assert_invokes(fault)  # the bridge runs images again on the restarted engine


@pytest.mark.fault("the Prefect server stopped during a deploy", group="stack")
def test_prefect_stopped_after_traffic_moved_stops_and_rolls_back(
    fault: FaultRun, tmp_path: Path
) -> None:
    pid = stack_pid("prefect")
    spawned = fault.spawn("deploy", "--env", FAULTS_ENV, env=other_image(tmp_path, "prefect"))
    try:
        seen = spawned.wait_for_step("shift traffic")
        stop_pid("prefect", pid, timeout=10)
        attempt = spawned.finish()
    finally:
        ensure_prefect()
        assert prefect_ready()
    record = Ledger().get(seen.deploy_id)
    assert record is not None
    caught = str((record.trigger or {}).get("step"))
    # Caught at the first step boundary after the server went away (the stop takes a moment).
    assert caught in AFTER_SHIFT, record.trigger
    record = fault.rolled_back(
        attempt,
        step=caught,
        boundary="orchestration",
        says=("the Prefect API at", "/health", "gangway stack up"),
    )
    assert record.outcome is Outcome.ROLLED_BACK and record.finished_at is not None
    assert attempt.exit_code == 1, attempt.output[-2000:]
    assert "unexpected error" not in attempt.output, attempt.output[-2000:]
    kinds = [e.kind for e in Ledger().events(record.deploy_id)]
    assert kinds.count(EventKind.FINISHED) == 1 and kinds[-1] is EventKind.FINISHED
    # The restarted server answers, and still knows the run (its view stopped at the outage).
    assert record.flow_run_id
    with get_client(sync_client=True) as prefect:
        assert prefect.read_flow_run(UUID(record.flow_run_id)).id == UUID(record.flow_run_id)
