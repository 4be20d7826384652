"""Alembic environment for the reference service's schema (no alembic.ini needed).

The database comes from, in order: ``config.attributes["connection"]`` (an open SQLAlchemy
Connection the caller owns), the ``sqlalchemy.url`` main option, or the
``GANGWAY_DATABASE_URL`` environment variable. The URL holds the password: never log it.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

URL_ENV = "GANGWAY_DATABASE_URL"

config = context.config
# Autogenerate is not used: revisions are written by hand, expand before contract.
target_metadata = None


def database_url() -> str:
    """The database URL from the alembic config or the environment; a clear error if none."""
    url = config.get_main_option("sqlalchemy.url") or os.environ.get(URL_ENV, "").strip()
    if not url:
        raise RuntimeError(
            "no database URL for the migrations: set the 'sqlalchemy.url' main option on the "
            f"alembic Config, pass config.attributes['connection'], or set {URL_ENV}"
        )
    return url


def run_with_connection(connection: Connection) -> None:
    """Run the pending migrations on an open connection."""
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit the SQL instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against the caller's connection if given, else a short-lived engine of our own."""
    given = config.attributes.get("connection")
    if given is not None:
        run_with_connection(given)
        return
    # NullPool: a migration run is one connection, closed when done.
    engine = create_engine(database_url(), poolclass=pool.NullPool, hide_parameters=True)
    try:
        with engine.connect() as connection:
            run_with_connection(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
