"""A rollback's schema requirement: the columns the target's code writes, re-checked now.

The target deploy's "verify columns" gate recorded, per written column, the type family and
nullability its code relies on (Check.expected: ``json NOT NULL (written by worker)``). Contract
migrations are never undone, so a column dropped or retyped since then would silently lose
the old code's writes: each recorded column is read again from information_schema.
"""

from __future__ import annotations

import re
import time

from gangway.config import DeployConfig
from gangway.evidence import Check, GateResult, Strength
from gangway.record import DeployRecord
from tasks import schema
from tasks.columns import COMPATIBLE

GATE = "schema requirement"
_SPEC = re.compile(r"^(?P<type>\w+)(?P<not_null> NOT NULL)? \(written by (?P<writers>[^)]*)\)")


def recorded_columns(record: DeployRecord) -> list[tuple[str, str, str, bool]]:
    """(table, column, type family, nullable) of each column the record's verify-columns gate
    passed; empty when it has no such gate."""
    found = []
    for gate in record.gates:
        if gate.gate != "verify columns":
            continue
        for check in gate.checks:
            spec = _SPEC.match(check.expected)
            if not check.ok or spec is None or "." not in check.name:
                continue
            table, column = check.name.split(".", 1)
            found.append((table, column, spec["type"], spec["not_null"] is None))
    return found


def check_requirement(
    config: DeployConfig, target: DeployRecord, columns: list[tuple[str, str, str, bool]]
) -> GateResult:
    """Each recorded column against information_schema now (type family and nullability)."""
    started = time.monotonic()
    live: dict[str, dict[str, schema.Column]] = {}
    checks = []
    for table, column, family, nullable in columns:
        have = live.setdefault(table, schema.columns(config, table)).get(column)
        label = f"{table}.{column}"
        expected = f"{family}{'' if nullable else ' NOT NULL'} (written by the code of deploy " \
            f"{target.deploy_id[:12]}, commit {target.commit_sha[:12]})"
        remedy = (
            f"contract migrations are never undone: {label} cannot come back by a rollback; "
            "deploy a fix forward, or roll back to a deploy whose code does not write it (--to)"
        )
        if have is None:
            checks.append(
                Check(name=label, ok=False, expected=expected, found="column does not exist",
                      remedy=remedy)
            )
            continue
        problems = []
        if have.data_type.lower() not in COMPATIBLE.get(family, {family}):
            problems.append(f"type {have.column_type} cannot hold {family}")
        if nullable and not have.nullable:
            problems.append("NOT NULL, but the code may write NULL")
        checks.append(
            Check(
                name=label,
                ok=not problems,
                expected=expected,
                found=f"{have.column_type}{'' if have.nullable else ' NOT NULL'}"
                + (f": {'; '.join(problems)}" if problems else ""),
                remedy=remedy if problems else "",
            )
        )
    return GateResult(
        gate=GATE,
        boundary="data",
        strength=Strength.GROUND_TRUTH,
        checks=tuple(checks),
        duration_s=time.monotonic() - started,
    )
