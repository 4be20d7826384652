"""Query tool (scheduled, read-only): which symbols have a report for a day.

Event: ``{"report_date": "YYYY-MM-DD"}`` (optional, default today in TZ).
Returns ``{"report_date": ..., "count": n, "symbols": [...]}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app import db, reports
from app.logs import get_logger
from app.settings import load_settings
from app.symbols import parse_report_date

log = get_logger(__name__)


class QueryToolSettings(db.DatabaseSettings):
    """TZ, DB_* and CACHE_TABLE."""


SETTINGS = load_settings(QueryToolSettings)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Count and list the reports stored for one day; raises ValueError on a bad date."""
    raw_date = event.get("report_date") if isinstance(event, Mapping) else None
    report_date = parse_report_date(raw_date, SETTINGS.today())
    with db.connection(SETTINGS) as conn:
        symbols = reports.symbols_on(conn, SETTINGS.table, report_date)
    log.info("reports queried date=%s count=%d", report_date.isoformat(), len(symbols))
    return {"report_date": report_date.isoformat(), "count": len(symbols), "symbols": symbols}
