"""REPORT lines read in both of Lambda's log formats (no AWS).

The lines are AWS's own examples: the text REPORT of the Python logging page
(docs.aws.amazon.com/lambda/latest/dg/python-logging.html, with its cold start's Init
Duration), and the JSON ``platform.report`` record of the advanced logging controls and the
Telemetry API schema reference (docs.aws.amazon.com/lambda/latest/dg/
monitoring-cloudwatchlogs-advanced.html, telemetry-schema-reference.html).
"""

from __future__ import annotations

import json

from tasks import logs_scan
from tasks.logs_scan import LogLine
from tasks.report_lines import Report, is_platform_json, marker, parse_report

# python-logging.html, "Example log output" (fields separated by spaces there, tabs in a
# real stream: both are read).
DOC_TEXT = (
    "REPORT RequestId: 8f507cfc-xmpl-4697-b07a-ac58fc914c95  Duration: 15.74 ms  "
    "Billed Duration: 147 ms Memory Size: 128 MB Max Memory Used: 56 MB  "
    "Init Duration: 130.49 ms"
)
# The same fields as CloudWatch stores them: tab-separated, a trailing tab, no init (warm).
WARM_TEXT = (
    "REPORT RequestId: 3604209a-e9a3-11e6-939a-754dd98c7be3\tDuration: 12.34 ms\t"
    "Billed Duration: 13 ms\tMemory Size: 128 MB\tMax Memory Used: 18 MB\t"
)
TIMEOUT_TEXT = (
    "REPORT RequestId: 0a1b2c3d-0000-4000-8000-000000000001\tDuration: 3000.00 ms\t"
    "Billed Duration: 3000 ms\tMemory Size: 128 MB\tMax Memory Used: 41 MB\t"
    "Status: timeout"
)
SANDBOX_ERROR = (
    "REPORT RequestId: 0a1b2c3d-0000-4000-8000-000000000002\tStatus: error\t"
    "Error Type: Runtime.ExitError"
)
# monitoring-cloudwatchlogs-advanced.html / telemetry-schema-reference.html, platform.report.
DOC_JSON = {
    "time": "2023-11-01T10:17:33.135Z",
    "type": "platform.report",
    "record": {
        "requestId": "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa",
        "metrics": {
            "durationMs": 693.92,
            "billedDurationMs": 694,
            "memorySizeMB": 128,
            "maxMemoryUsedMB": 84,
            "initDurationMs": 397.68,
        },
        "status": "success",
    },
}


def test_a_text_report_from_the_docs_gives_every_field() -> None:
    report = parse_report(DOC_TEXT)
    assert report == Report(
        request_id="8f507cfc-xmpl-4697-b07a-ac58fc914c95",
        duration_ms=15.74,
        billed_duration_ms=147.0,
        memory_size_mb=128,
        max_memory_used_mb=56,
        init_duration_ms=130.49,
        status="success",
        format="text",
        line=DOC_TEXT,
    )
    assert not report.failed and not report.timed_out


def test_a_warm_tab_separated_report_has_no_init_duration() -> None:
    report = parse_report(WARM_TEXT)
    assert report is not None
    assert (report.duration_ms, report.billed_duration_ms) == (12.34, 13.0)
    assert (report.memory_size_mb, report.max_memory_used_mb) == (128, 18)
    assert report.init_duration_ms is None
    # The RIE's order (Init Duration first) reads the same.
    rie = parse_report(
        "REPORT RequestId: 9e2f4bd4-fb29-41e4-aa96-76c46caee4d0\tInit Duration: 0.18 ms\t"
        "Duration: 282.85 ms\tBilled Duration: 283 ms\tMemory Size: 512 MB\t"
        "Max Memory Used: 61 MB\t"
    )
    assert rie is not None and (rie.init_duration_ms, rie.duration_ms) == (0.18, 282.85)
    assert (rie.billed_duration_ms, rie.max_memory_used_mb) == (283.0, 61)


def test_status_timeout_and_a_sandbox_error_are_read() -> None:
    timed_out = parse_report(TIMEOUT_TEXT)
    assert timed_out is not None and timed_out.timed_out and timed_out.duration_ms == 3000.0
    errored = parse_report(SANDBOX_ERROR)
    assert errored is not None and errored.failed and not errored.timed_out
    assert errored.error_type == "Runtime.ExitError" and errored.duration_ms is None


