"""The one rollback: put moved aliases back on their recorded versions and read them back.

Used by the executor when a deploy stops after moving traffic, and by recovery when a killed
deploy left traffic moved. Both go through the same restore task, so both get the same bounded
restore window (environment.deploy.restore_window_s) and the same read-back evidence.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from gangway.config import DeployConfig
from gangway.record import FunctionMove
from tasks import step_calls
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
) -> dict[str, object]:
    """Restore each moved function's alias (function key → move; function name → previous
    alias state) and say, per function, where it is now and whether that was verified."""
    started = time.monotonic()
    try:
        states = _restore_aliases(config, previous)
    except BaseException as exc:  # the restore step itself failed: say so, loudly
        states = {name: f"restore step failed: {type(exc).__name__}: {exc}" for name in previous}
    restored: dict[str, object] = {}
    ok = True
    for key, move in moved.items():
        state = states.get(move.name, "not restored")
        if isinstance(state, str):
            ok = False
            restored[key] = {"error": state[:1000]}
            continue
        verified = state.routes_like(previous[move.name])
        ok = ok and verified
        restored[key] = {"to": state.version, "verified": verified}
    return {
        "result": "verified" if ok else "FAILED",
        "seconds": round(time.monotonic() - started, 3),
        "functions": restored,
        "by": by,
        # When traffic was put back: how long it stayed stranded is read from here.
        "at": datetime.now(UTC).isoformat(),
    }
