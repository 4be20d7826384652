"""The fenced deploy lock on the real MariaDB: a lock its server took away is seen at once.

The fault rows in tests/faults/test_stack_daemons.py kill MariaDB itself; these tests take
the lock away without killing anything (the holder's connection is killed, as a failover or
a restart would), so they are cheap and leave the stack alone.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from gangway.config import DeployConfig, load_config
from gangway.errors import ConfigError
from rehearsal.mariadb_setup import _admin_connection
from tasks.env_lock import DeployLockError, DeployLockLost, deploy_lock

ENV = os.environ.get("GANGWAY_FAULTS_ENV", "qa")
# It locks the fault matrix's environment, so it runs in that lane (tests/conftest.py).
pytestmark = pytest.mark.xdist_group("qa")


@pytest.fixture(scope="module")
def config(stack: object) -> DeployConfig:
    """The environment these tests lock (its deploys wait at most a second for them)."""
    return load_config(ENV)


def _holder(admin: Any, name: str) -> int:
    with admin.cursor() as cur:
        cur.execute("SELECT IS_USED_LOCK(%s)", (name,))
        (holder,) = cur.fetchone()
    assert holder, f"nobody holds {name}"
    return int(holder)


@pytest.mark.stack
def test_verify_raises_within_a_heartbeat_once_the_lock_connection_is_killed(
    config: DeployConfig,
) -> None:
    heartbeat = config.environment.deploy.lock_heartbeat_s
    admin = _admin_connection()
    try:
        with deploy_lock(config, 5, lambda: "test") as lock:
            lock.verify()  # held: passes, checked live
            assert lock.lost is None
            with pytest.raises(DeployLockError):  # a second deploy waits and gives up
                with deploy_lock(config, 0, lambda: "the test's first lock"):
                    pass
            holder = _holder(admin, lock.name)
            with admin.cursor() as cur:
                cur.execute(f"KILL {holder}")
            killed = time.monotonic()
            # The heartbeat, not this test's call, must see it: wait without calling verify().
            while lock.lost is None and time.monotonic() - killed < heartbeat + 1:
                time.sleep(0.02)
            seen = time.monotonic() - killed
            assert lock.lost is not None, f"no loss recorded within {heartbeat + 1:.1f} s"
            with pytest.raises(DeployLockLost) as lost:
                lock.verify()
            answered = time.monotonic() - killed
            # The lock is free: another deploy could take it now, which is why the fence exists.
            with deploy_lock(config, 0, lambda: "test") as second:
                second.verify()
                with pytest.raises(DeployLockLost):
                    lock.verify()
        # Leaving a lost lock raised nothing; the loss stays recorded.
        assert lock.lost is not None
    finally:
        admin.close()
    text = lost.value.render()
    for part in ("[orchestration]", "lost", "expected", "found", "remedy", lock.name):
        assert part in text, (part, text)
    assert answered < heartbeat + 1, f"verify() answered {answered:.2f} s after the kill"
    print(f"\nlock loss seen by the heartbeat {seen:.2f} s after KILL; reason: {lock.lost.reason}")


@pytest.mark.stack
def test_a_lock_held_to_the_end_is_released_and_records_no_loss(config: DeployConfig) -> None:
    with deploy_lock(config, 5, lambda: "test") as lock:
        time.sleep(config.environment.deploy.lock_heartbeat_s * 1.5)  # a heartbeat or two
        lock.verify()
    assert lock.lost is None
    with deploy_lock(config, 0, lambda: "test") as again:  # released: free at once
        again.verify()


@pytest.mark.parametrize("value", ["0", "-1", "true"])
def test_the_heartbeat_must_be_a_positive_number(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    assert load_config(ENV).environment.deploy.lock_heartbeat_s == 1.0
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__DEPLOY__LOCK_HEARTBEAT_S", value)
    with pytest.raises(ConfigError) as err:
        load_config(ENV)
    assert "environment.deploy.lock_heartbeat_s" in err.value.found
