"""Observability evidence: the new version's own CloudWatch log lines, read and judged here.

Only that version's streams (``YYYY/MM/DD/[<version>]…``) since the deploy are read, and every
pattern is matched client-side: server-side filter patterns differ between AWS and emulators
(``?A ?B`` matches everything on moto), and a gate must neither hide nor invent errors.
Log delivery on AWS is eventually consistent, so reads poll for a bounded time: the
environment's ``deploy.log_ingestion_s`` for the smoke invokes, ``deploy.bake_log_wait_s``
for the bake's. Each known invoke must be found with all three of its platform lines (START,
END, REPORT, in the text or the JSON log format: tasks/report_lines.py); a line that arrives
late but inside the wait passes, one still missing after it is a trigger.
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
from tasks import report_lines
from tasks.aws import aws_error, client
from tasks.report_lines import Report

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
LINES = ("START", "END", "REPORT")
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
    started: set[str] = field(default_factory=set)
    ended: set[str] = field(default_factory=set)
    reported: set[str] = field(default_factory=set)
    # The stream each request's lines are in, and the error lines charged to it.
    streams: dict[str, str] = field(default_factory=dict)
    request_errors: dict[str, list[str]] = field(default_factory=dict)
    errored_requests: set[str] = field(default_factory=set)
    orphan_errors: int = 0
    timeout_ms: int | None = None
    memory_mb: int | None = None
    # Each reporting request's REPORT, parsed (duration, memory, init, status).
    reports: dict[str, Report] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(
        default_factory=lambda: {kind: [] for kind, _ in ERROR_KINDS}
    )
    # Parallel to errors: the request id each error line is charged to (None: no invocation).
    error_owners: dict[str, list[str | None]] = field(
        default_factory=lambda: {kind: [] for kind, _ in ERROR_KINDS}
    )

    @property
    def error_lines(self) -> int:
        """Lines that matched any error pattern."""
        return sum(len(lines) for lines in self.errors.values())

    def lines_of(self, request_id: str) -> list[str]:
        """Which of START, END and REPORT the request's lines include."""
        found = (self.started, self.ended, self.reported)
        return [name for name, ids in zip(LINES, found, strict=True) if request_id in ids]

    def complete(self, request_id: str) -> bool:
        """All three platform lines of the request are in."""
        return len(self.lines_of(request_id)) == len(LINES)


def log_group(function_name: str) -> str:
    """The function's CloudWatch log group."""
    return f"/aws/lambda/{function_name}"


def _is_platform(message: str) -> bool:
    return message.lstrip().startswith(PLATFORM_PREFIXES) or report_lines.is_platform_json(
        message
    )


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
    # Error lines before any START (an init failure), charged to the next invocation.
    pending: list[tuple[str, int]] = []
    for line in lines:
        summary.events += 1
        message = line.message.rstrip("\n")
        marker = report_lines.marker(message)
        owner = marker.request_id if marker else current
        if marker:
            summary.request_ids.add(marker.request_id)
            summary.streams.setdefault(marker.request_id, line.stream)
        if marker and marker.kind == "START":
            current = marker.request_id
            summary.started.add(marker.request_id)
            for kind, index in pending:
                _charge(summary, kind, index, marker.request_id)
            pending = []
        elif marker and marker.kind == "END":
            summary.ended.add(marker.request_id)
        kind = error_kind(message)
        quoted = message
        if kind is None and marker and marker.report:
            kind, quoted = _report_timeout(marker.report, message, timeout_ms)
        if kind:
            summary.errors[kind].append(quoted)
            summary.error_owners[kind].append(None)
            if owner:
                _charge(summary, kind, len(summary.errors[kind]) - 1, owner)
            else:
                pending.append((kind, len(summary.errors[kind]) - 1))
        if marker and marker.kind == "REPORT":
            summary.report_lines += 1
            summary.reported.add(marker.request_id)
            if marker.report is not None:
                summary.reports[marker.request_id] = marker.report
                if marker.report.failed:
                    summary.errored_requests.add(marker.request_id)
            current = None
        elif not _is_platform(message) and message.strip():
            summary.app_lines += 1
    if pending:
        summary.orphan_errors += 1


def _charge(summary: LogSummary, kind: str, index: int, request_id: str) -> None:
    """Attribute error line index (of its kind) to request_id."""
    summary.errored_requests.add(request_id)
    summary.error_owners[kind][index] = request_id
    summary.request_errors.setdefault(request_id, []).append(summary.errors[kind][index])


