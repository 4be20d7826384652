"""Interruptions recorded as state: re-raised by check() and noticed by a sleeping loop."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from gangway import interrupts
from gangway.interrupts import Terminated


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    interrupts.clear()
    yield
    interrupts.clear()


def test_nothing_requested_nothing_raised() -> None:
    interrupts.check()
    interrupts.sleep(0.01)
    assert interrupts.requested() is None


def test_a_request_is_raised_again_with_its_type_and_the_first_wins() -> None:
    interrupts.request(Terminated("received SIGTERM"))
    interrupts.request(KeyboardInterrupt())
    with pytest.raises(Terminated, match="SIGTERM"):
        interrupts.check()
    with pytest.raises(Terminated):  # still recorded: every later check stops too
        interrupts.check()


def test_sleep_notices_a_request_from_another_thread_within_a_slice() -> None:
    threading.Timer(0.2, interrupts.request, args=(KeyboardInterrupt(),)).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        interrupts.sleep(30, slice_s=0.05)
    assert time.monotonic() - started < 5


def test_watch_records_a_signal_even_when_its_handler_swallows_it() -> None:
    # A handler that raises nothing stands for one whose exception got lost (raised inside
    # a __del__, or Prefect's SIGTERM bridge in place of ours).
    previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGINT, signal.SIGTERM)}
    stop = interrupts.watch()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while interrupts.requested() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert isinstance(interrupts.requested(), Terminated)
        with pytest.raises(Terminated):
            interrupts.check()
    finally:
        stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_an_interrupt_raised_in_a_finalizer_is_not_printed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Finalized:
        def __del__(self) -> None:
            raise KeyboardInterrupt  # what a signal landing in a __del__ looks like

    stop = interrupts.watch()
    try:
        Finalized()  # collected at once: Python reports the exception as unraisable
    finally:
        stop()
    assert "Traceback" not in capsys.readouterr().err
