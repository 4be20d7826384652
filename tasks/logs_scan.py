"""Observability evidence: the new version's own CloudWatch log lines, read and judged here.

Only that version's streams (``YYYY/MM/DD/[<version>]…``) since the deploy are read, and every
pattern is matched client-side: server-side filter patterns differ between AWS and emulators
(``?A ?B`` matches everything on moto), and a gate must neither hide nor invent errors.
Log delivery on AWS is eventually consistent, so reads poll for a bounded time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from gangway.config import DeployConfig
from gangway.errors import AwsError
from gangway.evidence import Check, GateResult, Strength
from gangway.redact import scrub
from tasks.aws import aws_error, client

# Log delivery lags on AWS; the rehearsal stack writes logs before invoke returns.
AWS_LOG_WAIT_S = 10.0
REHEARSAL_LOG_WAIT_S = 2.0
POLL_INTERVAL_S = 1.0
QUOTE_LINES = 3
QUOTE_CHARS = 300
MAX_DAYS = 14
STREAMS_PER_FILTER = 100  # filter_log_events accepts at most 100 stream names

PLATFORM_PREFIXES = (
    "START RequestId:",
    "END RequestId:",
    "REPORT RequestId:",
    "INIT_START",
    "INIT_REPORT",
    "INIT_RUNTIME_DONE",
    "RESTORE_START",
    "RESTORE_REPORT",
    "EXTENSION",
    "TELEMETRY",
)
REQUEST = re.compile(r"^(START|END|REPORT) RequestId: ([0-9A-Za-z-]+)")
REPORT_FAILED = re.compile(r"\bStatus: (error|timeout)\b")
# The invocation's own Duration field, not 'Init Duration' or 'Billed Duration' (tab-separated).
REPORT_DURATION = re.compile(r"(?:^|\t)\s*Duration: ([0-9.]+) ms")
# Most specific first: a line counts once, under the first kind it matches.
ERROR_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("timeout", re.compile(r"Task timed out|\bStatus: timeout\b")),
    ("runtime", re.compile(r"\bRuntime\.[A-Za-z]+")),
    ("error", re.compile(r"\[ERROR\]|\bERROR\b|Traceback \(most recent call last\)|^Traceback")),
)


@dataclass(frozen=True)
class LogLine:
    """One log event of the version's streams."""

    stream: str
    timestamp: int
    message: str


@dataclass
class LogSummary:
    """What the version's log lines show, classified."""

    events: int = 0
    app_lines: int = 0
    report_lines: int = 0
    request_ids: set[str] = field(default_factory=set)
    reported: set[str] = field(default_factory=set)
    errored_requests: set[str] = field(default_factory=set)
    orphan_errors: int = 0
    timeout_ms: int | None = None
    errors: dict[str, list[str]] = field(
        default_factory=lambda: {kind: [] for kind, _ in ERROR_KINDS}
    )

    @property
    def error_lines(self) -> int:
        """Lines that matched any error pattern."""
        return sum(len(lines) for lines in self.errors.values())


def log_group(function_name: str) -> str:
    """The function's CloudWatch log group."""
    return f"/aws/lambda/{function_name}"


def _is_platform(message: str) -> bool:
    return message.lstrip().startswith(PLATFORM_PREFIXES)


def error_kind(message: str) -> str | None:
    """'timeout', 'runtime' or 'error' when the line reports a failure, else None."""
    for kind, pattern in ERROR_KINDS:
        if pattern.search(message):
            return kind
    return None


def summarise(lines: Iterable[LogLine], timeout_ms: int | None = None) -> LogSummary:
    """Classify lines and attribute errors to the invocation (START…REPORT) they fall in.

    With timeout_ms, a REPORT whose Duration reached the function's timeout counts as one.
    """
    summary = LogSummary(timeout_ms=timeout_ms)
    by_stream: dict[str, list[LogLine]] = {}
    for line in lines:
        by_stream.setdefault(line.stream, []).append(line)
    for stream_lines in by_stream.values():
        # Stable sort: same-millisecond lines keep the order the service returned them in.
        ordered = sorted(stream_lines, key=lambda item: item.timestamp)
        _summarise_stream(ordered, summary, timeout_ms)
    return summary


