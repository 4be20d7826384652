"""A pytest plugin: print the fault matrix and its RESULT line at the end of a session.

Loaded for every run through ``addopts`` (pyproject.toml), so the table is printed by the
process that reports: pytest itself, or under pytest-xdist the controller, which collects
nothing and so never loads tests/faults/conftest.py (its workers declare and write the rows,
rehearsal/fault_matrix.py). A session that declared no rows prints nothing.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from rehearsal import fault_matrix

# The rows this process declared at collection (tests/faults/conftest.py sets it).
DECLARED = pytest.StashKey[dict[str, str]]()
STARTED = pytest.StashKey[float]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Note when the session began: a declaration older than that is another run's."""
    session.config.stash[STARTED] = time.time()


def declared_by_workers(config: pytest.Config) -> dict[str, str]:
    """Under pytest-xdist, the rows this session's workers declared (none from earlier runs)."""
    if not config.pluginmanager.hasplugin("dsession"):
        return {}
    path = fault_matrix.declared_path()
    started = config.stash.get(STARTED, time.time())
    if not path.exists() or path.stat().st_mtime < started:
        return {}
    return fault_matrix.declared()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Print the matrix and its RESULT line after a session that declared rows."""
    declared = config.stash.get(DECLARED, None) or declared_by_workers(config)
    if not declared:
        return
    rows = fault_matrix.complete(declared, fault_matrix.load())
    terminalreporter.write_sep("=", "fault matrix")
    terminalreporter.write_line(fault_matrix.render_table(rows))
    stranded = fault_matrix.stranded_names(rows)
    if stranded:
        terminalreporter.write_line(
            f"stranded (traffic left moved beyond {fault_matrix.STRANDED_LIMIT_S:.0f}s): "
            + "; ".join(stranded)
        )
    terminalreporter.write_line(
        fault_matrix.result_line(declared, rows, fault_matrix.load_sweep())
    )
