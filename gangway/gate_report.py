"""The PR gate's results as the reports a CI system reads: JUnit XML, JSON, a Markdown summary.

JUnit is xunit2 as Jenkins' JUnit plugin reads it (tests/schemas/junit-10.xsd): a
``testsuites`` root, one ``testsuite`` per gate, one ``testcase`` per check, a failed check's
expected / found / remedy in its ``failure``. Pure: values in, text out; the caller scrubs
secrets from the results first.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gangway.evidence import Check, GateResult, Status

SUMMARY_LIMIT = 1024 * 1024  # GitHub's limit for one step's summary
CELL_LIMIT = 1000  # characters of one table cell in the summary
# XML 1.0 cannot carry most control characters (a traceback may hold an ANSI escape).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class TimedGate:
    """One gate's result and when it started (the JUnit testsuite's timestamp)."""

    result: GateResult
    started_at: datetime


def passed(gates: Sequence[TimedGate]) -> bool:
    """True when no gate failed (a skipped gate, declared absent, does not fail the run)."""
    return all(g.result.status is not Status.FAILED for g in gates)


def _classname(gate: str) -> str:
    return "gangway.gate." + "_".join(re.findall(r"[a-z0-9]+", gate.lower()))


def _clean(text: str) -> str:
    return _NOT_XML.sub("?", text)


def failure_text(check: Check) -> str:
    """A failed check as the text of its report: expected, found, remedy, evidence."""
    lines = [f"expected: {check.expected}", f"found:    {check.found}"]
    lines.append(f"remedy:   {check.remedy or '-'}")
    if check.evidence:
        lines += ["evidence:", json.dumps(check.evidence, indent=2, default=str)]
    return "\n".join(lines)


def _testcases(gate: GateResult) -> list[tuple[str, Check | None]]:
    if gate.status is Status.SKIPPED:
        return [(gate.gate, None)]
    if not gate.checks:  # a gate with nothing checked cannot pass (GateResult.status)
        return [
            (
                gate.gate,
                Check(
                    name=gate.gate,
                    ok=False,
                    expected="at least one check",
                    found="the gate checked nothing",
                    remedy="declare what the gate should check",
                ),
            )
        ]
    return [(c.name, c) for c in gate.checks]


def junit_xml(gates: Sequence[TimedGate], name: str = "gangway gate") -> str:
    """The gates as a complete xunit2 document (times in seconds; timestamps ISO 8601 in UTC,
    without an offset, as Ant writes them)."""
    root = ET.Element("testsuites", name=name)
    totals = {"tests": 0, "failures": 0, "errors": 0, "time": 0.0}
    for index, timed in enumerate(gates):
        gate = timed.result
        cases = _testcases(gate)
        failures = sum(1 for _, c in cases if c is not None and not c.ok)
        skipped = sum(1 for _, c in cases if c is None)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=gate.gate,
            tests=str(len(cases)),
            failures=str(failures),
            errors="0",
            skipped=str(skipped),
            time=f"{gate.duration_s:.3f}",
            timestamp=timed.started_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
            id=str(index),
        )
        # The checks of one gate are judged together: each is given an equal share of its time.
        share = gate.duration_s / len(cases)
        for case_name, check in cases:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=_classname(gate.gate),
                name=_clean(case_name),
                time=f"{share:.3f}",
            )
            if check is None:
                ET.SubElement(case, "skipped", message=_clean(gate.skipped_reason))
            elif not check.ok:
                failure = ET.SubElement(
                    case,
                    "failure",
                    message=_clean(
                        f"expected {check.expected}; found {check.found}; "
                        f"remedy {check.remedy or '-'}"
                    ),
                    type=gate.boundary,
                )
                failure.text = _clean(failure_text(check))
        totals["tests"] += len(cases)
        totals["failures"] += failures
        totals["time"] += gate.duration_s
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failures"]))
    root.set("errors", "0")
    root.set("time", f"{totals['time']:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def report_json(gates: Sequence[TimedGate], exit_code: int, **facts: Any) -> dict[str, Any]:
    """One JSON document: status, exit code, the facts given, every gate and every check."""
    return {
        "status": "passed" if passed(gates) else "failed",
        "exit_code": exit_code,
        **facts,
        "gates": [
            {
                "gate": g.result.gate,
                "status": g.result.status.value,
                "started_at": g.started_at.isoformat(),
                "seconds": round(g.result.duration_s, 3),
                "skipped_reason": g.result.skipped_reason,
            }
            for g in gates
        ],
        "checks": [
            {"gate": g.result.gate, **c.model_dump(mode="json")}
            for g in gates
            for c in g.result.checks
        ],
    }


def _cell(text: str) -> str:
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= CELL_LIMIT else text[: CELL_LIMIT - 1] + "…"


def summary_markdown(gates: Sequence[TimedGate], headline: str, limit: int = SUMMARY_LIMIT) -> str:
    """The job summary: status first, then a table per gate, the details folded; at most
    limit bytes (UTF-8), the checks' table cut with a note when it would not fit."""
    ok = passed(gates)
    failed = [(g.result.gate, c) for g in gates for c in g.result.failures]
    total = sum(len(g.result.checks) for g in gates)
    status = (
        f"## ✅ gangway gate passed: {headline}"
        if ok
        else f"## ❌ gangway gate FAILED: {len(failed)} of {total} checks failed, {headline}"
    )
    head = [
        status,
        "",
        "| gate | status | checks | failed | seconds |",
        "|---|---|---|---|---|",
        *(
            f"| {g.result.gate} | {g.result.status.value}"
            + (f" ({_cell(g.result.skipped_reason)})" if g.result.skipped_reason else "")
            + f" | {len(g.result.checks)} | {len(g.result.failures)} | {g.result.duration_s:.1f} |"
            for g in gates
        ),
        "",
    ]
    blocks: list[str] = []
    if failed:
        blocks.append(f"<details><summary>Failures ({len(failed)})</summary>\n")
        blocks += [
            f"- **{_cell(gate)}: {_cell(c.name)}**  \n  expected: {_cell(c.expected)}  \n"
            f"  found: {_cell(c.found)}  \n  remedy: {_cell(c.remedy or '-')}"
            for gate, c in failed
        ]
        blocks.append("\n</details>\n")
    rows = [
        f"| {'✅' if c.ok else '❌'} | {_cell(g.result.gate)} | {_cell(c.name)} | "
        f"{_cell(c.expected)} | {_cell(c.found)} |"
        for g in gates
        for c in g.result.checks
    ]
    blocks += [
        f"<details><summary>All checks ({len(rows)})</summary>\n",
        "| | gate | check | expected | found |",
        "|---|---|---|---|---|",
    ]
    closing = "\n\n</details>\n"
    text = "\n".join(head + blocks)
    budget = limit - len(closing.encode()) - 200  # room for the truncation note
    if len(text.encode()) > budget:
        # Even the failures do not fit: keep the status and the gates' table.
        text = "\n".join(head)
        blocks, rows = [], []
    kept: list[str] = []
    size = len(text.encode())
    for row in rows:
        size += len(row.encode()) + 1
        if size > budget:
            break
        kept.append(row)
    note = ""
    if len(kept) < len(rows) or not blocks:
        note = (
            f"\n\n_Summary truncated to fit GitHub's {limit // 1024} KiB limit: "
            f"{len(rows) - len(kept) if blocks else total} checks not shown; "
            "the JUnit report has them all._"
        )
    body = "\n".join([text, *kept]) + note
    return body + (closing if blocks else "\n")
