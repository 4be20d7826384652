"""`gangway drift`: the nightly drift check, on demand.

Exit codes (gangway's contract, with drift kept apart from error as `terraform plan
-detailed-exitcode` users expect): 0 no drift (Terraform's 0), 1 drift found (Terraform's 2),
2 bad input (Terraform's 1: configuration, unknown environment, ignore file), 3 could not
check (an environment unreachable; Terraform's 1). With --env all the most severe wins:
3 > 1 > 0, so an unreachable environment never reads as clean.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from gangway.errors import GangwayError
from gangway.render import table

if TYPE_CHECKING:
    from flows.drift import DriftReport

HELP = "compare what runs with what Terraform/config declares and the ledger (exit 0/1/2/3)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `gangway drift` (--project comes from the shared parent parser)."""
    parser.add_argument("--env", default="all", help="one environment, or 'all' (default)")
    parser.add_argument("--json", action="store_true", help="the report as JSON")


def _found(exc: BaseException) -> DriftReport | None:
    from flows.drift import DriftFound

    link: BaseException | None = exc
    while link is not None:
        if isinstance(link, DriftFound):
            return link.report
        link = link.__cause__ or link.__context__
    return None


def run(args: argparse.Namespace) -> int:
    """Run the drift flow in this process and print the report; see the exit codes."""
    from flows.drift import configs_for, drift

    project = getattr(args, "project", None)
    configs_for(args.env, project)  # bad input is exit 2 before any flow run starts
    try:
        report = drift(env=args.env, project=project)
    except GangwayError as exc:
        found = _found(exc)
        if found is None:
            raise
        report = found
    print(json.dumps(report_json(report), indent=2) if args.json else report_text(report))
    for e in report.envs:
        if e.error:
            print(
                f"drift of {e.env} could not be checked ({e.boundary}):\n{e.error}", file=sys.stderr
            )
    return report.exit_code


def report_json(report: DriftReport) -> dict[str, Any]:
    """The report as a stable JSON object (every key always present)."""
    return {
        "exit_code": report.exit_code,
        "seconds": round(report.seconds, 3),
        "task_runs": report.task_runs,
        "environments": [
            {
                "env": e.env,
                "service": e.service,
                "status": e.status,
                "functions": e.functions,
                "error": e.error,
                "boundary": e.boundary,
                "checks": len(e.checks),
                "drift": [_check(c) for c in e.drift],
                "ignored": [_check(c) for c in e.ignored],
            }
            for e in report.envs
        ],
    }


def _check(check: Any) -> dict[str, Any]:
    ev = check.evidence
    return {
        "kind": ev.get("kind"),
        "owner": ev.get("owner"),
        "function": ev.get("function") or None,
        "subject": ev.get("subject"),
        "expected": check.expected,
        "found": check.found,
        "remedy": check.remedy,
        "ignored": ev.get("ignored"),
    }


def report_text(report: DriftReport) -> str:
    """Per environment a header line, then one row per difference."""
    from flows.drift import rows

    head = [
        f"{e.env}: {e.status} ({e.functions} functions, {len(e.checks)} checks, "
        f"{len(e.drift)} differences, {len(e.ignored)} ignored)"
        for e in report.envs
    ]
    found = rows(report)
    if not found:
        return "\n".join(head) + "\nno drift"
    body = table(
        ("env", "owner", "kind", "subject", "expected", "found", "remedy"),
        [tuple(r.values()) for r in found],
    )
    return "\n".join(head) + "\n\n" + body
