"""Client-side waits for Lambda's transitions, for rehearsal callers that write functions directly.

The bridge, like AWS, keeps a new function ``Pending`` and an updated one ``InProgress`` for a
while (``rehearsal.fidelity``) and refuses the next write or invoke meanwhile; seeds and test
helpers wait with botocore's own waiters, polling faster than their 1 s default.
"""

from __future__ import annotations

from typing import Any

POLL_S = 0.25
MAX_ATTEMPTS = 240  # 60 s at POLL_S: far beyond any rehearsal setting


def wait_active(lam: Any, name: str) -> None:
    """Until the function's State is Active (botocore's function_active_v2)."""
    lam.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": POLL_S, "MaxAttempts": MAX_ATTEMPTS}
    )


def wait_updated(lam: Any, name: str) -> None:
    """Until the function's LastUpdateStatus is Successful (botocore's function_updated_v2)."""
    lam.get_waiter("function_updated_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": POLL_S, "MaxAttempts": MAX_ATTEMPTS}
    )
