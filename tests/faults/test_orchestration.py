"""Orchestration faults: the deploy process itself killed, interrupted, or raced.

A killed process cannot clean up after itself: the next deploy must close its record and put
any alias it moved back before doing anything else, and with no next deploy the scheduled
reconciler (flows/reconcile.py) does the same within STRANDED_LIMIT_S. An interrupted one
(Ctrl-C, SIGTERM from a cancelled CI job or a cancelled flow run) must roll back on its way
out. Two deploys to one environment never overlap.
"""

from __future__ import annotations

import hashlib
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.states import Cancelling

from gangway import interrupts
from gangway.config import REPO_ROOT, DeployConfig, gangway_home
from gangway.record import DeployRecord, Outcome
from rehearsal import reconcilers
from tasks.aws import client
from tasks.env_lock import deploy_lock
from tasks.ledger import Ledger, ledger_url

from .conftest import FAULTS_ENV, Attempt, FaultRun

pytestmark = pytest.mark.stack

# Step boundaries in the order the ledger records them. (migrate itself is a no-op when
# nothing is pending, so "migration applied" stands for the migration boundary.)
BOUNDARIES = (
    "build",
    "in-image gate",
    "push",
    "migration lint",
    "migration applied",
    "verify columns",
    "config gate",
    "deploy",
    "shift traffic",
    "smoke",
    "log scan",
    "ground truth",
)
# A canary with a long bake keeps the process alive after the last gate, so a kill "after
# ground truth" cannot land after the deploy already finished (the kill is not a step hook:
# it follows the ledger from outside, 20 ms behind). It also makes recovery undo weights.
CANARY = ("--canary", "50", "--bake", "120")
# The step boundaries after which traffic has moved (the canary's share, then gates on it).
TRAFFIC_MOVED = ("shift traffic", "smoke", "log scan", "ground truth")
# How long a reconciler row waits for the reconciler to close the killed deploy: past
# STRANDED_LIMIT_S on purpose, so a slow restore is measured (and judged) rather than cut off.
RECONCILE_WAIT_S = 150


def other_image(tmp_path: Path, label: str) -> dict[str, str]:
    """Environment for a deploy of a harmless variant: a new digest, so aliases really move."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        (REPO_ROOT / "service" / "Dockerfile").read_text() + f"\nLABEL variant={label}\n"
    )
    return {"GANGWAY_SERVICE__BUILD__DOCKERFILE": str(dockerfile)}


def fingerprint(env: dict[str, str]) -> str:
    """A short hash of a function's env values: equal or not, never the values."""
    return hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:12]


def published_versions(config: DeployConfig) -> dict[str, list[dict[str, object]]]:
    """Published versions per function, read from Lambda: number, digest and configuration."""
    lam = client(config, "lambda")
    pages = lam.get_paginator("list_versions_by_function")
    return {
        key: [
            {
                "version": v["Version"],
                "digest": v.get("CodeSha256", "")[:12],
                "timeout": v.get("Timeout"),
                "memory": v.get("MemorySize"),
                # Values are secrets: a failed assertion prints this, so only their hash.
                "env": fingerprint((v.get("Environment") or {}).get("Variables", {})),
                "image_config": (v.get("ImageConfigResponse") or {}).get("ImageConfig"),
            }
            for p in pages.paginate(FunctionName=fn.name)
            for v in p["Versions"]
            if v["Version"] != "$LATEST"
        ]
        for key, fn in config.functions.items()
    }


def piled_up(
    before: dict[str, list[dict[str, object]]], after: dict[str, list[dict[str, object]]]
) -> str:
    """What a re-run published that it should have reused: each new version beside the
    existing versions of the same digest and what differs between them (names only)."""
    lines = []
    for key, now in after.items():
        old = {str(v["version"]) for v in before.get(key, [])}
        for new in (v for v in now if str(v["version"]) not in old):
            twins = [v for v in before.get(key, []) if v["digest"] == new["digest"]]
            diffs = [
                f"v{t['version']}: "
                + (", ".join(f for f in new if f not in ("version",) and new[f] != t[f]) or "same")
                for t in twins
            ]
            lines.append(
                f"{key}: new v{new['version']} digest {new['digest']}; "
                f"same-digest versions before: {'; '.join(diffs) or 'none'}"
            )
    return "\n".join(lines)


