"""Lambda's platform lines, read: which invocation a line opens, ends or reports, and what
its REPORT measured.

Lambda writes three platform lines per invocation. In the text log format they are
``START RequestId: …``, ``END RequestId: …`` and ``REPORT RequestId: …`` with tab-separated
``Name: value unit`` fields; with ``LoggingConfig.LogFormat = JSON`` they are JSON records
of type ``platform.start``, ``platform.runtimeDone`` and ``platform.report`` (the report's
figures under ``record.metrics``). Both shapes become one ``Report`` per request id here, so
the log scan and the headroom gate never care which format a function logs in.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["START", "END", "REPORT"]
Format = Literal["text", "json"]

TEXT_MARKER = re.compile(r"^(START|END|REPORT) RequestId: ([0-9A-Za-z-]+)")
# Longest names first at each position, so 'Billed Duration' and 'Init Duration' are never
# read as the invocation's own 'Duration'.
TEXT_FIELD = re.compile(
    r"(Billed Duration|Init Duration|Restore Duration|Max Memory Used|Memory Size|Duration"
    r"|Status|Error Type): *([0-9.]+ *(?:ms|MB)?|[A-Za-z][\w.]*)"
)
JSON_KINDS: dict[str, Kind] = {
    "platform.start": "START",
    "platform.runtimeDone": "END",
    "platform.report": "REPORT",
}
QUOTED_CHARS = 300


@dataclass(frozen=True)
class Report:
    """What one invocation's REPORT says. A figure the line does not carry is None (a REPORT
    of a sandbox failure may carry only its status)."""

    request_id: str
    duration_ms: float | None = None
    billed_duration_ms: float | None = None
    memory_size_mb: int | None = None
    max_memory_used_mb: int | None = None
    # Only on the invocation that started its execution environment (a cold start).
    init_duration_ms: float | None = None
    # 'success' when the line names none; else as written: 'timeout', 'error', 'failure'.
    status: str = "success"
    error_type: str = ""
    format: Format = "text"
    line: str = ""

    @property
    def timed_out(self) -> bool:
        """The invocation was stopped at the function's timeout."""
        return self.status == "timeout"

    @property
    def failed(self) -> bool:
        """The platform reports the invocation as not successful (timeout, error, failure)."""
        return self.status != "success"


@dataclass(frozen=True)
class Marker:
    """A platform line: which of START/END/REPORT it is, for which request, and the report."""

    kind: Kind
    request_id: str
    report: Report | None = None


def marker(message: str) -> Marker | None:
    """The platform line message is (text or JSON format), or None for any other line."""
    text = message.strip()
    if text.startswith("{"):
        return _json_marker(text)
    found = TEXT_MARKER.match(text)
    if found is None:
        return None
    kind: Kind = found.group(1)  # type: ignore[assignment]
    request_id = found.group(2)
    report = parse_text(text) if kind == "REPORT" else None
    return Marker(kind, request_id, report)


def parse_report(message: str) -> Report | None:
    """The REPORT the line carries (text ``REPORT RequestId:`` or JSON ``platform.report``)."""
    found = marker(message)
    return found.report if found else None


def parse_text(line: str) -> Report | None:
    """A text-format REPORT line, or None when line is not one."""
    text = line.strip()
    found = TEXT_MARKER.match(text)
    if found is None or found.group(1) != "REPORT":
        return None
    fields = dict(TEXT_FIELD.findall(text[found.end():]))
    return Report(
        request_id=found.group(2),
        duration_ms=_number(fields.get("Duration"), "ms"),
        billed_duration_ms=_number(fields.get("Billed Duration"), "ms"),
        memory_size_mb=_whole(_number(fields.get("Memory Size"), "MB")),
        max_memory_used_mb=_whole(_number(fields.get("Max Memory Used"), "MB")),
        init_duration_ms=_number(fields.get("Init Duration"), "ms"),
        status=(fields.get("Status") or "success").strip().lower(),
        error_type=(fields.get("Error Type") or "").strip(),
        format="text",
        line=text[:QUOTED_CHARS],
    )


def parse_json(document: dict[str, Any], line: str = "") -> Report | None:
    """A JSON-format ``platform.report`` record, or None when document is not one."""
    if document.get("type") != "platform.report":
        return None
    record = document.get("record")
    if not isinstance(record, dict) or not isinstance(record.get("requestId"), str):
        return None
    metrics = record.get("metrics")
    metrics = metrics if isinstance(metrics, dict) else {}
    status = record.get("status")
    return Report(
        request_id=record["requestId"],
        duration_ms=_float(metrics.get("durationMs")),
        billed_duration_ms=_float(metrics.get("billedDurationMs")),
        memory_size_mb=_whole(_float(metrics.get("memorySizeMB"))),
        max_memory_used_mb=_whole(_float(metrics.get("maxMemoryUsedMB"))),
        init_duration_ms=_float(metrics.get("initDurationMs")),
        status=status.strip().lower() if isinstance(status, str) and status else "success",
        error_type=str(record.get("errorType") or ""),
        format="json",
        line=line[:QUOTED_CHARS],
    )


def _json_marker(text: str) -> Marker | None:
    try:
        document = json.loads(text)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    kind = JSON_KINDS.get(str(document.get("type")))
    record = document.get("record")
    if kind is None or not isinstance(record, dict):
        return None
    request_id = record.get("requestId")
    if not isinstance(request_id, str) or not request_id:
        return None
    report = parse_json(document, text) if kind == "REPORT" else None
    return Marker(kind, request_id, report)


def _number(value: str | None, unit: str) -> float | None:
    if not value:
        return None
    number = value.strip().removesuffix(unit).strip()
    try:
        return float(number)
    except ValueError:
        return None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


def is_platform_json(message: str) -> bool:
    """Whether message is a JSON-format platform record (``"type": "platform.…"``): any of
    them, not only the three that mark an invocation."""
    text = message.strip()
    if not text.startswith("{") or "platform." not in text:
        return False
    try:
        document = json.loads(text)
    except ValueError:
        return False
    return isinstance(document, dict) and str(document.get("type", "")).startswith("platform.")
