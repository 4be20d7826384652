"""Killing a daemon the rehearsal stack started, as an OOM kill or a host failure would."""

from __future__ import annotations

import os
import signal
import time

import pytest

from rehearsal.system import owned_pid


def stack_pid(name: str) -> int:
    """The pid of a daemon the stack started (a row cannot kill a daemon it does not own)."""
    pid = owned_pid(name)
    if pid is None:
        pytest.skip(f"{name} was not started by `gangway stack up` (no pid file): not ours to kill")
    return pid


def kill(pid: int, what: str) -> float:
    """SIGKILL pid and wait until it is gone; returns when the kill was sent (epoch s)."""
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return killed_at
        time.sleep(0.05)
    raise AssertionError(f"{what} {pid} survived SIGKILL")
