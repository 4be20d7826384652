"""`gangway prune`: delete the Lambda versions and registry manifests nothing can roll back to.

Prints the plan (what is kept and why, what is deleted); with --dry-run that is all it does.
Exit 0 when every planned deletion happened, 1 when one failed (what was deleted stays
deleted and is recorded), 2 on bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from cli.project import requested_project

EXIT_OK, EXIT_FAILED = 0, 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `gangway prune` (--project comes from the shared parent parser)."""
    parser.add_argument("--env", required=True, help="the environment to prune")
    parser.add_argument(
        "--keep",
        type=int,
        default=5,
        metavar="N",
        help="keep the versions and images of the last N succeeded deploys (default 5)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    """Plan, then prune (or only print the plan with --dry-run)."""
    from flows.prune import prune
    from gangway.prune_plan import render_prune_plan

    project = requested_project(args)
    result = prune(args.env, keep=args.keep, dry_run=args.dry_run, project=project)
    if args.json:
        print(
            json.dumps(
                {
                    "dry_run": args.dry_run,
                    "plan": dataclasses.asdict(result.plan),
                    "done": [
                        {"where": where, "ref": ref, "outcome": outcome}
                        for (where, ref), outcome in result.done.items()
                    ],
                    "failures": result.failures,
                    "record": result.record.deploy_id if result.record else None,
                },
                indent=2,
            )
        )
    else:
        print(render_prune_plan(result.plan, result.done or None))
        if args.dry_run:
            print("\ndry run: nothing was deleted or recorded")
        elif result.record is not None:
            print(
                f"\n{result.record.message} (ledger: gangway ledger show {result.record.deploy_id})"
            )
        for failure in result.failures:
            print(f"failed: {failure}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED
