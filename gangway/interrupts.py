"""Interruptions (Ctrl-C, SIGTERM) kept as state the deploy checks, not only as an exception.

A signal raises in whatever code runs at that instant, and the exception does not always
arrive as itself: Prefect 3.8.8 turns a Ctrl-C that lands while a task run starts into
``ValueError: Task run is not set`` (3 of 60 interrupts aimed at task starts), and one
interrupted canary bake in the fault matrix ran on to its end and promoted. So the CLI's
signal handlers also record the request here, and the deploy checks it before every step,
between bake invokes and before it records success.
"""

from __future__ import annotations

import time


class Terminated(BaseException):
    """SIGTERM (a CI job cancelled, a pod stopped): unwinds like Ctrl-C, so rollback runs."""


_requested: BaseException | None = None


def request(interruption: BaseException) -> None:
    """Record that the process was asked to stop (the first request wins)."""
    global _requested
    if _requested is None:
        _requested = interruption


def requested() -> BaseException | None:
    """The pending interruption, if any."""
    return _requested


def check() -> None:
    """Raise the recorded interruption again, if there is one."""
    if _requested is not None:
        raise type(_requested)(*_requested.args)


def clear() -> None:
    """Forget a request (a new deploy in the same process, or a test)."""
    global _requested
    _requested = None


def sleep(seconds: float, slice_s: float = 0.25) -> None:
    """time.sleep that notices a recorded interruption within slice_s."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        check()
        time.sleep(min(slice_s, left))
    check()
