"""`gangway promote`: ship the image one environment validated to the next, by digest.

Exit codes: 0 promoted and verified in the target; 1 the target's gates stopped it (the
target's aliases were put back; the source is never touched) or an approver rejected it /
nobody decided in time (a decision, not bad input: nothing moved, and asking again may be
approved); 2 refused before anything moved (bad input, or a rule of the promotion policy:
path, validated digest, soak, schema, the image not in the target's registry).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from cli.project import requested_project
from gangway.errors import ConfigError, RegistryError

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2
HELP = (
    "promote the image a commit validated in one environment to the next, by digest (no "
    "rebuild), after the promotion policy (path, soak, schema) and, where required, approval"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `gangway promote` (--project comes from the shared parent parser)."""
    parser.add_argument("--sha", help="the commit whose validated image to promote")
    parser.add_argument(
        "--digest", help="the image digest to promote (when the SHA has several, or alone)"
    )
    parser.add_argument("--from", dest="source_env", required=True, metavar="ENV",
                        help="the environment that validated the image")
    parser.add_argument("--to", dest="target_env", required=True, metavar="ENV",
                        help="the environment to promote it to")
    parser.add_argument("--reason", required=True, help="why: kept on the ledger record")
    parser.add_argument(
        "--skip-path", action="store_true",
        help="promote outside the declared path (promotion.from_envs); needs --reason-for-skip",
    )
    parser.add_argument("--reason-for-skip", metavar="TEXT",
                        help="why the declared path is skipped (recorded)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan and the policy's verdict; move nothing")
    parser.add_argument("--json", action="store_true", help="the ledger record as JSON")


def _skip_reason(args: argparse.Namespace) -> str | None:
    if args.skip_path and not (args.reason_for_skip or "").strip():
        raise ConfigError(
            "--skip-path needs a reason",
            expected='--skip-path --reason-for-skip "why"',
            found="no --reason-for-skip",
            remedy='add --reason-for-skip "…" (recorded), or promote along the declared path',
        )
    if args.reason_for_skip and not args.skip_path:
        raise ConfigError(
            "--reason-for-skip without --skip-path",
            expected="both, or neither",
            found=f"--reason-for-skip {args.reason_for_skip!r}",
            remedy="add --skip-path, or drop --reason-for-skip",
        )
    return args.reason_for_skip.strip() if args.skip_path else None


def run(args: argparse.Namespace) -> int:
    """Check the policy, then run the promote flow; print the record; choose the exit code."""
    from cli.main import _context, render_record
    from flows.deploy import DeployFailed
    from flows.promote import (
        PromotionRejected,
        _service,
        promote,
        record_promotion_refusal,
        validate_promotion,
        verdict_text,
    )
    from gangway.plan import DeployPlan, render_plan

    project = requested_project(args)
    try:
        skip = _skip_reason(args)
        # Refused before a flow run exists: one refused record, exit 2, nothing moved.
        request = validate_promotion(args.sha, args.source_env, args.target_env, args.reason,
                           args.digest, skip, project)
    except (ConfigError, RegistryError) as exc:
        if not args.dry_run:
            record_promotion_refusal(
                args.source_env, args.target_env, args.sha, exc,
                service=_service(args.target_env, project), digest=args.digest,
                notes=[f"reason: {args.reason}"],
            )
        print(exc.render(), file=sys.stderr)
        return EXIT_REFUSED
    try:
        result = promote(
            sha=args.sha, source_env=args.source_env, target_env=args.target_env,
            reason=args.reason, digest=args.digest, skip_path_reason=skip,
            dry_run=args.dry_run, project=project,
        )
    except Exception as raised:
        failed = raised if isinstance(raised, DeployFailed) else _context(raised, DeployFailed)
        if failed is not None:
            print(failed.record.model_dump_json(indent=2) if args.json
                  else render_record(failed.record))
            print(failed.render(), file=sys.stderr)
            return EXIT_FAILED
        rejected = _context(raised, PromotionRejected)
        if rejected is not None:
            print(rejected.render(), file=sys.stderr)
            return EXIT_FAILED
        refused = _context(raised, ConfigError) or _context(raised, RegistryError)
        if refused is not None:  # refused under the lock: on record, nothing moved
            print(refused.render(), file=sys.stderr)
            return EXIT_REFUSED
        raise
    if isinstance(result, DeployPlan):
        if not args.json:
            print(verdict_text(request))
            print()
        if args.json:
            print(json.dumps(dataclasses.asdict(result), indent=2, default=str))
        else:
            print(render_plan(result))
        return EXIT_OK
    print(result.model_dump_json(indent=2) if args.json else render_record(result))
    return EXIT_OK
