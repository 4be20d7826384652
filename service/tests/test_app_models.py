"""The report row's column list, its INSERT, and the data contract in service.toml."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from app import db, models
from service_contract import service_contract


def test_columns_match_the_data_contract() -> None:
    (table,) = [t for t in service_contract()["tables"] if t["name"] == "precomputed_reports"]
    assert set(models.REPORT_COLUMNS) == set(table["columns"])
    assert set(models.REPORT_COLUMNS) == set(models.ReportRow.__dataclass_fields__)


def test_upsert_names_every_column_once_and_keeps_created_at() -> None:
    sql = models.upsert_statement("`precomputed_reports`", models.REPORT_COLUMNS)
    insert, update = sql.split(" ON DUPLICATE KEY UPDATE ")
    assert insert.startswith("INSERT INTO `precomputed_reports` (`symbol`, `report_date`, ")
    assert insert.count("%s") == len(models.REPORT_COLUMNS)
    assert "`pdf_s3_key`" in insert
    assert update == (
        "`report_json` = VALUES(`report_json`), `pdf_s3_key` = VALUES(`pdf_s3_key`), "
        "`updated_at` = VALUES(`updated_at`)"
    )


def test_a_column_left_out_of_the_list_is_left_out_of_the_insert() -> None:
    # The 'silent data loss' mechanism: the row still has the value, the SQL never sends it.
    columns = tuple(c for c in models.REPORT_COLUMNS if c != "pdf_s3_key")
    sql = models.upsert_statement("`t`", columns)
    row = models.ReportRow(
        "PTT", date(2026, 11, 23), "{}", "reports/x.pdf", datetime(2026, 1, 1), datetime(2026, 1, 1)
    )
    assert "pdf_s3_key" not in sql
    assert "reports/x.pdf" not in row.values(columns)


def test_upsert_refuses_unknown_or_keyless_column_lists() -> None:
    with pytest.raises(ValueError, match="not ReportRow fields: pdf_key"):
        models.upsert_statement("`t`", (*models.REPORT_COLUMNS, "pdf_key"))
    with pytest.raises(ValueError, match="key columns: report_date"):
        models.upsert_statement("`t`", ("symbol", "report_json"))


@pytest.mark.parametrize("name", ["precomputed_reports", "_x", "A1"])
def test_identifier_accepted(name: str) -> None:
    assert db.quote_identifier(name) == f"`{name}`"


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a`b", "a b", "x;drop", "a" * 65])
def test_identifier_refused(name: str) -> None:
    with pytest.raises(ValueError):
        db.quote_identifier(name)
