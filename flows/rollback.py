"""The one rollback: put moved aliases back on their recorded versions and read them back.

Used by the executor when a deploy stops after moving traffic, and by recovery when a killed
deploy left traffic moved. Both go through the same restore task, so both get the same bounded
restore window (environment.deploy.restore_window_s) and the same read-back evidence.
A deploy that says what it set (moved_to) never undoes another deploy's move: such an alias
is left alone and reported, and the rollback's result is "superseded" rather than FAILED
(nothing is left for recovery to put back).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from gangway.config import DeployConfig
from gangway.record import FunctionMove
from tasks import step_calls
from tasks.lambda_alias import SUPERSEDED
from tasks.lambda_read import AliasState
from tasks.prefect_task import step

# Each restore retries AWS itself for a bounded window (environment.deploy.restore_window_s, 60 s
# by default); the timeout leaves room for its last attempt.
_restore_aliases = step("restore aliases", timeout_s=120)(step_calls.restore_aliases)


def restore(
    config: DeployConfig,
    moved: dict[str, FunctionMove],
    previous: dict[str, AliasState],
    by: str = "deploy",
    moved_to: dict[str, AliasState] | None = None,
) -> dict[str, object]:
    """Restore each moved function's alias (function key → move; function name → previous
    alias state) and say, per function, where it is now and whether that was verified.
    With moved_to (function name → what this deploy set), aliases another deploy has moved
    since are left alone."""
    started = time.monotonic()
    try:
        states = _restore_aliases(config, previous, moved_to=moved_to)
    except BaseException as exc:  # the restore step itself failed: say so, loudly
        states = {name: f"restore step failed: {type(exc).__name__}: {exc}" for name in previous}
    restored: dict[str, object] = {}
    ok, superseded = True, False
    for key, move in moved.items():
        state = states.get(move.name, "not restored")
        if isinstance(state, str) and state.endswith(SUPERSEDED):
            superseded = True
            restored[key] = {"left": state[:1000], "superseded": True}
            continue
        if isinstance(state, str):
            ok = False
            restored[key] = {"error": state[:1000]}
            continue
        verified = state.routes_like(previous[move.name])
        ok = ok and verified
        restored[key] = {"to": state.version, "verified": verified}
    return {
        "result": "FAILED" if not ok else "superseded" if superseded else "verified",
        "seconds": round(time.monotonic() - started, 3),
        "functions": restored,
        "by": by,
        # When traffic was put back: how long it stayed stranded is read from here.
        "at": datetime.now(UTC).isoformat(),
    }