def _report_timeout(
    report: Report, message: str, timeout_ms: int | None
) -> tuple[str | None, str]:
    """('timeout', the line to quote) when the REPORT shows a timeout, else (None, message).

    AWS also writes a 'Task timed out' line; the REPORT's status (JSON format) or its
    Duration at the limit is the evidence that remains when a runtime (or an emulator) omits it.
    """
    if report.timed_out:
        return "timeout", message.strip()
    if timeout_ms and report.duration_ms is not None and report.duration_ms >= timeout_ms:
        return "timeout", f"{message.strip()} (Duration reached the {timeout_ms} ms timeout)"
    return None, message


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
    pages = logs.get_paginator("describe_log_streams")
    for day in _days(since_ms, datetime.now(UTC)):
        prefix = f"{day}/[{version}]"
        for page in pages.paginate(logGroupName=group, logStreamNamePrefix=prefix):
            names.extend(
                s["logStreamName"]
                for s in page.get("logStreams", [])
                # lastEventTimestamp lags on AWS: keep streams that do not report it yet.
                if s.get("lastEventTimestamp", since_ms) >= since_ms
                and s["logStreamName"].startswith(prefix)
            )
    return names


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def read_version_lines(logs: Any, group: str, version: str, since_ms: int) -> list[LogLine]:
    """Every event of the version's streams at or after since_ms (paginated)."""
    streams = version_streams(logs, group, version, since_ms)
    wanted = set(streams)
    lines: list[LogLine] = []
    pages = logs.get_paginator("filter_log_events")
    for chunk in _chunks(streams, STREAMS_PER_FILTER):
        # AWS may answer a page with no events and a nextToken (it searches in slices): only
        # a page without a token is the last one, which the paginator knows.
        for page in pages.paginate(
            logGroupName=group, logStreamNames=list(chunk), startTime=since_ms
        ):
            lines.extend(
                LogLine(e["logStreamName"], int(e["timestamp"]), e.get("message", ""))
                for e in page.get("events", [])
                # Re-checked here so an endpoint that ignores logStreamNames cannot mix in
                # other versions' lines.
                if e.get("logStreamName") in wanted and int(e["timestamp"]) >= since_ms
            )
    return lines


def _is_missing_group(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException"


def version_limits(
    config: DeployConfig, function_name: str, version: str
) -> tuple[int | None, int | None]:
    """The version's configured (Timeout in ms, MemorySize in MB); None where not readable."""
    try:
        found = client(config, "lambda").get_function_configuration(
            FunctionName=function_name, Qualifier=version
        )
    except (ClientError, BotoCoreError):
        # Only the timeout evidence and the headroom limits depend on it, not the log lines
        # (the headroom gate then falls back on the configured values).
        return None, None
    timeout, memory = found.get("Timeout"), found.get("MemorySize")
    return (
        int(timeout) * 1000 if isinstance(timeout, int) else None,
        int(memory) if isinstance(memory, int) else None,
    )


def version_timeout_ms(config: DeployConfig, function_name: str, version: str) -> int | None:
    """The version's configured Timeout in ms, or None when it cannot be read."""
    return version_limits(config, function_name, version)[0]


def collect(
    config: DeployConfig,
    function_name: str,
    version: str,
    since_ms: int,
    *,
    request_ids: Sequence[str] = (),
    wait_s: float | None = None,
    in_flight: bool = False,
    settle_s: float = 0.0,
) -> tuple[LogSummary, bool]:
    """(summary, whether the log group exists), polling until every request id has its START,
    END and REPORT lines and a read a poll later shows no new event, or wait_s has passed.

    Without request_ids, waits for at least one REPORT line. in_flight: also wait for the END
    and REPORT of every invocation seen starting. settle_s: read no earlier than this after
    the call (for lines nobody can name and wait for). Raises AwsError on access errors.
    """
    if wait_s is None:
        wait_s = log_wait_s(config)
    logs = client(config, "logs")
    group = log_group(function_name)
    timeout_ms, memory_mb = version_limits(config, function_name, version)
    began = time.monotonic()
    deadline = began + max(wait_s, settle_s)
    seen = -1  # events at the previous read
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
        summary.memory_mb = memory_mb
        now = time.monotonic()
        # Delivery is not in order: an invocation's START/END/REPORT can be readable before
        # its own application or error lines. Done only when a read a poll later shows
        # nothing new, so a line still in flight cannot be missed (or an error hidden).
        steady = summary.events == seen or wait_s <= 0
        seen = summary.events
        settled = now - began >= settle_s
        if (settled and steady and _complete(summary, request_ids, in_flight)) or now >= deadline:
            return summary, exists
        time.sleep(POLL_INTERVAL_S)


def log_wait_s(config: DeployConfig) -> float:
    """How long a scan waits for log delivery by default: environment.deploy.log_ingestion_s
    (the same for AWS and the rehearsal, whose bridge delays delivery as CloudWatch does)."""
    return config.environment.deploy.log_ingestion_s


def _complete(summary: LogSummary, request_ids: Sequence[str], in_flight: bool = False) -> bool:
    if in_flight and any(not summary.complete(r) for r in summary.started):
        return False
    if request_ids:
        return all(summary.complete(r) for r in request_ids)
    return in_flight or summary.report_lines > 0


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
        "handler Lambda runs (the function's ImageConfig.Command, else the image's CMD) against "
        "the handler setting (the in-image import gate should have caught this)",
    ),
    "error": (
        "no error lines",
        "no [ERROR], ERROR or Traceback line",
        "the function logged errors while answering: read the quoted lines; a 200 with errors "
        "in the logs is a failure",
    ),
}


