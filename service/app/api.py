"""API handler: GET one precomputed report by ``symbol`` and ``date`` query parameters.

200 with the report, 404 when there is none, 400 on bad input, 405 for non-GET methods.
``date`` defaults to today in TZ.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from app import db, reports, web
from app.logs import get_logger
from app.settings import load_settings
from app.symbols import normalise_symbol, parse_report_date

log = get_logger(__name__)


class ApiSettings(db.DatabaseSettings):
    """TZ, DB_* and CACHE_TABLE."""


SETTINGS = load_settings(ApiSettings)


def parse_request(event: Mapping[str, Any], today: date) -> tuple[str, date]:
    """(symbol, report_date) from the query string; ValueError with a user-facing message."""
    params = web.query_params(event)
    if not params.get("symbol"):
        raise ValueError("query parameter 'symbol' is required")
    return normalise_symbol(params["symbol"]), parse_report_date(params.get("date"), today)


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """API Gateway proxy handler returning a JSON response."""
    if not isinstance(event, Mapping):
        return web.error(400, "event must be a JSON object")
    verb = web.method(event)
    if verb is not None and verb not in ("GET", "HEAD"):
        return web.error(405, f"method {verb} not allowed; use GET")
    try:
        symbol, report_date = parse_request(event, SETTINGS.today())
    except ValueError as exc:
        return web.error(400, str(exc))
    with db.connection(SETTINGS) as conn:
        report = reports.fetch_report(conn, SETTINGS.table, symbol, report_date)
    log.info(
        "report lookup symbol=%s date=%s found=%s", symbol, report_date.isoformat(), bool(report)
    )
    if report is None:
        return web.error(404, f"no report for {symbol} on {report_date.isoformat()}")
    return web.response(200, report)
