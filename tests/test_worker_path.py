"""The worker path: flows started the way prefect.yaml says, as flow runs of deployments that
the stack's process worker picks up, acting on the same ledger and stack as the test."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from alias_reads import settle
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from gangway.config import REPO_ROOT, gangway_home, load_config
from gangway.record import DeployRecord, Event, EventKind, Outcome
from rehearsal import prefect_worker
from tasks import lambda_read
from tasks.env_lock import deploy_lock
from tasks.ledger import Ledger, ledger_url

# The fault matrix's environment, so this module runs in its lane (tests/conftest.py).
pytestmark = [pytest.mark.stack, pytest.mark.xdist_group("qa")]

ENV = os.environ.get("GANGWAY_FAULTS_ENV", "qa")


def flow_run_env() -> dict[str, str]:
    """The test's ledger and home, for the flow runs the worker starts."""
    return {"GANGWAY_LEDGER_URL": ledger_url(), "GANGWAY_HOME": str(gangway_home())}


def pick_up_s(run: FlowRun) -> float:
    """From when the run was due to when its flow process started running it."""
    with get_client(sync_client=True) as prefect:
        done = prefect.read_flow_run(run.id)
    assert done.start_time is not None and done.expected_start_time is not None, done
    return (done.start_time - done.expected_start_time).total_seconds()


def test_the_stack_runs_a_worker_on_the_gangway_pool(stack: object) -> None:
    assert prefect_worker.worker_ready(), "no worker of the pool heard from recently"
    names = prefect_worker.deployment_names()
    assert {f"reconcile/reconcile-{env}" for env in ("dev", "staging", "prod")} <= set(names)
    with get_client(sync_client=True) as prefect:
        for name in names:
            deployment = prefect.read_deployment_by_name(name)
            assert deployment.work_pool_name == prefect_worker.POOL, name
        reconcile = prefect.read_deployment_by_name(f"reconcile/reconcile-{ENV}")
    assert [s.schedule.interval.total_seconds() for s in reconcile.schedules] == [60.0]  # type: ignore[union-attr]
    assert reconcile.paused, "the test session pauses the reconcilers"


def test_a_deploy_started_as_prefect_yaml_says_runs_on_the_worker(stack: object) -> None:
    known = set(Ledger().deploy_ids())
    run = run_deployment(
        f"deploy/deploy-{ENV}",
        job_variables={"env": flow_run_env()},
        timeout=600,
        poll_interval=1,
        as_subflow=False,
    )
    assert run.state is not None and run.state.is_completed(), run.state
    assert run.name.startswith(f"{ENV} · ") and run.name.endswith(" · deploy"), run.name
    # This environment's records only: the other lane deploys elsewhere meanwhile.
    fresh = [
        r
        for i in Ledger().deploy_ids(ENV)
        if i not in known and (r := Ledger().get(i))
    ]
    assert [r.flow_run_id for r in fresh] == [str(run.id)], fresh
    record = fresh[0]
    assert record.outcome is Outcome.SUCCEEDED, record.message
    config = load_config(ENV)
    settle(config)
    for key, move in record.functions.items():
        alias = lambda_read.read_alias(config, config.functions[key].name)
        assert alias.version == move.version_after and not alias.weights, (key, alias)
    print(f"worker pick-up latency: {pick_up_s(run):.1f}s")


def test_the_reconcile_deployment_closes_an_abandoned_deploy(stack: object) -> None:
    ledger = Ledger()
    abandoned = ledger.write(DeployRecord(env=ENV, commit_sha="a" * 40, actor="killed@ci"))
    run = run_deployment(
        f"reconcile/reconcile-{ENV}",
        job_variables={"env": flow_run_env()},
        timeout=300,
        poll_interval=1,
        as_subflow=False,
    )
    assert run.state is not None and run.state.is_completed(), run.state
    assert run.name == f"{ENV} · reconcile"
    closed = ledger.get(abandoned.deploy_id)
    assert closed is not None and closed.outcome is Outcome.INTERRUPTED, closed
    assert (closed.rollback or {}).get("actor") == "reconciler", closed.rollback
    print(f"worker pick-up latency (reconcile): {pick_up_s(run):.1f}s")


def _reconcile_in_a_process() -> subprocess.Popen[str]:
    code = f"from flows.reconcile import reconcile; print(reconcile({ENV!r}))"
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO_ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


def test_two_reconcilers_at_once_close_an_abandoned_deploy_once(stack: object) -> None:
    ledger = Ledger()
    abandoned = ledger.write(DeployRecord(env=ENV, commit_sha="b" * 40, actor="killed@ci"))
    procs = [_reconcile_in_a_process() for _ in range(2)]
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    events = [e for e in ledger.events(abandoned.deploy_id) if e.kind is EventKind.RECOVERED]
    assert len(events) == 1, events


def test_a_reconciler_does_not_wait_for_a_deploy_holding_the_lock(stack: object) -> None:
    from flows.reconcile import reconcile

    config = load_config(ENV)
    ledger = Ledger()
    abandoned = ledger.write(DeployRecord(env=ENV, commit_sha="c" * 40, actor="killed@ci"))
    try:
        with deploy_lock(config, 5, lambda: "test"):
            began = time.monotonic()
            result = reconcile(ENV)
            assert result["lock"] == "held" and result["closed"] == [], result
            assert time.monotonic() - began < 15
            left = ledger.get(abandoned.deploy_id)
            assert left is not None and left.outcome is Outcome.RUNNING, "moved under a lock"
        result = reconcile(ENV)
        assert abandoned.deploy_id in [c["deploy_id"] for c in result["closed"]], result
    finally:
        if (left := ledger.get(abandoned.deploy_id)) and left.outcome is Outcome.RUNNING:
            ledger.append(
                Event(deploy_id=abandoned.deploy_id, kind=EventKind.FINISHED,
                      data={"outcome": "failed", "message": "test cleanup"}),
                ENV,
            )

