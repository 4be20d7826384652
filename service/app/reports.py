"""Reads and writes of the precomputed reports table; SQL lives here and nowhere else."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import pymysql

from app import models


def store_report(conn: pymysql.connections.Connection, table: str, row: models.ReportRow) -> int:
    """Upsert ``row`` into ``table`` (already quoted) and commit; returns affected rows."""
    # Read at call time, so the column list has one home: models.REPORT_COLUMNS.
    columns = models.REPORT_COLUMNS
    with conn.cursor() as cursor:
        affected = cursor.execute(models.upsert_statement(table, columns), row.values(columns))
    conn.commit()
    return int(affected)


def _select(table: str) -> str:
    names = ", ".join(f"`{c}`" for c in models.REPORT_COLUMNS)
    return f"SELECT {names} FROM {table}"


def fetch_report(
    conn: pymysql.connections.Connection, table: str, symbol: str, report_date: date
) -> dict[str, Any] | None:
    """The report for one symbol and day, or None."""
    with conn.cursor() as cursor:
        cursor.execute(
            f"{_select(table)} WHERE `symbol` = %s AND `report_date` = %s",
            (symbol, report_date),
        )
        row = cursor.fetchone()
    return decode_row(row) if row else None


def latest_report(
    conn: pymysql.connections.Connection, table: str, symbol: str
) -> dict[str, Any] | None:
    """The most recent report for one symbol, or None."""
    with conn.cursor() as cursor:
        cursor.execute(
            f"{_select(table)} WHERE `symbol` = %s ORDER BY `report_date` DESC LIMIT 1",
            (symbol,),
        )
        row = cursor.fetchone()
    return decode_row(row) if row else None


def symbols_on(conn: pymysql.connections.Connection, table: str, report_date: date) -> list[str]:
    """The symbols that have a report for ``report_date``, sorted; read-only."""
    with conn.cursor() as cursor:
        # A read-only transaction makes the server refuse any write slipped in here.
        cursor.execute("START TRANSACTION READ ONLY")
        cursor.execute(
            f"SELECT `symbol` FROM {table} WHERE `report_date` = %s ORDER BY `symbol`",
            (report_date,),
        )
        rows = cursor.fetchall()
    conn.commit()
    return [str(row["symbol"]) for row in rows]


def decode_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON-ready values: report_json parsed, dates and times in ISO form."""
    decoded: dict[str, Any] = {}
    for key, value in row.items():
        if key == "report_json":
            decoded["report"] = json.loads(value) if isinstance(value, bytes | str) else value
        elif isinstance(value, datetime | date):
            decoded[key] = value.isoformat()
        else:
            decoded[key] = value
    return decoded
