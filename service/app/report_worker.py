"""Report worker: build one symbol's daily report, store its PDF in S3 and its row in the cache.

Event: ``{"symbol": "PTT", "report_date": "YYYY-MM-DD" (default today in TZ),
"correlation_id": "..." (default a new uuid4 hex)}``. The correlation id is written into the
S3 key and into report_json, so a checker can find both the object and the row again.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

import boto3

from app import db, reports
from app.logs import get_logger
from app.models import ReportRow
from app.pdf import render_pdf
from app.settings import load_settings
from app.symbols import normalise_symbol, parse_report_date

CORRELATION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
REPORT_VERSION = 1

log = get_logger(__name__)


class ReportWorkerSettings(db.DatabaseSettings):
    """TZ, DB_*, CACHE_TABLE and REPORT_BUCKET."""

    report_bucket: str


SETTINGS = load_settings(ReportWorkerSettings)
# Created once per container. The endpoint comes from boto3's own configuration
# (AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 in a rehearsal, the real S3 on AWS).
S3 = boto3.client("s3")


def pdf_key(report_date: date, symbol: str, correlation_id: str) -> str:
    """The S3 key of a report's PDF."""
    return f"reports/{report_date.isoformat()}/{symbol}/{correlation_id}.pdf"


def parse_event(event: Mapping[str, Any], today: date) -> tuple[str, date, str]:
    """(symbol, report_date, correlation_id) from the event; ValueError on bad input."""
    if not isinstance(event, Mapping):
        raise ValueError("event must be a JSON object")
    raw_symbol = event.get("symbol")
    if not isinstance(raw_symbol, str):
        raise ValueError("event.symbol is required (a ticker such as 'PTT')")
    symbol = normalise_symbol(raw_symbol)
    report_date = parse_report_date(event.get("report_date"), today)
    correlation_id = event.get("correlation_id") or uuid.uuid4().hex
    if not isinstance(correlation_id, str) or not CORRELATION_ID.match(correlation_id):
        raise ValueError("event.correlation_id must be 1-64 of A-Z, a-z, 0-9, '_', '-'")
    return symbol, report_date, correlation_id


def build_report(
    symbol: str, report_date: date, correlation_id: str, generated_at: datetime
) -> dict[str, Any]:
    """The report document stored as report_json (no market data source in this service)."""
    return {
        "version": REPORT_VERSION,
        "symbol": symbol,
        "report_date": report_date.isoformat(),
        "correlation_id": correlation_id,
        "generated_at": generated_at.isoformat(),
        "title": f"Daily report {symbol} {report_date.isoformat()}",
        "summary": f"Precomputed daily report for {symbol} on {report_date.isoformat()}.",
    }


def report_lines(report: Mapping[str, Any]) -> list[str]:
    """The text lines printed on the PDF."""
    return [
        str(report["title"]),
        "",
        str(report["summary"]),
        f"Generated at: {report['generated_at']}",
        f"Correlation id: {report['correlation_id']}",
    ]


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Render, upload and record one report; raises on bad input or a failed store."""
    symbol, report_date, correlation_id = parse_event(event, SETTINGS.today())
    generated_at = SETTINGS.now()
    report = build_report(symbol, report_date, correlation_id, generated_at)
    pdf = render_pdf(report_lines(report))
    key = pdf_key(report_date, symbol, correlation_id)

    # Object first, row second: a row must never point at a PDF that does not exist.
    S3.put_object(Bucket=SETTINGS.report_bucket, Key=key, Body=pdf, ContentType="application/pdf")
    # DATETIME columns hold UTC, whole seconds (the column has no fractional part).
    now_utc = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    row = ReportRow(
        symbol=symbol,
        report_date=report_date,
        report_json=json.dumps(report, sort_keys=True, separators=(",", ":")),
        pdf_s3_key=key,
        created_at=now_utc,
        updated_at=now_utc,
    )
    with db.connection(SETTINGS) as conn:
        reports.store_report(conn, SETTINGS.table, row)
    log.info(
        "report stored symbol=%s date=%s correlation_id=%s key=%s pdf_bytes=%d",
        symbol,
        report_date.isoformat(),
        correlation_id,
        key,
        len(pdf),
    )
    return {
        "status": "ok",
        "correlation_id": correlation_id,
        "symbol": symbol,
        "report_date": report_date.isoformat(),
        "pdf_s3_key": key,
        "pdf_bytes": len(pdf),
    }