def test_a_json_platform_report_from_the_docs_gives_the_same_value() -> None:
    line = json.dumps(DOC_JSON)
    report = parse_report(line)
    assert report is not None and report.format == "json"
    assert report.request_id == "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa"
    assert (report.duration_ms, report.billed_duration_ms) == (693.92, 694.0)
    assert (report.memory_size_mb, report.max_memory_used_mb) == (128, 84)
    assert report.init_duration_ms == 397.68 and report.status == "success"
    timeout = {**DOC_JSON, "record": {**DOC_JSON["record"], "status": "timeout"}}
    assert parse_report(json.dumps(timeout)).timed_out  # type: ignore[union-attr]


def test_start_end_report_markers_in_both_formats() -> None:
    rid = "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa"
    start = json.dumps({"type": "platform.start", "record": {"requestId": rid, "version": "3"}})
    done = json.dumps({"type": "platform.runtimeDone", "record": {"requestId": rid}})
    assert [marker(m).kind for m in (start, done, json.dumps(DOC_JSON))] == [  # type: ignore[union-attr]
        "START", "END", "REPORT",
    ]
    assert marker(f"START RequestId: {rid} Version: 3").kind == "START"  # type: ignore[union-attr]
    assert marker(f"END RequestId: {rid}").request_id == rid  # type: ignore[union-attr]
    # Application lines, JSON or not, are not platform lines.
    app = json.dumps({"level": "INFO", "requestId": rid, "message": "REPORT RequestId: x"})
    assert marker(app) is None and not is_platform_json(app)
    assert marker("[INFO] REPORT RequestId: not at the start") is None
    assert is_platform_json(json.dumps({"type": "platform.initStart", "record": {}}))


def test_the_log_summary_reads_json_format_invocations() -> None:
    rid = "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa"
    messages = [
        json.dumps({"type": "platform.initStart", "record": {"runtimeVersion": "x"}}),
        json.dumps({"type": "platform.start", "record": {"requestId": rid}}),
        json.dumps({"level": "INFO", "requestId": rid, "message": "served"}),
        json.dumps({"type": "platform.runtimeDone", "record": {"requestId": rid}}),
        json.dumps(DOC_JSON),
    ]
    summary = logs_scan.summarise(
        [LogLine("2026/11/30/[3]abc", 1000 + i, m) for i, m in enumerate(messages)]
    )
    assert summary.complete(rid) and summary.app_lines == 1 and summary.error_lines == 0
    assert summary.reports[rid].max_memory_used_mb == 84


def test_a_json_report_with_status_timeout_is_a_timeout_in_the_scan() -> None:
    rid = "6d68ca91-49c9-448d-89b8-7ca3e6dc66aa"
    timed_out = {**DOC_JSON, "record": {**DOC_JSON["record"], "status": "timeout"}}
    messages = [
        json.dumps({"type": "platform.start", "record": {"requestId": rid}}),
        json.dumps({"type": "platform.runtimeDone", "record": {"requestId": rid}}),
        json.dumps(timed_out),
    ]
    summary = logs_scan.summarise(
        [LogLine("s", 1000 + i, m) for i, m in enumerate(messages)]
    )
    assert summary.errors["timeout"] and summary.errored_requests == {rid}


def test_a_request_is_complete_only_with_all_three_lines_and_the_count_waits_for_it() -> None:
    done, running = "req-done", "req-running"
    messages = [
        f"START RequestId: {done} Version: 3",
        f"END RequestId: {done}",
        WARM_TEXT.replace("3604209a-e9a3-11e6-939a-754dd98c7be3", done),
        f"START RequestId: {running} Version: 3",
    ]
    summary = logs_scan.summarise([LogLine("s", 1000 + i, m) for i, m in enumerate(messages)])
    assert summary.complete(done) and summary.lines_of(running) == ["START"]
    # The smoke's wait: every named request complete. Before, END or REPORT sufficed.
    assert logs_scan._complete(summary, [done])
    assert not logs_scan._complete(summary, [done, running])
    # The bake's count also waits for an invocation it saw starting in the window.
    assert not logs_scan._complete(summary, [done], in_flight=True)
    assert not logs_scan._complete(summary, [], in_flight=True)
    without_end = [m for m in messages[:3] if not m.startswith("END")]
    partial = logs_scan.summarise([LogLine("s", 1000 + i, m) for i, m in enumerate(without_end)])
    assert not partial.complete(done) and partial.lines_of(done) == ["START", "REPORT"]
