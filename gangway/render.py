"""Render gate results and summaries for people: plain-text tables and Prefect markdown."""

from __future__ import annotations

from collections.abc import Sequence

from gangway.evidence import GateResult
from gangway.record import DeployRecord


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A fixed-width text table."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [
        max(len(r[i].splitlines()[0] if r[i] else "") for r in cells) for i in range(len(headers))
    ]
    widths = [min(w, 90) for w in widths]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.splitlines()[0][:90].ljust(w) if c else " " * w
                for c, w in zip(row, widths, strict=True)
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def gate_text(result: GateResult) -> str:
    """The gate as a text table: one row per check."""
    rows = [
        ("ok" if c.ok else "FAIL", c.name, c.found if not c.ok else c.found[:60])
        for c in result.checks
    ]
    head = (
        f"{result.gate} [{result.boundary}, {result.strength}] "
        f"{result.status.upper()} in {result.duration_s:.1f}s"
    )
    return head + "\n" + table(("", "check", "found"), rows)


def gate_markdown(result: GateResult) -> str:
    """The gate as a markdown table with expected / found / remedy, for a Prefect artifact."""
    lines = [
        f"### {result.gate}: {result.status.upper()}",
        f"boundary **{result.boundary}**, evidence strength **{result.strength}**, "
        f"{result.duration_s:.2f}s",
        "",
        "| | check | expected | found | remedy |",
        "|---|---|---|---|---|",
    ]
    for c in result.checks:
        cells = [("✅" if c.ok else "❌"), c.name, c.expected, c.found, c.remedy]
        lines.append(
            "| " + " | ".join(x.replace("|", "\\|").replace("\n", " ") for x in cells) + " |"
        )
    return "\n".join(lines)


def slug(name: str) -> str:
    """A name as a Prefect artifact key fragment: lower case, dashes."""
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")


def record_markdown(r: DeployRecord) -> str:
    """A deploy record as the markdown of its Prefect artifact."""
    lines = [
        f"### deploy {r.deploy_id}: {r.outcome.value}",
        f"{r.message}",
        "",
        f"commit `{r.commit_sha}` → digest `{r.image_digest}` → schema "
        f"`{r.schema_before}` → `{r.schema_after}`",
        "",
        "| function | before | after | restored |",
        "|---|---|---|---|",
        *(
            f"| {m.name} | {m.version_before} | {m.version_after} | {m.restored_to or '-'} |"
            for m in r.functions.values()
        ),
    ]
    return "\n".join(lines)