def _attributed(summary: LogSummary, kind: str) -> list[str]:
    """The kind's error lines, each prefixed with the request it is charged to."""
    return [
        f"[request {owner}] {line}" if owner else f"[no invocation] {line}"
        for line, owner in zip(summary.errors[kind], summary.error_owners[kind], strict=True)
    ]


def _request_check(
    summary: LogSummary, request_id: str, where: str, wait_s: float, secrets: list[str]
) -> Check:
    """The smoke invoke request_id is tied to its own START, END and REPORT lines."""
    seen = summary.lines_of(request_id)
    missing = [name for name in LINES if name not in seen]
    ok = not missing
    errors = summary.request_errors.get(request_id, [])
    if ok:
        found = f"{', '.join(seen)} in {summary.streams[request_id]}"
        found += f"; {len(errors)} error lines" if errors else "; no error lines"
    elif seen:
        found = f"only {', '.join(seen)} (no {', '.join(missing)}) after waiting {wait_s:g} s"
    else:
        found = f"no line of this request after waiting {wait_s:g} s"
    return Check(
        name=f"invocation {request_id}",
        ok=ok,
        expected=f"the START, END and REPORT lines of request {request_id} in {where} within "
        f"the scan's {wait_s:g} s wait (the ingestion window, "
        "environment.deploy.log_ingestion_s)",
        found=found,
        remedy=""
        if ok
        else "the invoke answered but its log lines are not in the version's streams, so the "
        "scan cannot vouch for it: check that the execution role may write logs "
        "(logs:CreateLogStream, logs:PutLogEvents) and that the invoke ran this version; "
        "if CloudWatch Logs is only slower than the window, raise "
        "environment.deploy.log_ingestion_s",
        evidence={
            "request_id": request_id,
            "stream": summary.streams.get(request_id, ""),
            "lines": seen,
            "missing": missing,
            "waited_s": wait_s,
            "errors": [scrub(e, secrets)[:QUOTE_CHARS] for e in errors[:QUOTE_LINES]],
        },
    )


def _checks(
    summary: LogSummary,
    exists: bool,
    group: str,
    version: str,
    request_ids: Sequence[str],
    secrets: list[str],
    wait_s: float,
    app_logs: str | None = None,
) -> list[Check]:
    """The log scan's checks; app_logs names the function key that declares it writes no
    application lines (functions.KEY.app_logs = false), None when it must write some."""
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
            "trigger); log at INFO what each invocation did, or declare "
            "functions.<key>.app_logs = false if it never logs by design",
        )
        if app_logs is None
        else Check(
            name="application log lines",
            ok=True,
            expected=f"none required (functions.{app_logs}.app_logs = false: it logs nothing "
            "by design)",
            found=f"{summary.app_lines} application lines of {summary.events} events",
        ),
    ]
    for kind, (name, expected, remedy) in ERROR_CHECKS.items():
        lines = _attributed(summary, kind)
        owners = summary.error_owners[kind]
        checks.append(
            Check(
                name=name,
                ok=not lines,
                expected=expected,
                found=_quote(lines, secrets) if lines else "none",
                remedy=remedy if lines else "",
                evidence={"by_request": _count(owners)} if lines else {},
            )
        )
    checks.extend(
        _request_check(summary, request_id, where, wait_s, secrets)
        for request_id in dict.fromkeys(request_ids)
    )
    return checks


def _count(owners: Sequence[str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for owner in owners:
        key = owner or "no invocation"
        counts[key] = counts.get(key, 0) + 1
    return counts


@dataclass(frozen=True)
class LogScan:
    """A log scan's gate result, and what it read for the headroom gate: the REPORTs of the
    requests it waited for, and the version's configured timeout and memory."""

    result: GateResult
    reports: dict[str, Report] = field(default_factory=dict)
    timeout_ms: int | None = None
    memory_mb: int | None = None


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

    request_ids (from the smoke invokes) are waited for, up to wait_s for delivery
    (environment.deploy.log_ingestion_s by default); each must be found with its START, END
    and REPORT lines, and error lines name the request they belong to.
    """
    return scan(
        config, function_name, version, since_ms, request_ids=request_ids, wait_s=wait_s
    ).result


def scan(
    config: DeployConfig,
    function_name: str,
    version: str,
    since_ms: int,
    *,
    request_ids: Sequence[str] = (),
    wait_s: float | None = None,
) -> LogScan:
    """scan_logs's result with the REPORTs of request_ids and the version's limits."""
    started = time.monotonic()
    summary = LogSummary()
    group = log_group(function_name)
    secrets = config.secret_values()
    if wait_s is None:
        wait_s = log_wait_s(config)
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
        quiet = next(
            (k for k, fn in config.functions.items()
             if fn.name == function_name and not fn.spec.app_logs),
            None,
        )
        checks = _checks(summary, exists, group, version, request_ids, secrets, wait_s, quiet)
        evidence = {
            "events": summary.events,
            "app_lines": summary.app_lines,
            "error_lines": summary.error_lines,
            "report_lines": summary.report_lines,
            "invocations": len(summary.request_ids),
            "timeout_ms": summary.timeout_ms,
            # Each smoke invoke tied to its log lines (and any errors charged to it).
            "ingestion_window_s": wait_s,
            "requests": {
                r: {
                    "start": r in summary.started,
                    "end": r in summary.ended,
                    "report": r in summary.reported,
                    "error_lines": len(summary.request_errors.get(r, [])),
                }
                for r in dict.fromkeys(request_ids)
            },
        }
        checks[0] = checks[0].model_copy(update={"evidence": evidence})
    result = GateResult(
        gate=f"logs: {function_name}:{version}",
        boundary="deployment",
        strength=Strength.OBSERVABILITY,
        checks=tuple(checks),
        duration_s=time.monotonic() - started,
    )
    return LogScan(
        result=result,
        reports={r: summary.reports[r] for r in request_ids if r in summary.reports},
        timeout_ms=summary.timeout_ms,
        memory_mb=summary.memory_mb,
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
    # The REPORT of every invocation in the window, and the version's configured limits
    # (for the bake's headroom gate).
    reports: dict[str, Report] = field(default_factory=dict)
    timeout_ms: int | None = None
    memory_mb: int | None = None


def count_window(
    config: DeployConfig,
    function_name: str,
    version: str,
    since_ms: int,
    *,
    request_ids: Sequence[str] = (),
    wait_s: float = 0.0,
    settle_s: float = 0.0,
) -> WindowCount:
    """Invocations (REPORT lines) of the version whose log events are at or after since_ms.

    Events are filtered by their own timestamps, not by stream: on AWS a warm container's
    stream holds earlier invocations (the smoke invokes) too. Up to wait_s, the count waits
    for the START, END and REPORT lines of request_ids (the invokes known to have run this
    version in the window) and for the END and REPORT of every invocation seen starting in
    it; the ones still incomplete are returned as unseen, so a slow log delivery cannot pass
    for a quiet (or a healthy) canary. With no request ids to wait for, the lines of traffic
    nobody can name may still be in flight: the count then reads no earlier than settle_s.
    Raises AwsError when the logs cannot be read.
    """
    request_ids = [r for r in request_ids if r]
    summary, _ = collect(
        config,
        function_name,
        version,
        since_ms,
        request_ids=request_ids,
        wait_s=wait_s,
        in_flight=True,
        settle_s=0.0 if request_ids else min(settle_s, wait_s),
    )
    # An invocation still running when the logs are read has no REPORT yet; when it has
    # already logged an error it counts, as a failed one (never dropped as "not finished").
    errored = frozenset(summary.errored_requests)
    counted = frozenset(summary.reported) | errored
    lines = [line for kind, _ in ERROR_KINDS for line in summary.errors[kind]]
    awaited = {r for r in request_ids if not summary.complete(r)}
    unfinished = {r for r in summary.started if not summary.complete(r)}
    return WindowCount(
        invocations=counted,
        errored=errored,
        orphan_errors=summary.orphan_errors,
        unseen=tuple(sorted(awaited | unfinished)),
        first_error=_quote(lines[:1], config.secret_values()) if lines else "",
        reports=dict(summary.reports),
        timeout_ms=summary.timeout_ms,
        memory_mb=summary.memory_mb,
    )
