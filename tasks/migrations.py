"""Schema migrations: plan and lint the pending revisions, apply them under a lock, prove them.

The lint reads the SQL alembic would emit (offline mode), so it sees hand-written
``op.execute`` as well as ``op.drop_column``. MySQL DDL is not transactional, so after an
upgrade the real columns are compared with what the revisions up to the recorded version
create: a migration that failed halfway shows up as a schema ahead of its version table.
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from gangway.config import DeployConfig
from gangway.errors import DatabaseError
from gangway.evidence import Check, GateResult, Strength
from tasks import schema

LOCK_TIMEOUT_S = 60
_IDENT = r"`?(\w+)`?"
_CONSTRAINT_WORDS = {
    "PRIMARY",
    "CONSTRAINT",
    "UNIQUE",
    "KEY",
    "INDEX",
    "FOREIGN",
    "CHECK",
    "FULLTEXT",
}
_NARROW_TYPES = re.compile(r"(VARCHAR|CHAR|VARBINARY)\s*\((\d+)\)", re.I)
_LENGTH = re.compile(r"\((\d+)\)")


@dataclass(frozen=True)
class Revision:
    """One alembic revision and the SQL it would run on this dialect."""

    id: str
    down: str | None
    message: str
    statements: tuple[str, ...]


@dataclass(frozen=True)
class MigrationPlan:
    """Where the database is, where the code needs it, and what lies between."""

    current: str | None
    head: str | None
    pending: tuple[Revision, ...]
    all_revisions: tuple[Revision, ...] = field(repr=False, default=())


@dataclass(frozen=True)
class MigrationResult:
    """What an upgrade did."""

    before: str | None
    after: str | None
    applied: tuple[str, ...]
    duration_s: float


def _offline_sql(
    cfg: AlembicConfig, buffer: io.StringIO, down: str | None, rev: str
) -> tuple[str, ...]:
    buffer.seek(0)
    buffer.truncate()
    command.upgrade(cfg, f"{down or 'base'}:{rev}", sql=True)
    statements = []
    for chunk in buffer.getvalue().split(";\n"):
        lines = [ln for ln in chunk.splitlines() if ln.strip() and not ln.lstrip().startswith("--")]
        text = "\n".join(lines).strip()
        if text and "alembic_version" not in text:
            statements.append(text)
    return tuple(statements)


def revisions(config: DeployConfig) -> tuple[Revision, ...]:
    """Every revision from base to head, oldest first, with its offline SQL."""
    assert config.migrations_dir is not None  # callers plan migrations only when declared
    return revisions_in(config.migrations_dir, config.database_url())


def revisions_in(script_location: Path, url: str) -> tuple[Revision, ...]:
    """Every revision of an alembic folder, oldest first, with the SQL it would emit for the
    dialect of url (offline: nothing connects, so a dialect-only URL will do)."""
    buffer = io.StringIO()
    cfg = AlembicConfig(output_buffer=buffer)
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    script = ScriptDirectory.from_config(cfg)
    ordered = list(reversed(list(script.walk_revisions("base", "heads"))))
    result = []
    for rev in ordered:
        down = rev.down_revision if isinstance(rev.down_revision, str) else None
        result.append(
            Revision(
                id=rev.revision,
                down=down,
                message=(rev.doc or "").strip().splitlines()[0] if rev.doc else "",
                statements=_offline_sql(cfg, buffer, down, rev.revision),
            )
        )
    return tuple(result)


def plan_migrations(config: DeployConfig) -> MigrationPlan:
    """The pending revisions for this environment's database (read-only)."""
    every = revisions(config)
    current = schema.current_revision(config)
    ids = [r.id for r in every]
    if current is not None and current not in ids:
        raise DatabaseError(
            f"the database is at revision {current}, which this code does not know",
            expected=f"one of {', '.join(ids)}",
            found=current,
            remedy="deploy the code that carries that revision, or reconcile alembic_version",
        )
    start = ids.index(current) + 1 if current else 0
    return MigrationPlan(
        current=current,
        head=ids[-1] if ids else None,
        pending=every[start:],
        all_revisions=every,
    )


def destructive_reasons(
    statement: str, live: dict[str, dict[str, schema.Column]] | None = None
) -> list[str]:
    """Why a statement is destructive (empty: expand-only). live: the tables' columns now;
    without them (offline) a MODIFY is judged by its text alone, not against the old type."""
    return _destructive(statement, live or {})


