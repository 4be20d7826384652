"""The fault matrix as data: one row per injected fault, rendered as a table and a RESULT line.

Rows are written by the fault tests (tests/faults/) as they run, one JSON line each, into
``GANGWAY_HOME/faults/matrix.jsonl``; ``bench/faults.py`` and the test session's summary
render them. A row is *contained* when the deploy ended blocked before traffic, rolled back
with the alias read back on the previous version, refused as bad input with nothing changed,
or (for a transient fault) recovered and verified on the new version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel

from gangway.config import gangway_home

CONTAINED_OUTCOMES = ("blocked before traffic", "rolled back", "refused", "recovered")


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
    secrets_found: int = 0
    test: str = ""
    problems: list[str] = []


def matrix_path(home: Path | None = None) -> Path:
    """Where the rows of the current run are collected."""
    return (home or gangway_home()) / "faults" / "matrix.jsonl"


def reset(path: Path | None = None) -> Path:
    """Start a new run: an empty rows file."""
    target = path or matrix_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("")
    sweep_path(target.parent.parent).unlink(missing_ok=True)
    return target


def append(row: FaultRow, path: Path | None = None) -> None:
    """Add one row (one line; appends are atomic enough for one writer per test run)."""
    target = path or matrix_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a") as out:
        out.write(row.model_dump_json() + "\n")


def load(path: Path | None = None) -> list[FaultRow]:
    """The rows of the last run, in the order they ran."""
    target = path or matrix_path()
    if not target.exists():
        return []
    return [FaultRow.model_validate_json(line) for line in target.read_text().splitlines() if line]


def sweep_path(home: Path | None = None) -> Path:
    """Where the end-of-run secret sweep writes what it scanned and found."""
    return (home or gangway_home()) / "faults" / "sweep.json"


def save_sweep(scanned: dict[str, int], found: list[str], path: Path | None = None) -> None:
    """Record the sweep: counts of texts scanned per source, and where a secret was found."""
    target = path or sweep_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"scanned": scanned, "found": found}, indent=1))


def load_sweep(path: Path | None = None) -> int:
    """Secrets the last sweep found (0 when none ran)."""
    target = path or sweep_path()
    if not target.exists():
        return 0
    return len(json.loads(target.read_text())["found"])


def render_table(rows: Iterable[FaultRow]) -> str:
    """fault | boundary | caught at | outcome | alias after | ledger | seconds, as text."""
    header = ("fault", "boundary", "caught at", "outcome", "alias after", "ledger", "seconds")
    body = [
        (
            r.fault,
            r.boundary,
            r.caught_at,
            r.outcome if r.contained else f"NOT CONTAINED: {r.outcome}",
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


def result(rows: list[FaultRow], extra_secrets: int = 0) -> dict[str, int]:
    """The summary figures: faults, contained, lost records, secrets found."""
    return {
        "faults": len(rows),
        "contained": sum(r.contained for r in rows),
        "lost_records": sum(not r.record_consistent for r in rows),
        "secrets_found": sum(r.secrets_found for r in rows) + extra_secrets,
    }


def result_line(rows: list[FaultRow], extra_secrets: int = 0) -> str:
    """The last line a run prints: ``RESULT {...}``."""
    return "RESULT " + json.dumps(result(rows, extra_secrets))
