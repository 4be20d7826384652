"""Orchestration faults: the deploy process itself killed, interrupted, or raced.

A killed process cannot clean up after itself: the next deploy must close its record and put
any alias it moved back before doing anything else. An interrupted one (Ctrl-C, SIGTERM from
a cancelled CI job) must roll back on its way out. Two deploys to one environment never
overlap.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client

from gangway import interrupts
from gangway.config import REPO_ROOT, DeployConfig
from gangway.record import DeployRecord, Outcome
from tasks.aws import client
from tasks.env_lock import deploy_lock
from tasks.ledger import Ledger

from .conftest import FAULTS_ENV, FaultRun

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


def other_image(tmp_path: Path, label: str) -> dict[str, str]:
    """Environment for a deploy of a harmless variant: a new digest, so aliases really move."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        (REPO_ROOT / "service" / "Dockerfile").read_text() + f"\nLABEL variant={label}\n"
    )
    return {"GANGWAY_SERVICE__BUILD__DOCKERFILE": str(dockerfile)}


def version_counts(config: DeployConfig) -> dict[str, int]:
    """Published versions per function, read from Lambda."""
    lam = client(config, "lambda")
    pages = lam.get_paginator("list_versions_by_function")
    return {
        key: sum(len(p["Versions"]) for p in pages.paginate(FunctionName=fn.name))
        for key, fn in config.functions.items()
    }


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
    published = version_counts(fault.config)

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
    assert version_counts(fault.config) == published


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
