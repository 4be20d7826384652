"""Reading the database for the drift check: the live columns of the contract's tables, the
recorded revision, the migrations' head, and the columns the recorded revision's DDL creates.

Read-only. A service without a database or migrations has no schema to drift (None). The
database unreachable raises DatabaseError: the environment could not be checked.
"""

from __future__ import annotations

import threading

from gangway.config import DeployConfig
from tasks import schema
from tasks.columns import COMPATIBLE
from tasks.drift_compare import LiveColumn, SchemaReading
from tasks.migrations import expected_columns, plan_migrations

# alembic keeps its running environment in module globals: two environments' revisions read
# at once in one process would see each other's ("No context has been configured yet").
_ALEMBIC = threading.Lock()


def read_schema(config: DeployConfig) -> SchemaReading | None:
    """The environment's schema as the comparison needs it (None: no database declared)."""
    if config.environment.database is None:
        return None
    contract = {
        table.name: {name: (col.type, col.nullable) for name, col in table.columns.items()}
        for table in config.tables
    }
    revision = head = None
    implied: dict[str, frozenset[str]] = {}
    if config.migrations_dir is not None:
        with _ALEMBIC:
            plan = plan_migrations(config)
        revision, head = plan.current, plan.head
        implied = {t: frozenset(c) for t, c in expected_columns(plan, revision).items()}
    tables = set(contract) | set(implied)
    live = {
        table: {
            name: LiveColumn(data_type=c.data_type, column_type=c.column_type, nullable=c.nullable)
            for name, c in schema.columns(config, table).items()
        }
        for table in sorted(tables)
    }
    return SchemaReading(
        contract=contract,
        live=live,
        implied=implied,
        revision=revision,
        head=head,
        compatible={family: frozenset(types) for family, types in COMPATIBLE.items()},
    )
