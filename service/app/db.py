"""Database settings and pymysql connections for the handlers that read or write reports."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pymysql
import pymysql.cursors
from pydantic import Field, SecretStr, field_validator

from app.settings import TimezoneSettings

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
CONNECT_TIMEOUT_S = 5
# Below every function's timeout (the shortest DB user has 30 s), so a hung query is
# reported by us with a message rather than killed by the runtime without one.
IO_TIMEOUT_S = 15


def quote_identifier(name: str) -> str:
    """``name`` back-quoted for SQL; ValueError unless it is a plain identifier."""
    # Table names cannot be bound as parameters, so anything interpolated is checked first.
    if not IDENTIFIER.match(name):
        raise ValueError("not a plain SQL identifier (letters, digits, underscore; max 64)")
    return f"`{name}`"


class DatabaseSettings(TimezoneSettings):
    """TZ plus the Aurora MySQL connection and the cache table name."""

    db_host: str
    db_port: int = Field(ge=1, le=65535)
    db_name: str
    db_user: str
    db_password: SecretStr
    cache_table: str

    @field_validator("cache_table")
    @classmethod
    def _plain_identifier(cls, value: str) -> str:
        quote_identifier(value)
        return value

    @property
    def table(self) -> str:
        """The cache table name, quoted and safe to interpolate."""
        return quote_identifier(self.cache_table)


def connect(settings: DatabaseSettings) -> pymysql.connections.Connection:
    """A new connection with bounded connect and I/O waits; rows come back as dicts."""
    return pymysql.connect(
        host=settings.db_host,
        port=settings.db_port,
        user=settings.db_user,
        password=settings.db_password.get_secret_value(),
        database=settings.db_name,
        charset="utf8mb4",
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=IO_TIMEOUT_S,
        write_timeout=IO_TIMEOUT_S,
        autocommit=False,
        cursorclass=pymysql.cursors.DictCursor,
    )


@contextmanager
def connection(settings: DatabaseSettings) -> Iterator[pymysql.connections.Connection]:
    """A connection for one invocation, always closed (Lambda freezes idle sockets)."""
    conn = connect(settings)
    try:
        yield conn
    finally:
        conn.close()