@pytest.mark.parametrize(
    "boundary",
    [
        pytest.param(
            b,
            marks=pytest.mark.fault(f"flow process SIGKILLed after '{b}', re-run", group="orch"),
            id=b.replace(" ", "-"),
        )
        for b in BOUNDARIES
    ],
)
def test_killed_at_a_step_boundary_then_rerun_converges(
    fault: FaultRun, tmp_path: Path, boundary: str
) -> None:
    spawned = fault.spawn(
        "deploy", "--env", FAULTS_ENV, *CANARY, env=other_image(tmp_path, "killed")
    )
    seen = spawned.wait_for_step(boundary)
    spawned.signal(signal.SIGKILL)
    killed = spawned.finish()
    assert killed.exit_code == -signal.SIGKILL
    left = Ledger().get(seen.deploy_id)
    assert left is not None and left.outcome is Outcome.RUNNING, "a SIGKILL cannot close it"
    published = published_versions(fault.config)

    attempt = fault.deploy()  # the next deploy (of the healthy image) converges
    attempt.seconds += killed.seconds
    attempt.records = [left, *[r for r in attempt.records if r.deploy_id != left.deploy_id]]
    closed = Ledger().get(left.deploy_id)
    assert closed is not None
    moved = [k for k, m in closed.functions.items() if m.alias_moved]
    fault.recovered(
        attempt,
        caught_at="next deploy: recovery",
        boundary="orchestration",
        evidence=f"killed after {[s.name for s in left.steps][-1]}; "
        f"{len(moved)} moved aliases restored by recovery",
    )
    assert closed.outcome is Outcome.INTERRUPTED
    assert closed.flow_run_id and f"flow run {closed.flow_run_id} marked Crashed" in closed.notes
    with get_client(sync_client=True) as prefect:
        state = prefect.read_flow_run(UUID(closed.flow_run_id)).state
    assert state is not None and state.name == "Crashed", state
    if moved:
        assert closed.rollback and closed.rollback["by"] == "recovery"
        assert all(closed.functions[k].restore_verified for k in moved), closed.rollback
    # The healthy digest already has versions: the re-run reuses them, nothing piles up.
    after = published_versions(fault.config)
    assert after == published, piled_up(published, after)


@pytest.mark.parametrize(
    ("signum", "exit_code"),
    [
        pytest.param(
            signal.SIGINT,
            130,
            marks=pytest.mark.fault("Ctrl-C (SIGINT) during the canary bake", group="orch"),
            id="sigint",
        ),
        pytest.param(
            signal.SIGTERM,
            143,
            marks=pytest.mark.fault("SIGTERM (CI cancelled) during the canary bake", group="orch"),
            id="sigterm",
        ),
    ],
)
def test_interrupt_during_the_canary_bake_rolls_back(
    fault: FaultRun, tmp_path: Path, signum: int, exit_code: int
) -> None:
    spawned = fault.spawn(
        "deploy",
        "--env",
        FAULTS_ENV,
        "--canary",
        "50",
        "--bake",
        "60",
        env=other_image(tmp_path, "interrupted"),
    )
    baking = spawned.wait_for_step("ground truth")  # the bake starts right after it
    assert any(m.alias_moved for m in baking.functions.values())
    # The ground-truth step still publishes its evidence after the ledger shows it; 2 s
    # later the 60 s bake is surely running (a signal there is the row's fault).
    time.sleep(2)
    spawned.signal(signum)
    attempt = spawned.finish(timeout=120)
    assert attempt.exit_code == exit_code, attempt.output[-3000:]
    record = fault.rolled_back(
        attempt, step="bake", boundary="orchestration", says=("stopped during bake",)
    )
    assert record.outcome is Outcome.INTERRUPTED


@pytest.mark.fault("Ctrl-C during the bake whose KeyboardInterrupt got lost", group="orch")
def test_a_recorded_interrupt_stops_the_bake_even_when_its_exception_is_lost(
    fault: FaultRun, new_image: None
) -> None:
    # The interruption is recorded but nothing raises in the deploy's thread: exactly what a
    # library that swallows KeyboardInterrupt leaves behind. The bake must still stop.
    seen: list[DeployRecord] = []

    def interrupt_when_baking() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not seen:
            seen.extend(
                r for r in fault.new_records() if any(s.name == "ground truth" for s in r.steps)
            )
            time.sleep(0.05)
        interrupts.request(KeyboardInterrupt())

    watcher = threading.Thread(target=interrupt_when_baking, daemon=True)
    watcher.start()
    try:
        attempt = fault.deploy(canary_percent=50, bake_s=120)
    finally:
        watcher.join(timeout=5)
        interrupts.clear()
    assert seen, "the deploy never reached the bake"
    assert attempt.error == "interrupted (KeyboardInterrupt)", attempt.error
    assert attempt.seconds < 100, "the bake ran on after the interruption was recorded"
    record = fault.rolled_back(
        attempt, step="bake", boundary="orchestration", says=("stopped during bake",)
    )
    assert record.outcome is Outcome.INTERRUPTED


