"""Interruptions (Ctrl-C, SIGTERM) kept as state the deploy checks, not only as an exception.

A signal raises in whatever code runs at that instant, and the exception does not always
arrive as itself: Prefect 3.8.8 turns a Ctrl-C that lands while a task run starts into
``ValueError: Task run is not set`` (3 of 60 interrupts aimed at task starts), and one
interrupted canary bake in the fault matrix ran on to its end and promoted: the handler
that raised was Prefect's own SIGTERM bridge (it replaces ours while a flow runs), and it
raised inside an object's ``__del__``, where Python prints "Exception ignored" and goes on.
So every SIGINT/SIGTERM is also recorded here, by a thread reading the signal module's wakeup
fd (written for each signal whoever's handler runs), and the deploy checks the record before
every step, between bake invokes and before it records success.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


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


def watch() -> Callable[[], None]:
    """Record every SIGINT/SIGTERM the process receives from now on (main thread only).

    Returns a function that stops watching and restores the previous wakeup fd.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def read() -> None:
        try:
            while data := os.read(read_end, 64):  # b"" once stop() closes the write end
                for signum in data:
                    if signum == signal.SIGINT:
                        request(KeyboardInterrupt())
                    elif signum == signal.SIGTERM:
                        request(Terminated("received SIGTERM"))
        finally:
            os.close(read_end)

    threading.Thread(target=read, name="gangway-signal-watch", daemon=True).start()
    default_hook = sys.unraisablehook

    def unraisable(info: Any) -> None:
        # An interruption raised inside a __del__ cannot propagate; Python would print it as
        # a bare traceback. It is recorded (above) and acted on, so it is not printed.
        if isinstance(info.exc_value, BaseException) and not isinstance(info.exc_value, Exception):
            return
        default_hook(info)

    sys.unraisablehook = unraisable

    def stop() -> None:
        sys.unraisablehook = default_hook
        signal.set_wakeup_fd(previous)
        os.close(write_end)

    return stop


def sleep(seconds: float, slice_s: float = 0.25) -> None:
    """time.sleep that notices a recorded interruption within slice_s."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        check()
        time.sleep(min(slice_s, left))
    check()
