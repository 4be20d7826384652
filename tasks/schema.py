"""The pipeline → MySQL boundary: alembic revisions and the real columns in information_schema."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from gangway.config import DeployConfig
from gangway.errors import DatabaseError

CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class Column:
    """A column as the database reports it."""

    name: str
    data_type: str
    column_type: str
    nullable: bool
    default: str | None
    extra: str = ""


def engine(config: DeployConfig) -> sa.Engine:
    """An engine for the environment's database with a bounded connect time."""
    return sa.create_engine(
        config.database_url(),
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
        pool_pre_ping=True,
    )


def db_error(config: DeployConfig, exc: SQLAlchemyError, doing: str) -> DatabaseError:
    db = config.database
    orig = getattr(exc, "orig", exc)
    found = f"{type(orig).__name__}: {orig}"
    for secret in config.secret_values():
        found = found.replace(secret, "***")
    unreachable = isinstance(exc, OperationalError) and "2003" in found
    return DatabaseError(
        f"{doing} on {db.user}@{db.host}:{db.port}/{db.name} failed",
        expected="a reachable MySQL that accepts the configured user",
        found=found[:500],
        remedy="start MySQL or fix environment.database host/port (`make stack` on the rehearsal)"
        if unreachable
        else f"check the user's grants and {db.password_env}",
    )


def alembic_config(config: DeployConfig, connection: sa.Connection | None = None) -> AlembicConfig:
    """An alembic Config for the service's migrations, bound to this environment's database."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(config.migrations_dir))
    # ConfigParser interpolation would mangle a '%' in a password.
    cfg.set_main_option("sqlalchemy.url", config.database_url().replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision(config: DeployConfig) -> str | None:
    """The newest revision in the service's migrations folder."""
    if not Path(config.migrations_dir).exists():
        raise DatabaseError(
            "the migrations folder does not exist",
            expected=str(config.migrations_dir),
            found="no such folder",
            remedy="fix service.migrations in service.toml",
        )
    return ScriptDirectory.from_config(alembic_config(config)).get_current_head()


def current_revision(config: DeployConfig) -> str | None:
    """The revision the database is at (None: never migrated)."""
    try:
        with engine(config).connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise db_error(config, exc, "reading the schema revision") from exc


def upgrade(config: DeployConfig, target: str = "head") -> str | None:
    """Apply migrations up to target; returns the revision reached."""
    try:
        with engine(config).begin() as conn:
            command.upgrade(alembic_config(config, conn), target)
    except SQLAlchemyError as exc:
        raise db_error(config, exc, f"migrating to {target}") from exc
    return current_revision(config)


def columns(config: DeployConfig, table: str) -> dict[str, Column]:
    """The table's columns from information_schema (empty when the table does not exist)."""
    query = sa.text(
        "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA "
        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :schema AND TABLE_NAME = :table "
        "ORDER BY ORDINAL_POSITION"
    )
    try:
        with engine(config).connect() as conn:
            rows = conn.execute(
                query, {"schema": config.database.name, "table": table}
            ).all()
    except SQLAlchemyError as exc:
        raise db_error(config, exc, f"reading the columns of {table}") from exc
    return {
        r[0]: Column(
            name=r[0],
            data_type=r[1],
            column_type=r[2],
            nullable=r[3] == "YES",
            default=r[4],
            extra=r[5] or "",
        )
        for r in rows
    }
