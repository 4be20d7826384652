"""Stack faults: a part gangway itself stands on dies mid-deploy.

These rows kill a shared daemon, so they run alone (the suite is serial) and put the daemon
back before the next row, whatever happened.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from gangway.record import EventKind
from rehearsal.system import ensure_mariadb, pid_path
from tasks.ledger import Ledger

from .conftest import FAULTS_ENV, FaultRun
from .test_orchestration import other_image

pytestmark = pytest.mark.stack


def kill_mariadb() -> None:
    """SIGKILL the stack's MariaDB, as an OOM kill or a host failure would."""
    pid = int(pid_path("mariadb").read_text().split()[0])  # "pid start-time endpoint"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"mariadbd {pid} survived SIGKILL")


@pytest.mark.fault("MySQL killed during the canary bake", group="stack")
def test_mysql_killed_during_the_bake_rolls_back_and_keeps_every_event(
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
    time.sleep(2)  # inside the bake: the canary serves, the handlers lose their database
    try:
        kill_mariadb()
        attempt = spawned.finish()
    finally:
        ensure_mariadb()
    record = fault.rolled_back(attempt, step="bake", boundary="observability")
    assert record.deploy_id == seen.deploy_id
    events = Ledger().events(record.deploy_id)
    kinds = [e.kind for e in events]
    # Every step up to the trigger, the move before the restore, one ending, nothing rewritten.
    steps = [e.data["name"] for e in events if e.kind is EventKind.STEP]
    assert steps[-4:] == ["smoke", "log scan", "ground truth", "bake"], steps
    assert kinds.index(EventKind.MOVING) < kinds.index(EventKind.RESTORED)
    assert kinds.count(EventKind.FINISHED) == 1 and kinds[0] is EventKind.STARTED
    assert record.image_digest and all(m.version_after for m in record.functions.values())
    # The lock went with the database: releasing it failed after the end, and said so.
    assert any("deploy lock" in n for n in record.notes), record.notes
