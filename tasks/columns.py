"""The code → storage contract: every column a handler writes exists, with a compatible shape.

The silent-data-loss incident: the code passed pdf_s3_key, the column did not exist, the value
was dropped. This gate reads information_schema (ground truth for the schema) and names, for
each missing column, the revision that adds it.
"""

from __future__ import annotations

import re
import time

from gangway.config import ColumnSpec, DeployConfig, TableContract
from gangway.evidence import Check, GateResult, Strength
from tasks import schema
from tasks.migrations import MigrationPlan

# Type families the code relies on → the DATA_TYPEs that hold them. MariaDB reports JSON as
# longtext (with a json_valid CHECK); MySQL/Aurora report json.
COMPATIBLE = {
    "varchar": {"varchar", "char"},
    "text": {"text", "mediumtext", "longtext", "tinytext", "varchar"},
    "json": {"json", "longtext"},
    "date": {"date"},
    "datetime": {"datetime", "timestamp"},
    "int": {"int", "smallint", "mediumint", "tinyint", "bigint"},
    "bigint": {"bigint"},
    "decimal": {"decimal"},
    "bool": {"tinyint", "bit"},
}


def _adding_revision(plan: MigrationPlan, table: str, column: str) -> str | None:
    pattern = re.compile(rf"\b{re.escape(column)}\b")
    for rev in plan.all_revisions:
        for statement in rev.statements:
            if (
                re.search(rf"\b{re.escape(table)}\b", statement)
                and pattern.search(statement)
                and (re.match(r"\s*(CREATE\s+TABLE|ALTER\s+TABLE)", statement, re.I))
            ):
                return rev.id
    return None


def _column_check(
    table: TableContract,
    name: str,
    want: ColumnSpec,
    have: schema.Column | None,
    plan: MigrationPlan,
) -> Check:
    label = f"{table.name}.{name}"
    expected = (
        f"{want.type}{'' if want.nullable else ' NOT NULL'} (written by {', '.join(table.writers)})"
    )
    if have is None:
        rev = _adding_revision(plan, table.name, name)
        pending = rev is not None and rev in {r.id for r in plan.pending}
        remedy = (
            f"apply migration {rev} before deploying this code (migration before code)"
            if pending
            else f"revision {rev} should have added it: the schema drifted; repair it"
            if rev
            else f"write a migration that adds {label}"
        )
        return Check(
            name=label,
            ok=False,
            expected=expected,
            found="column does not exist",
            remedy=remedy,
            evidence={"adding_revision": rev},
        )
    problems = []
    if have.data_type.lower() not in COMPATIBLE[want.type]:
        problems.append(f"type {have.column_type} cannot hold {want.type}")
    if want.nullable and not have.nullable:
        problems.append("NOT NULL, but the code may write NULL")
    return Check(
        name=label,
        ok=not problems,
        expected=expected,
        found=f"{have.column_type}{'' if have.nullable else ' NOT NULL'}"
        + (f": {'; '.join(problems)}" if problems else ""),
        remedy="" if not problems else f"migrate {label} to a compatible type/nullability",
    )


def verify_columns(config: DeployConfig, plan: MigrationPlan) -> GateResult:
    """Check every declared written column against information_schema."""
    started = time.monotonic()
    checks: list[Check] = []
    for table in config.tables:
        live = schema.columns(config, table.name)
        if not live:
            rev = _adding_revision(plan, table.name, next(iter(table.columns)))
            checks.append(
                Check(
                    name=table.name,
                    ok=False,
                    expected="the table exists",
                    found="table does not exist",
                    remedy=f"apply migration {rev}"
                    if rev
                    else f"write a migration creating {table.name}",
                )
            )
            continue
        for name, want in table.columns.items():
            checks.append(_column_check(table, name, want, live.get(name), plan))
        # A NOT NULL column without default that the code never writes makes every INSERT fail.
        for name, have in live.items():
            if name in table.columns or have.nullable or have.default is not None:
                continue
            if "auto_increment" in have.extra.lower() or "generated" in have.extra.lower():
                continue
            checks.append(
                Check(
                    name=f"{table.name}.{name}",
                    ok=False,
                    expected="written by the code, nullable, or with a DEFAULT",
                    found=f"{have.column_type} NOT NULL without DEFAULT, not written by "
                    f"{', '.join(table.writers)}",
                    remedy=f"give {table.name}.{name} a DEFAULT or make it nullable (or declare it "
                    "in the contract if the code writes it)",
                )
            )
    if not config.tables:
        checks.append(
            Check(
                name="data contract",
                ok=True,
                expected="tables the code writes",
                found="the service declares none",
            )
        )
    return GateResult(
        gate="verify columns",
        boundary="data",
        strength=Strength.GROUND_TRUTH,
        checks=tuple(checks),
        duration_s=time.monotonic() - started,
    )