def _destructive(statement: str, live: dict[str, dict[str, schema.Column]]) -> list[str]:
    """Why a statement is destructive (empty when it is expand-only)."""
    sql = " ".join(statement.split())
    upper = sql.upper()
    reasons = []
    if re.match(r"DROP\s+TABLE", upper):
        reasons.append("drops a table")
    if re.match(r"(TRUNCATE|DELETE\s+FROM)\b", upper):
        reasons.append("deletes rows")
    if re.search(r"\bRENAME\b", upper) or re.search(r"\bCHANGE\s+(COLUMN\s+)?\w+\s+\w+", upper):
        reasons.append("renames a table or column (old code breaks)")
    altered = re.match(rf"ALTER\s+TABLE\s+{_IDENT}\s+(.*)", sql, re.I)
    if altered:
        table, rest = altered.group(1), altered.group(2)
        for clause in re.split(r",\s*(?=(?:ADD|DROP|MODIFY|ALTER|CHANGE)\b)", rest, flags=re.I):
            c_upper = clause.upper()
            if re.match(
                r"DROP\s+(COLUMN\s+)?(?!INDEX|KEY|PRIMARY|FOREIGN|CONSTRAINT|CHECK)", c_upper
            ):
                reasons.append(f"drops a column of {table}")
            if (
                re.match(r"ADD\s+(COLUMN\s+)?", c_upper)
                and "NOT NULL" in c_upper
                and "DEFAULT" not in c_upper
            ):
                reasons.append(f"adds a NOT NULL column to {table} without a DEFAULT")
            modified = re.match(rf"(?:MODIFY|ALTER)\s+(?:COLUMN\s+)?{_IDENT}\s+(.*)", clause, re.I)
            if modified:
                column, definition = modified.group(1), modified.group(2)
                now = live.get(table, {}).get(column)
                if now is not None:
                    if "NOT NULL" in definition.upper() and now.nullable:
                        reasons.append(f"makes {table}.{column} NOT NULL")
                    reasons.extend(_narrowing(table, column, now, definition))
    return reasons


def _narrowing(table: str, column: str, now: schema.Column, definition: str) -> list[str]:
    new_type = definition.split()[0].upper() if definition.split() else ""
    new_base = new_type.split("(")[0]
    if new_base != now.data_type.upper():
        return [f"changes {table}.{column} from {now.column_type} to {new_type}"]
    new_len = _NARROW_TYPES.match(new_type)
    old_len = _LENGTH.search(now.column_type)
    if new_len and old_len and int(new_len.group(2)) < int(old_len.group(1)):
        return [f"narrows {table}.{column} from {now.column_type} to {new_type}"]
    return []


def lint_gate(config: DeployConfig, plan: MigrationPlan, allow_destructive: bool) -> GateResult:
    """Block destructive pending revisions (drop, rename, narrowing, NOT NULL without default)."""
    started = time.monotonic()
    tables = {
        t
        for r in plan.pending
        for s in r.statements
        for t in re.findall(rf"TABLE\s+{_IDENT}", s, re.I)
    }
    live = {t: schema.columns(config, t) for t in tables}
    checks = []
    if not plan.pending:
        checks.append(
            Check(
                name="pending migrations",
                ok=True,
                expected="none or expand-only",
                found=f"none (database at {plan.current})",
            )
        )
    for rev in plan.pending:
        reasons = [reason for s in rev.statements for reason in _destructive(s, live)]
        if not reasons:
            checks.append(
                Check(
                    name=f"revision {rev.id}",
                    ok=True,
                    expected="expand-only",
                    found=f"expand-only: {rev.message}",
                )
            )
            continue
        checks.append(
            Check(
                name=f"revision {rev.id}",
                ok=allow_destructive,
                expected="expand-only (or allow_destructive)",
                found="; ".join(dict.fromkeys(reasons))
                + (" (allowed by allow_destructive)" if allow_destructive else ""),
                remedy="split it: expand now, contract in a later deploy once no code uses the "
                "old shape; or re-run with allow_destructive",
                evidence={"statements": list(rev.statements)},
            )
        )
    return GateResult(
        gate="migration lint",
        boundary="data",
        strength=Strength.CONTENT,
        checks=tuple(checks),
        duration_s=time.monotonic() - started,
    )


def expected_columns(plan: MigrationPlan, upto: str | None) -> dict[str, set[str]]:
    """Replay the revisions' DDL up to a revision: the columns each table should have."""
    tables: dict[str, set[str]] = {}
    if upto is None:
        return tables
    for rev in plan.all_revisions:
        for statement in rev.statements:
            _replay(" ".join(statement.split()), tables)
        if rev.id == upto:
            break
    return tables


