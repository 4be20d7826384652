"""Stack faults: a part gangway itself stands on dies mid-deploy.

These rows kill a shared daemon, so they run alone (the suite is serial) and put the daemon
back before the next row, whatever happened.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gangway.record import DeployRecord, Event, EventKind, Outcome
from rehearsal.system import ensure_mariadb
from tasks.ledger import Ledger

from .conftest import FAULTS_ENV, FaultRun
from .daemons import kill, stack_pid
from .test_orchestration import other_image

# These rows kill daemons every test shares: no other stack test runs meanwhile.
pytestmark = [pytest.mark.stack, pytest.mark.alone]

LOST_LOCK_WITHIN_S = 5.0  # the target: a lost deploy lock is acted on within 5 s


def kill_mariadb() -> float:
    """SIGKILL the stack's MariaDB; the kill's time."""
    return kill(stack_pid("mariadb"), "mariadbd")


def first_at(events: list[Event], kinds: set[EventKind], name: str = "") -> float:
    """When the first event of one of kinds (a step of that name) was recorded (epoch s)."""
    for e in events:
        if e.kind in kinds and (not name or e.data.get("name") == name):
            return e.at.timestamp()
    raise AssertionError(f"no {sorted(kinds)} {name!r} event in {[e.kind for e in events]}")


def assert_lock_lost_at_the_bake(record: DeployRecord, killed_at: float) -> float:
    """The first deploy stopped on its lost lock within 5 s of the kill; returns how soon."""
    events = Ledger().events(record.deploy_id)
    kinds = [e.kind for e in events]
    assert record.trigger is not None and record.trigger["step"] == "bake", record.trigger
    assert "[orchestration]" in record.trigger["error"], record.trigger["error"]
    assert "deploy lock" in record.trigger["error"] and "lost" in record.trigger["error"]
    # The bake step ends (failed) when the fence fires: from the kill to that event.
    bake_end = next(e for e in events if e.kind is EventKind.STEP and e.data["name"] == "bake")
    assert bake_end.data["status"] == "failed", bake_end.data
    detected_s = bake_end.at.timestamp() - killed_at
    assert 0 < detected_s < LOST_LOCK_WITHIN_S, f"lost lock acted on {detected_s:.2f} s after"
    # Every step up to the trigger, the move before the restore, one ending, nothing rewritten.
    steps = [e.data["name"] for e in events if e.kind is EventKind.STEP]
    assert steps[-4:] == ["smoke", "log scan", "ground truth", "bake"], steps
    assert kinds.index(EventKind.MOVING) < kinds.index(EventKind.TRIGGER)
    assert kinds.count(EventKind.FINISHED) == 1 and kinds[0] is EventKind.STARTED
    assert record.image_digest and all(m.version_after for m in record.functions.values())
    # The lock went with the database: the record says when and why, and nothing raised.
    assert any("deploy lock" in n and "was lost" in n for n in record.notes), record.notes
    return detected_s


@pytest.mark.fault("MySQL killed during the canary bake", group="stack")
def test_mysql_killed_during_the_bake_is_a_lost_lock_acted_on_within_seconds(
    fault: FaultRun, tmp_path: Path
) -> None:
    spawned = fault.spawn(
        "deploy",
        "--env",
        FAULTS_ENV,
        "--canary",
        "50",
        "--bake",
        "20",
        env=other_image(tmp_path, "mysql-killed"),
    )
    seen = spawned.wait_for_step("ground truth")
    time.sleep(2)  # inside the bake: the canary serves, the lock's connection dies
    try:
        killed_at = kill_mariadb()
        attempt = spawned.finish()
    finally:
        ensure_mariadb()
    record = fault.rolled_back(
        attempt, step="bake", boundary="orchestration", says=("deploy lock", "lost")
    )
    assert record.deploy_id == seen.deploy_id
    detected_s = assert_lock_lost_at_the_bake(record, killed_at)
    events = Ledger().events(record.deploy_id)
    kinds = [e.kind for e in events]
    assert kinds.index(EventKind.MOVING) < kinds.index(EventKind.RESTORED)
    print(f"\nlost lock acted on {detected_s:.2f} s after the kill")


@pytest.mark.fault(
    "MySQL killed then restarted during the bake while a second deploy starts", group="stack"
)
def test_a_second_deploy_after_a_mysql_restart_moves_nothing_before_the_first_is_contained(
    fault: FaultRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = fault.spawn(
        "deploy",
        "--env",
        FAULTS_ENV,
        "--canary",
        "50",
        "--bake",
        "20",
        env=other_image(tmp_path / "first", "mysql-restarted-first"),
    )
    seen = first.wait_for_step("ground truth")
    time.sleep(2)  # inside the first deploy's bake
    # The second deploy ships another image, so its aliases really move (new versions).
    for name, value in other_image(tmp_path / "second", "mysql-restarted-second").items():
        monkeypatch.setenv(name, value)
    try:
        killed_at = kill_mariadb()
        ensure_mariadb()
        # At once: the restarted server has forgotten the first deploy's lock.
        second = fault.deploy()
        first_attempt = first.finish()
    finally:
        ensure_mariadb()
    assert first_attempt.exit_code == 1, first_attempt.output[-3000:]
    record_a = Ledger().get(seen.deploy_id)
    assert record_a is not None and record_a.outcome in (
        Outcome.ROLLED_BACK,
        Outcome.INTERRUPTED,
    ), record_a
    detected_s = assert_lock_lost_at_the_bake(record_a, killed_at)
    # Contained: the first deploy's own restore, or the second deploy's recovery of it,
    # whichever came first; the second deploy moved traffic only after that.
    events_a = Ledger().events(record_a.deploy_id)
    contained_at = min(
        e.at.timestamp()
        for e in events_a
        if e.kind in (EventKind.RESTORED, EventKind.RECOVERED)
        and (e.data.get("result") == "verified")
    )
    assert second.record is not None and second.record.deploy_id != record_a.deploy_id
    events_b = Ledger().events(second.record.deploy_id)
    moved_at = first_at(events_b, {EventKind.MOVING})
    assert contained_at < moved_at, (
        f"the second deploy moved traffic {contained_at - moved_at:.2f} s before the first "
        "deploy's aliases were restored"
    )
    assert record_a.rollback is not None and record_a.rollback["result"] == "verified"
    fault.recovered(
        second,
        caught_at="bake",
        boundary="orchestration",
        evidence=f"the first deploy {record_a.deploy_id[:8]} lost its lock "
        f"{detected_s:.1f} s after the kill and was contained "
        f"{moved_at - contained_at:.1f} s before the second deploy first moved traffic",
    )
    print(
        f"\nlost lock acted on {detected_s:.2f} s after the kill; second deploy moved "
        f"{moved_at - contained_at:.2f} s after the first was contained"
    )
