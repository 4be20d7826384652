"""The fault matrix as data: declared rows, one result per row, a table and a RESULT line.

The test session declares the rows it selected (every test marked ``fault``) before any runs,
then writes one JSON line per row when the row's test has finished (setup, call and teardown),
into ``GANGWAY_HOME/faults/``; ``bench/faults.py`` and the test session's summary render them.

A row is *contained* only when everything about it held: its verdict (blocked before traffic,
rolled back and read back, refused, or recovered and verified), no problem the verdict found,
and every assertion of its test. A declared row that did not run, or ran and failed anywhere,
is not contained. Traffic left moved or split after an attempt ended (a killed deploy), until
a later action put it back, is measured as ``stranded_s``: up to STRANDED_LIMIT_S the row can
count as contained (the reconciler's promise: no person needed); beyond it the row is
*stranded*, its own outcome, never contained.
"""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from gangway.config import gangway_home

STRANDED = "stranded"
# The longest a killed deploy may leave traffic moved and still count as contained: the
# reconciler's schedule (60 s) plus the worker's pick-up and the restore itself.
STRANDED_LIMIT_S = 90.0


class FaultRow(BaseModel):
    """What one injected fault did, as observed from outside gangway (AWS, ledger, output)."""

    fault: str
    group: str
    boundary: str
    caught_at: str
    outcome: str
    alias_after: str
    ledger: str
    seconds: float
    contained: bool
    record_consistent: bool
    ran: bool = True
    # Seconds traffic stayed moved after an attempt ended, until a later action restored it
    # (None: it was never left moved).
    stranded_s: float | None = None
    secrets_found: int = 0
    test: str = ""
    test_outcome: str = "passed"
    problems: list[str] = []

    @property
    def stranded(self) -> bool:
        """Everything held except that traffic stayed moved longer than STRANDED_LIMIT_S.

        A row that also failed elsewhere is not contained, and is not called stranded either:
        stranded must not become a softer name for a failing row.
        """
        return (
            self.stranded_s is not None
            and self.stranded_s > STRANDED_LIMIT_S
            and self.test_outcome == "passed"
            and not self.problems
        )


class Sweep(BaseModel):
    """The end-of-run secret sweep: what it scanned, what leaked, which controls it found."""

    scanned: dict[str, int]
    found: list[str]
    controls_planted: int
    controls_found: int
    missed_controls: list[str] = []


def _dir(home: Path | None = None) -> Path:
    # GANGWAY_FAULTS_DIR keeps a partial run (one engineer's rows) from replacing the table
    # of another run on the same machine.
    override = os.environ.get("GANGWAY_FAULTS_DIR")
    if override and home is None:
        return Path(override)
    return (home or gangway_home()) / "faults"


def matrix_path(home: Path | None = None) -> Path:
    """Where the rows of the current run are collected."""
    return _dir(home) / "matrix.jsonl"


def declared_path(home: Path | None = None) -> Path:
    """Where the run's declared rows (test ids and descriptions) are written."""
    return _dir(home) / "declared.json"


def sweep_path(home: Path | None = None) -> Path:
    """Where the end-of-run secret sweep writes what it scanned and found."""
    return _dir(home) / "sweep.json"


def declare(rows: dict[str, str], home: Path | None = None) -> None:
    """Start a run: declare its rows (test id → fault description), forget the last run's."""
    target = declared_path(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(rows, indent=1))
    matrix_path(home).write_text("")
    sweep_path(home).unlink(missing_ok=True)


def declared(home: Path | None = None) -> dict[str, str]:
    """The rows the last run declared (test id → fault description)."""
    target = declared_path(home)
    return json.loads(target.read_text()) if target.exists() else {}


