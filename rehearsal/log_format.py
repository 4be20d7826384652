"""Lambda's platform lines for the moto bridge: REPORT with real figures, text or JSON.

The RIE's REPORT line is not Lambda's: ``Init Duration`` is a made-up 0.1 ms, ``Max Memory
Used`` always equals ``Memory Size``, and a cold start's Duration includes the init. This module
rewrites the START/END/REPORT lines from what the bridge measured (the container's cgroup
memory high-water mark, the real init of a cold start) and, for a function whose
``LoggingConfig.LogFormat`` is JSON, writes them as AWS's JSON platform records
(``platform.start``, ``platform.runtimeDone``, ``platform.report``). moto 5.2 drops
LoggingConfig entirely; ``install`` keeps it from create/update and returns it as AWS does.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.awslambda import models as lambda_models

MB = 1024 * 1024
START_LINE = re.compile(r"^START RequestId: (\S+)(?: Version: (\S+))?")
END_LINE = re.compile(r"^END RequestId: (\S+)")
REPORT_LINE = re.compile(r"^REPORT RequestId: (\S+)")
# cgroup v1 (cgroupfs or systemd driver), then v2: the container's memory high-water mark.
PEAK_FILES = (
    "/sys/fs/cgroup/memory/docker/{id}/memory.max_usage_in_bytes",
    "/sys/fs/cgroup/memory/system.slice/docker-{id}.scope/memory.max_usage_in_bytes",
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.peak",
    "/sys/fs/cgroup/docker/{id}/memory.peak",
)


@dataclass(frozen=True)
class Measured:
    """What the bridge measured for one invoke."""

    duration_ms: float
    memory_size_mb: int
    max_memory_used_mb: int | None
    init_ms: float | None  # None on a warm invoke
    status: str | None = None  # "timeout": Lambda adds "Status: timeout" to REPORT


def memory_peak_mb(container_id: str) -> int | None:
    """The container's peak memory in MB (rounded up, as Lambda reports), None if unreadable."""
    for pattern in PEAK_FILES:
        try:
            peak = int(Path(pattern.format(id=container_id)).read_text().strip())
        except (OSError, ValueError):
            continue
        return max(1, math.ceil(peak / MB))
    return None


def billed_ms(measured: Measured) -> int:
    """Billed Duration: an Image function is billed for its init too, in whole ms."""
    return math.ceil(measured.duration_ms + (measured.init_ms or 0.0))


def _extras(report: str) -> list[str]:
    """Fields of a REPORT line beyond the metrics (``Status: timeout``, ``Error Type: ...``)."""
    metrics = ("RequestId", "Init Duration", "Duration", "Billed Duration", "Memory Size",
               "Max Memory Used")
    fields = [part.strip() for part in report.removeprefix("REPORT ").split("\t")]
    return [part for part in fields if part and part.split(":", 1)[0] not in metrics]


def report_line(request_id: str, measured: Measured, extras: list[str]) -> str:
    """AWS's text REPORT line."""
    parts = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {measured.duration_ms:.2f} ms",
        f"Billed Duration: {billed_ms(measured)} ms",
        f"Memory Size: {measured.memory_size_mb} MB",
    ]
    if measured.max_memory_used_mb is not None:
        parts.append(f"Max Memory Used: {measured.max_memory_used_mb} MB")
    if measured.init_ms is not None:
        parts.append(f"Init Duration: {measured.init_ms:.2f} ms")
    return "\t".join([*parts, *extras]) + "\t"


def _status(extras: list[str]) -> str:
    for extra in extras:
        if extra.startswith("Status:"):
            return extra.split(":", 1)[1].strip()
    return "success"


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _record(kind: str, record: dict[str, Any]) -> str:
    return json.dumps({"time": _stamp(), "type": kind, "record": record}, separators=(",", ":"))


def json_report(request_id: str, measured: Measured, extras: list[str]) -> str:
    """AWS's ``platform.report`` record for the JSON log format."""
    metrics: dict[str, Any] = {
        "durationMs": round(measured.duration_ms, 3),
        "billedDurationMs": billed_ms(measured),
        "memorySizeMB": measured.memory_size_mb,
    }
    if measured.max_memory_used_mb is not None:
        metrics["maxMemoryUsedMB"] = measured.max_memory_used_mb
    if measured.init_ms is not None:
        metrics["initDurationMs"] = round(measured.init_ms, 3)
    record: dict[str, Any] = {
        "requestId": request_id,
        "metrics": metrics,
        "status": _status(extras),
    }
    for extra in extras:
        if extra.startswith("Error Type:"):
            record["errorType"] = extra.split(":", 1)[1].strip()
    return _record("platform.report", record)


def rewrite(lines: list[str], measured: Measured, json_format: bool) -> list[str]:
    """The invoke's lines with START/END/REPORT as Lambda writes them."""
    out: list[str] = []
    for line in lines:
        report = REPORT_LINE.match(line)
        if report:
            extras = _extras(line)
            if measured.status and not any(e.startswith("Status:") for e in extras):
                extras.insert(0, f"Status: {measured.status}")
            request_id = report.group(1)
            if json_format:
                done: dict[str, Any] = {
                    "requestId": request_id,
                    "status": _status(extras),
                    "metrics": {"durationMs": round(measured.duration_ms, 3)},
                }
                out += [_record("platform.runtimeDone", done),
                        json_report(request_id, measured, extras)]
            else:
                out.append(report_line(request_id, measured, extras))
            continue
        start = START_LINE.match(line)
        if start and json_format:
            record = {"requestId": start.group(1), "version": start.group(2) or "$LATEST"}
            out.append(_record("platform.start", record))
            continue
        if END_LINE.match(line) and json_format:
            continue  # JSON has no END line: platform.runtimeDone stands for it
        out.append(line)
    return out


def log_format(fn: Any) -> str:
    """The function's LoggingConfig.LogFormat: "Text" (the default) or "JSON"."""
    return str((getattr(fn, "logging_config", None) or {}).get("LogFormat") or "Text")


def _logging_config(fn: Any, given: dict[str, Any] | None) -> dict[str, Any]:
    merged = {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{fn.function_name}"}
    merged.update(getattr(fn, "logging_config", None) or {})
    merged.update(given or {})
    if merged["LogFormat"] == "JSON":
        merged.setdefault("ApplicationLogLevel", "INFO")
        merged.setdefault("SystemLogLevel", "INFO")
    return merged


def install() -> None:
    """Keep LoggingConfig from create/update_function_configuration; return it on reads."""
    original_init = lambda_models.LambdaFunction.__init__
    original_update = lambda_models.LambdaFunction.update_configuration
    original_get = lambda_models.LambdaFunction.get_configuration

    def __init__(self: Any, account_id: str, spec: dict[str, Any], *args: Any,
                 **kwargs: Any) -> None:
        original_init(self, account_id, spec, *args, **kwargs)
        self.logging_config = _logging_config(self, spec.get("LoggingConfig"))

    def update_configuration(self: Any, config_updates: dict[str, Any]) -> dict[str, Any]:
        if "LoggingConfig" in config_updates:
            self.logging_config = _logging_config(self, config_updates["LoggingConfig"])
        return dict(original_update(self, config_updates))

    def get_configuration(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        config = dict(original_get(self, *args, **kwargs))
        config["LoggingConfig"] = _logging_config(self, None)
        return config

    lambda_models.LambdaFunction.__init__ = __init__  # type: ignore[method-assign]
    lambda_models.LambdaFunction.update_configuration = update_configuration  # type: ignore[method-assign]
    lambda_models.LambdaFunction.get_configuration = get_configuration  # type: ignore[method-assign]
