"""`gangway approve RUN [--reject] --reason "…"`: decide a promotion paused for approval.

Prefect has no command for resuming a paused run with input; this is it, for gangway's
promotions only. The approver is whoever runs it, as CI or the operating system names them
(never typed in); the requester may reject (withdraw) but not approve their own promotion.
Exit codes: 0 decided (or listed), 2 refused (not paused, not a gangway promotion, approver is
the requester, no reason), 1 Prefect unreachable.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import httpx

from gangway.render import table

if TYPE_CHECKING:
    from flows.approval import PendingApproval

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2
HELP = "approve or reject a promotion paused for approval (--list: those waiting)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `gangway approve`."""
    parser.add_argument("run_id", nargs="?", metavar="RUN", help="the paused flow run's id")
    parser.add_argument("--reject", action="store_true", help="reject: nothing is promoted")
    parser.add_argument("--reason", default="", help="why (recorded with the promotion)")
    parser.add_argument("--list", action="store_true", help="list promotions waiting for approval")


def run(args: argparse.Namespace) -> int:
    """List the waiting promotions, or show one and resume it with this user's decision."""
    from flows.approval import decide, find_pending, list_pending
    from tasks.approval import ApprovalRefused, requester_identity

    try:
        if args.list:
            _print_list(list_pending())
            return EXIT_OK
        if not args.run_id:
            print("gangway approve: a RUN id (or --list) is required", file=sys.stderr)
            return EXIT_REFUSED
        if not args.reason.strip():
            print('gangway approve: --reason "why" is required (it is recorded)', file=sys.stderr)
            return EXIT_REFUSED
        pending = find_pending(args.run_id)
        approver = requester_identity()
        print(pending.description)
        print()
        decide(pending, approve=not args.reject, reason=args.reason, approver=approver)
    except ApprovalRefused as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_REFUSED
    except httpx.HTTPError as exc:
        print(
            f"[orchestration] the Prefect API did not answer: {exc}\n"
            "  remedy:   check PREFECT_API_URL and that the Prefect server is up",
            file=sys.stderr,
        )
        return EXIT_FAILED
    verb = "rejected" if args.reject else "approved"
    request = pending.request
    print(
        f"{verb} the promotion of {request.service} {request.source_env} → "
        f"{request.target_env} ({request.digest}) as {approver}: {args.reason.strip()}"
    )
    print(
        f"  run {pending.run_id} resumes"
        + (", checks its policy again, then promotes" if not args.reject else " and ends")
    )
    return EXIT_OK


def _print_list(pending: list[PendingApproval]) -> None:
    if not pending:
        print("no promotion is waiting for approval")
        return
    rows = [
        (
            str(p.run_id),
            p.request.service,
            f"{p.request.source_env} → {p.request.target_env}",
            p.request.digest[:19],
            p.request.requester,
            f"{p.deadline:%Y-%m-%d %H:%M:%S}" if p.deadline else "-",
        )
        for p in pending
    ]
    print(table(("run", "service", "promotion", "digest", "requested by", "until (UTC)"), rows))