def append(row: FaultRow, home: Path | None = None) -> None:
    """Add one row. One short O_APPEND write per row, so parallel workers do not interleave."""
    target = matrix_path(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a") as out:
        out.write(row.model_dump_json() + "\n")


def load(home: Path | None = None) -> list[FaultRow]:
    """The rows of the last run, in the order they finished."""
    target = matrix_path(home)
    if not target.exists():
        return []
    return [FaultRow.model_validate_json(line) for line in target.read_text().splitlines() if line]


def save_sweep(sweep: Sweep, home: Path | None = None) -> None:
    """Record the sweep's result."""
    target = sweep_path(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(sweep.model_dump_json(indent=1))


def load_sweep(home: Path | None = None) -> Sweep | None:
    """The last sweep, or None when none ran (which is never read as 'no secret found')."""
    target = sweep_path(home)
    return Sweep.model_validate_json(target.read_text()) if target.exists() else None


def unjudged(
    fault: str,
    test: str,
    outcome: str,
    test_outcome: str,
    *,
    ran: bool,
    group: str = "?",
    alias_after: str = "?",
) -> FaultRow:
    """A row no verdict vouched for: never contained, its record unchecked."""
    return FaultRow(
        fault=fault,
        group=group,
        boundary="?",
        caught_at="?",
        outcome=outcome,
        alias_after=alias_after,
        ledger="?",
        seconds=0.0,
        contained=False,
        record_consistent=False,
        ran=ran,
        test=test,
        test_outcome=test_outcome,
    )


def settle(
    pending: FaultRow | None,
    phases: dict[str, tuple[str, str]],
    *,
    fault: str,
    group: str,
    test: str,
    alias_after: str = "?",
) -> FaultRow:
    """The row as it counts, once its test has finished.

    phases maps pytest's setup/call/teardown to (outcome, first line of the failure); the row
    is contained only if the verdict's row was and every phase passed.
    """
    bad = [(when, outcome, why) for when, (outcome, why) in phases.items() if outcome != "passed"]
    failed = [b for b in bad if b[1] == "failed"] or bad
    test_outcome = f"{failed[0][0]} {failed[0][1]}: {failed[0][2]}" if failed else "passed"
    ran = "call" in phases and phases.get("setup", ("passed", ""))[0] == "passed"
    if pending is None:
        return unjudged(
            fault,
            test,
            f"no verdict ({test_outcome})",
            test_outcome,
            ran=ran,
            group=group,
            alias_after=alias_after,
        )
    passed = test_outcome == "passed"
    return pending.model_copy(
        update={
            "outcome": pending.outcome if passed else f"{pending.outcome}; {test_outcome}",
            "contained": pending.contained and passed,
            "ran": ran,
            "test_outcome": test_outcome,
        }
    )


def complete(declared_rows: dict[str, str], rows: list[FaultRow]) -> list[FaultRow]:
    """Every declared row once: a declared row that wrote nothing counts as one that never ran."""
    by_test = {r.test: r for r in rows}
    missing = [
        unjudged(
            description,
            test,
            "did not run (no result written: crashed or not collected)",
            "missing",
            ran=False,
        )
        for test, description in declared_rows.items()
        if test not in by_test
    ]
    return [*rows, *missing]


def render_table(rows: Iterable[FaultRow]) -> str:
    """fault | boundary | caught at | outcome | alias after | ledger | seconds, as text."""
    header = ("fault", "boundary", "caught at", "outcome", "alias after", "ledger", "seconds")
    body = [
        (
            r.fault,
            r.boundary,
            r.caught_at,
            _outcome_text(r),
            r.alias_after,
            r.ledger if r.record_consistent else f"INCONSISTENT: {r.ledger}",
            f"{r.seconds:.1f}",
        )
        for r in rows
    ]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    lines = [
        " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True))
        for line in [header, *body]
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _outcome_text(row: FaultRow) -> str:
    if row.contained:
        return row.outcome
    if row.stranded:
        return f"STRANDED {row.stranded_s:.1f}s: {row.outcome}"
    return f"NOT CONTAINED: {row.outcome}"


def result(
    declared_rows: dict[str, str], rows: list[FaultRow], sweep: Sweep | None
) -> dict[str, Any]:
    """The summary figures. ``valid`` is false unless every declared row ran and the sweep ran
    and found every planted control; ``secrets_found`` is None when no sweep ran."""
    every = complete(declared_rows, rows)
    leaked = sum(r.secrets_found for r in every)
    moved = [r.stranded_s for r in every if r.stranded_s is not None]
    figures: dict[str, Any] = {
        "faults": len(declared_rows),
        "ran": sum(r.ran for r in every),
        "contained": sum(r.contained for r in every),
        "stranded": sum(r.stranded for r in every),
        # Over every row that left traffic moved (the kill rows), contained or not.
        "stranded_s_median": round(statistics.median(moved), 1) if moved else None,
        "stranded_s_max": round(max(moved), 1) if moved else None,
        "lost_records": sum(not r.record_consistent for r in every),
        "secrets_found": leaked + len(sweep.found) if sweep else None,
        "secret_controls_planted": sweep.controls_planted if sweep else 0,
        "secret_controls_found": sweep.controls_found if sweep else 0,
    }
    figures["valid"] = bool(
        figures["faults"]
        and figures["ran"] == figures["faults"]
        and sweep is not None
        and sweep.controls_planted > 0
        and sweep.controls_found == sweep.controls_planted
    )
    return figures


def result_line(declared_rows: dict[str, str], rows: list[FaultRow], sweep: Sweep | None) -> str:
    """The last line a run prints: ``RESULT {...}``."""
    return "RESULT " + json.dumps(result(declared_rows, rows, sweep))


def stranded_names(rows: Iterable[FaultRow]) -> list[str]:
    """The stranded rows (moved beyond STRANDED_LIMIT_S), each with how long."""
    return [f"{r.fault} ({r.stranded_s:.1f}s)" for r in rows if r.stranded]


def clean(figures: dict[str, Any]) -> bool:
    """Every declared row ran and was contained (none stranded), nothing lost or leaked, valid."""
    return bool(
        figures["valid"]
        and figures["contained"] == figures["faults"]
        and figures["stranded"] == 0
        and figures["lost_records"] == 0
        and figures["secrets_found"] == 0
    )