def _summarise_stream(
    lines: Sequence[LogLine], summary: LogSummary, timeout_ms: int | None
) -> None:
    # One container runs one invocation at a time, so lines between START and END belong to
    # it; an error before START (an init failure) is charged to the next invocation.
    current: str | None = None
    pending_error = False
    for line in lines:
        summary.events += 1
        message = line.message.rstrip("\n")
        marker = REQUEST.match(message.lstrip())
        if marker and marker.group(1) == "START":
            current = marker.group(2)
            summary.request_ids.add(current)
            if pending_error:
                summary.errored_requests.add(current)
                pending_error = False
        kind = error_kind(message)
        quoted = message
        if kind is None and marker and marker.group(1) == "REPORT":
            kind = _report_timeout(message, timeout_ms)
            quoted = f"{message.strip()} (Duration reached the {timeout_ms} ms timeout)"
        if kind:
            summary.errors[kind].append(quoted)
            if current:
                summary.errored_requests.add(current)
            else:
                pending_error = True
        if marker and marker.group(1) == "REPORT":
            summary.report_lines += 1
            summary.request_ids.add(marker.group(2))
            summary.reported.add(marker.group(2))
            if REPORT_FAILED.search(message):
                summary.errored_requests.add(marker.group(2))
            current = None
        elif not _is_platform(message) and message.strip():
            summary.app_lines += 1
    if pending_error:
        summary.orphan_errors += 1


def _report_timeout(message: str, timeout_ms: int | None) -> str | None:
    # AWS also writes a 'Task timed out' line; the Duration is the evidence that remains when
    # a runtime (or an emulator) omits it: the function was stopped at its limit.
    duration = REPORT_DURATION.search(message)
    if timeout_ms and duration and float(duration.group(1)) >= timeout_ms:
        return "timeout"
    return None


def _days(since_ms: int, now: datetime) -> list[str]:
    # Stream names carry the container's start day (UTC); a warm container may predate the
    # deploy by a day, so one day earlier is searched too. A scan is about a recent deploy,
    # so the search never reaches further back than MAX_DAYS.
    earliest = (now - timedelta(days=MAX_DAYS)).date()
    day = max((datetime.fromtimestamp(since_ms / 1000, UTC) - timedelta(days=1)).date(), earliest)
    days = []
    while day <= now.date():
        days.append(day.strftime("%Y/%m/%d"))
        day += timedelta(days=1)
    return days


def version_streams(logs: Any, group: str, version: str, since_ms: int) -> list[str]:
    """Names of the version's log streams that can hold events since since_ms."""
    names: list[str] = []
    for day in _days(since_ms, datetime.now(UTC)):
        prefix = f"{day}/[{version}]"
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"logGroupName": group, "logStreamNamePrefix": prefix}
            if token:
                kwargs["nextToken"] = token
            page = logs.describe_log_streams(**kwargs)
            names.extend(
                s["logStreamName"]
                for s in page.get("logStreams", [])
                # lastEventTimestamp lags on AWS: keep streams that do not report it yet.
                if s.get("lastEventTimestamp", since_ms) >= since_ms
                and s["logStreamName"].startswith(prefix)
            )
            token = page.get("nextToken")
            if not token or not page.get("logStreams"):
                break
    return names


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def read_version_lines(logs: Any, group: str, version: str, since_ms: int) -> list[LogLine]:
    """Every event of the version's streams at or after since_ms (paginated)."""
    streams = version_streams(logs, group, version, since_ms)
    wanted = set(streams)
    lines: list[LogLine] = []
    for chunk in _chunks(streams, STREAMS_PER_FILTER):
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": group,
                "logStreamNames": list(chunk),
                "startTime": since_ms,
            }
            if token:
                kwargs["nextToken"] = token
            page = logs.filter_log_events(**kwargs)
            lines.extend(
                LogLine(e["logStreamName"], int(e["timestamp"]), e.get("message", ""))
                for e in page.get("events", [])
                # Re-checked here so an endpoint that ignores logStreamNames cannot mix in
                # other versions' lines.
                if e.get("logStreamName") in wanted and int(e["timestamp"]) >= since_ms
            )
            token = page.get("nextToken")
            if not token or not page.get("events"):
                break
    return lines


