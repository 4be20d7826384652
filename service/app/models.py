"""The precomputed_reports row the report worker writes: the single source of its columns.

REPORT_COLUMNS drives both the INSERT and the reads. Every column here must exist in the
database before code that writes it is deployed (migration before code); the deploy
pipeline checks these against information_schema through deployments/service.toml.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

# Dropping a name here drops its value from the INSERT without any error: that is exactly
# how the 'silent data loss' incident lost pdf_s3_key. Keep this in step with service.toml.
REPORT_COLUMNS: tuple[str, ...] = (
    "symbol",
    "report_date",
    "report_json",
    "pdf_s3_key",
    "created_at",
    "updated_at",
)

# The unique key an upsert matches on, and columns a re-run must not overwrite.
KEY_COLUMNS: tuple[str, ...] = ("symbol", "report_date")
INSERT_ONLY_COLUMNS: tuple[str, ...] = ("created_at",)


@dataclass(frozen=True)
class ReportRow:
    """One precomputed report; report_json is already a JSON string, as the column needs."""

    symbol: str
    report_date: date
    report_json: str
    pdf_s3_key: str | None
    created_at: datetime
    updated_at: datetime

    def values(self, columns: Sequence[str]) -> tuple[object, ...]:
        """The row's values for ``columns``, in that order."""
        return tuple(getattr(self, column) for column in columns)


def upsert_statement(quoted_table: str, columns: Sequence[str]) -> str:
    """INSERT ... ON DUPLICATE KEY UPDATE for ``columns`` (pymysql %s placeholders)."""
    unknown = [c for c in columns if c not in ReportRow.__dataclass_fields__]
    if unknown:
        raise ValueError(f"not ReportRow fields: {', '.join(unknown)}")
    absent_keys = [c for c in KEY_COLUMNS if c not in columns]
    if absent_keys:
        raise ValueError(f"an upsert needs the key columns: {', '.join(absent_keys)}")
    names = ", ".join(f"`{c}`" for c in columns)
    placeholders = ", ".join(["%s"] * len(columns))
    updates = ", ".join(
        # VALUES(col) rather than MySQL 8's row alias: MariaDB (and older Aurora) lack aliases.
        f"`{c}` = VALUES(`{c}`)"
        for c in columns
        if c not in KEY_COLUMNS and c not in INSERT_ONLY_COLUMNS
    )
    return (
        f"INSERT INTO {quoted_table} ({names}) VALUES ({placeholders}) "
        f"ON DUPLICATE KEY UPDATE {updates}"
    )