@pytest.mark.fault("two deploys to one environment at once", group="orch")
def test_concurrent_deploy_fails_fast_naming_the_holder(
    fault: FaultRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__DEPLOY__LOCK_TIMEOUT_S", "1")
    ledger = Ledger()
    holder = ledger.write(DeployRecord(env=FAULTS_ENV, commit_sha="f" * 40, actor="alice@ci"))
    fault.known.add(holder.deploy_id)
    try:
        with deploy_lock(fault.config, 1, lambda: "test"):
            attempt = fault.deploy()
    finally:
        holder.outcome = Outcome.FAILED
        ledger.write(holder)
    fault.blocked(
        attempt,
        step="deploy lock",
        boundary="orchestration",
        says=(f"deploy {holder.deploy_id}", "alice@ci"),
    )


def flow_run_env() -> dict[str, str]:
    """What a flow run on the worker needs to act on this test's world: its ledger and home."""
    return {"GANGWAY_LEDGER_URL": ledger_url(), "GANGWAY_HOME": str(gangway_home())}


@pytest.fixture
def reconciler(fault: FaultRun) -> Iterator[None]:
    """This environment's scheduled reconciler, resumed for the row (on the row's ledger)."""
    before = reconcilers.resume(FAULTS_ENV, flow_run_env())
    try:
        yield
    finally:
        reconcilers.pause_again(FAULTS_ENV, before)


def wait_until_closed(deploy_id: str, timeout: float) -> DeployRecord:
    """The record once something closed it (the reconciler's RECOVERED event), or as it is
    after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        record = Ledger().get(deploy_id)
        assert record is not None
        if record.outcome is not Outcome.RUNNING or time.monotonic() >= deadline:
            return record
        time.sleep(0.5)


@pytest.mark.parametrize(
    "boundary",
    [
        pytest.param(
            b,
            marks=pytest.mark.fault(
                f"flow process SIGKILLed after '{b}', reconciler restores", group="orch"
            ),
            id=b.replace(" ", "-"),
        )
        for b in TRAFFIC_MOVED
    ],
)
def test_killed_after_traffic_moved_the_reconciler_restores_without_a_deploy(
    fault: FaultRun, reconciler: None, tmp_path: Path, boundary: str
) -> None:
    spawned = fault.spawn(
        "deploy", "--env", FAULTS_ENV, *CANARY, env=other_image(tmp_path, "stranded")
    )
    seen = spawned.wait_for_step(boundary)
    spawned.signal(signal.SIGKILL)
    killed = spawned.finish()
    assert killed.exit_code == -signal.SIGKILL
    assert any(m.alias_moved for m in (Ledger().get(seen.deploy_id) or seen).functions.values())
    # No further deploy: only the scheduled reconciler can close it.
    closed = wait_until_closed(seen.deploy_id, RECONCILE_WAIT_S)
    assert closed.outcome is not Outcome.RUNNING, (
        f"no reconciler closed {seen.deploy_id} within {RECONCILE_WAIT_S}s"
    )
    attempt = Attempt(
        records=[closed],
        error="",
        output=killed.output,
        exit_code=killed.exit_code,
        seconds=time.monotonic() - killed.started,
        started=time.monotonic(),
    )
    record = fault.reconciled(attempt, says=("reconciler restored its aliases",))
    assert record.rollback and record.rollback["by"] == "recovery"
    assert record.flow_run_id and f"flow run {record.flow_run_id} marked Crashed" in record.notes
    assert [r.deploy_id for r in fault.new_records()] == [seen.deploy_id], "a deploy ran"


def wait_for_run_record(
    fault: FaultRun, flow_run_id: str, step: str, timeout: float
) -> DeployRecord:
    """The record of the deploy the flow run started, once it shows step finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in fault.new_records():
            if record.flow_run_id == flow_run_id and any(s.name == step for s in record.steps):
                return record
        time.sleep(0.2)
    raise AssertionError(f"flow run {flow_run_id} showed no {step!r} within {timeout}s")


@pytest.mark.fault(
    "deploy flow run cancelled through Prefect during the canary bake (worker SIGTERM)",
    group="orch",
)
def test_a_cancelled_flow_run_on_the_worker_rolls_back(fault: FaultRun, tmp_path: Path) -> None:
    # Started the way prefect.yaml says users start deploys: a flow run of the deployment,
    # picked up by the process worker. Cancelling it makes the worker SIGTERM the flow process.
    started = time.monotonic()
    run = run_deployment(
        f"deploy/deploy-{FAULTS_ENV}",
        parameters={"canary_percent": 50, "bake_s": 120},
        job_variables={"env": {**flow_run_env(), **other_image(tmp_path, "cancelled")}},
        timeout=0,
        as_subflow=False,
    )
    baking = wait_for_run_record(fault, str(run.id), "ground truth", timeout=300)
    assert any(m.alias_moved for m in baking.functions.values())
    time.sleep(2)  # as in the SIGTERM row: the 120 s bake is surely running
    with get_client(sync_client=True) as prefect:
        prefect.set_flow_run_state(run.id, Cancelling(message="cancelled by the fault row"))
        deadline = time.monotonic() + 120
        while True:
            state = prefect.read_flow_run(run.id).state
            if (state is not None and state.is_final()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    fault.ended()
    assert state is not None and state.is_final(), f"the flow run did not end: {state}"
    attempt = Attempt(
        records=fault.new_records(),
        error=state.message or "",
        output="",
        exit_code=None,
        seconds=time.monotonic() - started,
        started=started,
    )
    record = fault.rolled_back(
        attempt, step="bake", boundary="orchestration", says=("stopped during bake",)
    )
    assert record.outcome is Outcome.INTERRUPTED
    assert record.flow_run_id == str(run.id)
    assert state.name == "Cancelled", state