def _is_missing_group(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException"


def version_timeout_ms(config: DeployConfig, function_name: str, version: str) -> int | None:
    """The version's configured Timeout in ms, or None when it cannot be read."""
    try:
        found = client(config, "lambda").get_function_configuration(
            FunctionName=function_name, Qualifier=version
        )
    except (ClientError, BotoCoreError):
        # Only the Duration-based timeout evidence depends on it; the log lines do not.
        return None
    timeout = found.get("Timeout")
    return int(timeout) * 1000 if isinstance(timeout, int) else None


def collect(
    config: DeployConfig,
    function_name: str,
    version: str,
    since_ms: int,
    *,
    request_ids: Sequence[str] = (),
    wait_s: float | None = None,
) -> tuple[LogSummary, bool]:
    """(summary, whether the log group exists), polling until every invocation has REPORTed.

    Without request_ids, waits for at least one REPORT line. Raises AwsError on access errors.
    """
    if wait_s is None:
        wait_s = REHEARSAL_LOG_WAIT_S if config.environment.aws.endpoint_url else AWS_LOG_WAIT_S
    logs = client(config, "logs")
    group = log_group(function_name)
    timeout_ms = version_timeout_ms(config, function_name, version)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            lines = read_version_lines(logs, group, version, since_ms)
            summary = summarise(lines, timeout_ms)
            exists = True
        except ClientError as exc:
            if not _is_missing_group(exc):
                raise aws_error(exc, "logs:FilterLogEvents", group) from exc
            summary, exists = LogSummary(timeout_ms=timeout_ms), False
        except BotoCoreError as exc:
            raise aws_error(exc, "logs:FilterLogEvents", group) from exc
        if _complete(summary, request_ids) or time.monotonic() >= deadline:
            return summary, exists
        time.sleep(POLL_INTERVAL_S)


def _complete(summary: LogSummary, request_ids: Sequence[str]) -> bool:
    if request_ids:
        return set(request_ids) <= summary.reported
    return summary.report_lines > 0


def _quote(lines: Sequence[str], secrets: list[str]) -> str:
    quoted = [
        scrub(line.replace("\r", " | ").replace("\n", " | ").strip(), secrets)[:QUOTE_CHARS]
        for line in lines[:QUOTE_LINES]
    ]
    more = f" (+{len(lines) - QUOTE_LINES} more)" if len(lines) > QUOTE_LINES else ""
    return " || ".join(quoted) + more


ERROR_CHECKS = {
    "timeout": (
        "no timeouts",
        "no 'Task timed out' line, no REPORT whose Duration reached the timeout",
        "make the handler faster or raise the function's timeout (a synchronous function must "
        "not run a job longer than its timeout)",
    ),
    "runtime": (
        "no runtime errors",
        "no Runtime.* error (import, handler, exit)",
        "the runtime could not load or run the handler: check the image's COPY lines and the "
        "handler setting (the in-image import gate should have caught this)",
    ),
    "error": (
        "no error lines",
        "no [ERROR], ERROR or Traceback line",
        "the function logged errors while answering: read the quoted lines; a 200 with errors "
        "in the logs is a failure",
    ),
}


def _checks(
    summary: LogSummary,
    exists: bool,
    group: str,
    version: str,
    request_ids: Sequence[str],
    secrets: list[str],
) -> list[Check]:
    where = f"{group} streams [{version}]"
    checks = [
        Check(
            name="log events since deploy",
            ok=summary.events > 0,
            expected=f"log events in {where}",
            found=f"{summary.events} events"
            if exists
            else "no log group (the function never logged)",
            remedy=""
            if summary.events
            else "invoke the version first; check the execution role may write logs "
            "(logs:CreateLogStream, logs:PutLogEvents): no evidence is not a pass",
        ),
        Check(
            name="application log lines",
            ok=summary.app_lines > 0,
            expected="at least one application log line besides START/END/REPORT",
            found=f"{summary.app_lines} application lines of {summary.events} events",
            remedy=""
            if summary.app_lines
            else "the handler logged nothing: its logger level or handler was lost (a rollback "
            "trigger); log at INFO what each invocation did",
        ),
    ]
    for kind, (name, expected, remedy) in ERROR_CHECKS.items():
        lines = summary.errors[kind]
        checks.append(
            Check(
                name=name,
                ok=not lines,
                expected=expected,
                found=_quote(lines, secrets) if lines else "none",
                remedy=remedy if lines else "",
            )
        )
    if request_ids:
        unseen = sorted(set(request_ids) - summary.reported)
        checks.append(
            Check(
                name="REPORT line per invocation",
                ok=not unseen,
                expected=f"START…REPORT for each of {len(set(request_ids))} invocations",
                found="all seen" if not unseen else f"not seen: {', '.join(unseen)}",
                remedy="" if not unseen else "the invocation's logs did not arrive in time",
            )
        )
    return checks


def scan_logs(
    config: DeployConfig,
    function_name: str,
    version: str,
    since_ms: int,
    *,
    request_ids: Sequence[str] = (),
    wait_s: float | None = None,
) -> GateResult:
    """Judge the version's log lines since since_ms: present, with app lines, without errors.

    request_ids (from the smoke invokes) are waited for; wait_s bounds the wait for delivery.
    """
    started = time.monotonic()
    group = log_group(function_name)
    secrets = config.secret_values()
    # A smoke invoke that never reached the function has no request id to wait for.
    request_ids = [r for r in request_ids if r]
    try:
        summary, exists = collect(
            config, function_name, version, since_ms, request_ids=request_ids, wait_s=wait_s
        )
    except AwsError as exc:
        checks = [
            Check(
                name="read logs",
                ok=False,
                expected=exc.expected,
                found=scrub(exc.found, secrets),
                remedy=exc.remedy,
            )
        ]
    else:
        checks = _checks(summary, exists, group, version, request_ids, secrets)
        evidence = {
            "events": summary.events,
            "app_lines": summary.app_lines,
            "error_lines": summary.error_lines,
            "report_lines": summary.report_lines,
            "invocations": len(summary.request_ids),
            "timeout_ms": summary.timeout_ms,
        }
        checks[0] = checks[0].model_copy(update={"evidence": evidence})
    return GateResult(
        gate=f"logs: {function_name}:{version}",
        boundary="deployment",
        strength=Strength.OBSERVABILITY,
        checks=tuple(checks),
        duration_s=time.monotonic() - started,
    )


def count_invocations(
    config: DeployConfig, function_name: str, version: str, since_ms: int
) -> tuple[int, int]:
    """(invocations, failed invocations) of the version since since_ms, from its log lines.

    An invocation is a REPORT line; it failed when an error line falls inside it or its
    REPORT says Status: error/timeout. Raises AwsError when the logs cannot be read.
    """
    summary, _ = collect(config, function_name, version, since_ms, wait_s=0)
    errors = len(summary.errored_requests) + summary.orphan_errors
    return summary.report_lines, errors


@dataclass(frozen=True)
class WindowCount:
    """The version's invocations inside a window, by request id, from its log lines."""

    invocations: frozenset[str]
    errored: frozenset[str]
    orphan_errors: int
    unseen: tuple[str, ...]
    first_error: str = ""


def count_window(
    config: DeployConfig,
    function_name: str,
    version: str,
    since_ms: int,
    *,
    request_ids: Sequence[str] = (),
    wait_s: float = 0.0,
) -> WindowCount:
    """Invocations (REPORT lines) of the version whose log events are at or after since_ms.

    Events are filtered by their own timestamps, not by stream: on AWS a warm container's
    stream holds earlier invocations (the smoke invokes) too. request_ids, the invokes known to
    have run this version in the window, are waited for up to wait_s; the ones still missing
    are returned as unseen, so a slow log delivery cannot pass for a quiet canary.
    Raises AwsError when the logs cannot be read.
    """
    request_ids = [r for r in request_ids if r]
    summary, _ = collect(
        config,
        function_name,
        version,
        since_ms,
        request_ids=request_ids,
        wait_s=wait_s if request_ids else 0.0,
    )
    # An invocation still running when the logs are read has no REPORT yet; when it has
    # already logged an error it counts, as a failed one (never dropped as "not finished").
    errored = frozenset(summary.errored_requests)
    counted = frozenset(summary.reported) | errored
    lines = [line for kind, _ in ERROR_KINDS for line in summary.errors[kind]]
    return WindowCount(
        invocations=counted,
        errored=errored,
        orphan_errors=summary.orphan_errors,
        unseen=tuple(sorted(set(request_ids) - counted)),
        first_error=_quote(lines[:1], config.secret_values()) if lines else "",
    )