def _replay(sql: str, tables: dict[str, set[str]]) -> None:
    created = re.match(rf"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{_IDENT}\s*\((.*)\)", sql, re.I)
    if created:
        body = created.group(2)
        tables[created.group(1)] = {
            m.group(1)
            for part in _split_top(body)
            if (m := re.match(rf"\s*{_IDENT}\s", part))
            and m.group(1).upper() not in _CONSTRAINT_WORDS
        }
        return
    dropped = re.match(rf"DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?{_IDENT}", sql, re.I)
    if dropped:
        tables.pop(dropped.group(1), None)
        return
    altered = re.match(rf"ALTER\s+TABLE\s+{_IDENT}\s+(.*)", sql, re.I)
    if altered and altered.group(1) in tables:
        cols = tables[altered.group(1)]
        for clause in _split_top(altered.group(2)):
            clause = clause.strip()
            if m := re.match(rf"ADD\s+(?:COLUMN\s+)?{_IDENT}\s", clause, re.I):
                if m.group(1).upper() not in _CONSTRAINT_WORDS:
                    cols.add(m.group(1))
            elif m := re.match(rf"DROP\s+(?:COLUMN\s+)?{_IDENT}", clause, re.I):
                cols.discard(m.group(1))
            elif m := re.match(rf"CHANGE\s+(?:COLUMN\s+)?{_IDENT}\s+{_IDENT}", clause, re.I):
                cols.discard(m.group(1))
                cols.add(m.group(2))
            elif m := re.match(rf"RENAME\s+COLUMN\s+{_IDENT}\s+TO\s+{_IDENT}", clause, re.I):
                cols.discard(m.group(1))
                cols.add(m.group(2))


def _split_top(body: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, []
    for ch in body:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def agreement_gate(config: DeployConfig, plan: MigrationPlan) -> GateResult:
    """The version table and the real columns agree (no half-applied DDL)."""
    started = time.monotonic()
    current = schema.current_revision(config)
    expected = expected_columns(plan, current)
    checks = []
    for table, want in sorted(expected.items()):
        have = set(schema.columns(config, table))
        missing, extra = sorted(want - have), sorted(have - want)
        ahead = ""
        if extra:
            later = [
                r.id
                for r in plan.all_revisions
                if any(re.search(rf"\b{re.escape(c)}\b", s) for s in r.statements for c in extra)
                and r.id not in _applied_ids(plan, current)
            ]
            ahead = f" (partially applied revision {', '.join(later)}?)" if later else ""
        checks.append(
            Check(
                name=f"schema of {table} at {current}",
                ok=not missing and not extra,
                expected=f"columns {', '.join(sorted(want))}",
                found="as expected"
                if not missing and not extra
                else f"missing {missing or '-'}; unexpected {extra or '-'}{ahead}",
                remedy=""
                if not missing and not extra
                else "MySQL DDL is not transactional: repair the table by hand to match revision "
                f"{current} (or finish the half-applied revision), then re-run",
            )
        )
    if not checks:
        checks.append(
            Check(name="schema", ok=True, expected="no tables yet", found=f"at {current}")
        )
    return GateResult(
        gate="migration applied",
        boundary="data",
        strength=Strength.GROUND_TRUTH,
        checks=tuple(checks),
        duration_s=time.monotonic() - started,
    )


def _applied_ids(plan: MigrationPlan, current: str | None) -> set[str]:
    ids: set[str] = set()
    for rev in plan.all_revisions:
        if current is None:
            break
        ids.add(rev.id)
        if rev.id == current:
            break
    return ids


def lock_name(config: DeployConfig, purpose: str) -> str:
    """A MySQL named-lock name (max 64 chars) for one purpose on this environment's database."""
    return f"gangway:{purpose}:{config.database.name}"[:64]


def migrate(config: DeployConfig, lock_timeout_s: int = LOCK_TIMEOUT_S) -> MigrationResult:
    """Upgrade to head holding a MySQL named lock, so one migrator runs per database."""
    started = time.monotonic()
    name = lock_name(config, "migrate")
    try:
        with schema.engine(config).connect() as conn:
            got = conn.execute(
                sa.text("SELECT GET_LOCK(:n, :t)"), {"n": name, "t": lock_timeout_s}
            ).scalar()
            if got != 1:
                holder = conn.execute(sa.text("SELECT IS_USED_LOCK(:n)"), {"n": name}).scalar()
                raise DatabaseError(
                    "another migrator holds the migration lock",
                    expected=f"lock {name!r} within {lock_timeout_s}s",
                    found=f"held by MySQL connection {holder}",
                    remedy="wait for the other deploy to finish, or find it with SHOW PROCESSLIST",
                )
            try:
                before = schema.current_revision(config)
                after = schema.upgrade(config)
            finally:
                conn.execute(sa.text("SELECT RELEASE_LOCK(:n)"), {"n": name})
    except SQLAlchemyError as exc:
        raise schema.db_error(config, exc, "holding the migration lock") from exc
    every = [r.id for r in revisions(config)]
    lo = every.index(before) + 1 if before else 0
    hi = every.index(after) + 1 if after else 0
    return MigrationResult(before, after, tuple(every[lo:hi]), time.monotonic() - started)
