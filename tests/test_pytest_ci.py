"""The CI plugin: a skip fails the run when CI is set, and stays a skip on a laptop."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SKIPPING = """
import pytest

def test_needs_docker():
    pytest.skip("no Docker engine")

@pytest.mark.xfail(reason="known")
def test_known_bug():
    assert False
"""


@pytest.mark.parametrize(("ci", "failed", "skipped"), [("true", 1, 0), ("", 0, 1), ("false", 0, 1)])
def test_a_skip_fails_only_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, failed: int, skipped: int
) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(test_skipping=SKIPPING)
    result = pytester.runpytest_subprocess("-p", "rehearsal.pytest_ci", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=failed, skipped=skipped, xfailed=1)
    if failed:
        result.stdout.fnmatch_lines(["*skipped in CI*no Docker engine*"])
