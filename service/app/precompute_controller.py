"""Precompute controller (scheduled): which configured symbols still lack a report.

Event: ``{"report_date": "YYYY-MM-DD"}`` (optional, default today in TZ). Returns
``{"report_date": ..., "missing": [...], "present": [...]}`` in TICKER_SYMBOLS order; it
reports only and invokes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app import db, reports
from app.logs import get_logger
from app.settings import load_settings
from app.symbols import TickerSymbolsSettings, parse_report_date

log = get_logger(__name__)


# Base order sets field order, so error messages list variables as service.toml does.
class PrecomputeControllerSettings(TickerSymbolsSettings, db.DatabaseSettings):
    """TZ, DB_*, CACHE_TABLE and TICKER_SYMBOLS."""


SETTINGS = load_settings(PrecomputeControllerSettings)


def split_by_presence(wanted: list[str], stored: set[str]) -> tuple[list[str], list[str]]:
    """(missing, present) of ``wanted``, each in ``wanted`` order."""
    missing = [s for s in wanted if s not in stored]
    present = [s for s in wanted if s in stored]
    return missing, present


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Compare TICKER_SYMBOLS with the reports stored for the day."""
    raw_date = event.get("report_date") if isinstance(event, Mapping) else None
    report_date = parse_report_date(raw_date, SETTINGS.today())
    with db.connection(SETTINGS) as conn:
        stored = set(reports.symbols_on(conn, SETTINGS.table, report_date))
    missing, present = split_by_presence(SETTINGS.symbols, stored)
    log.info(
        "precompute status date=%s missing=%s present=%s",
        report_date.isoformat(),
        ",".join(missing) or "-",
        ",".join(present) or "-",
    )
    return {"report_date": report_date.isoformat(), "missing": missing, "present": present}
