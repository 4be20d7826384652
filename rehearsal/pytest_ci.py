"""A pytest plugin: in CI (``CI`` set) a skipped test fails instead.

The suite skips a test when a piece of the rehearsal stack is missing (no Docker engine, no
base image, no emulator, no registry), which is right on a laptop without them and wrong in
CI, where a missing piece means provisioning broke and the test proved nothing. Loaded for
every run through ``addopts`` in pyproject.toml. ``xfail`` is left alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def in_ci() -> bool:
    """Whether this run is CI's (the ``CI`` variable set to anything but empty/0/false)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Turn a skip into a failure that says why it was skipped."""
    report: pytest.TestReport = yield
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = (
            f"skipped in CI, which counts as a failure (CI={os.environ['CI']!r}): {reason}\n"
            "provision the missing piece (`gangway stack up`) instead of skipping"
        )
    return report
