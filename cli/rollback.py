"""`gangway rollback`: put an environment back on an earlier succeeded deploy, without a rebuild.

Exit codes: 0 rolled back and smoked, 1 failed (the aliases were put back where they were),
2 refused before anything moved (bad input, no target, target live already or pruned, the
live schema no longer meets the target's requirement).
"""

from __future__ import annotations

import argparse
import sys

from cli.project import requested_project
from gangway.errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2
HELP = (
    "put an environment back on an earlier succeeded deploy's versions (no rebuild), "
    "smoked and recorded with who and why"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `gangway rollback` (--project comes from the shared parent parser)."""
    parser.add_argument("--env", required=True, help="the environment to roll back")
    parser.add_argument(
        "--to",
        metavar="DEPLOY",
        help="the deploy id (or its first 8+ characters) to return to (default: the previous "
        "succeeded deploy before the one live now)",
    )
    parser.add_argument(
        "--reason", required=True, help="why: kept on the ledger record with who rolled back"
    )
    parser.add_argument("--json", action="store_true", help="the ledger record as JSON")


def run(args: argparse.Namespace) -> int:
    """Validate, then run the rollback flow; print the record; choose the exit code."""
    from cli.main import _context, render_record
    from flows.deploy import DeployFailed
    from flows.roll_back import record_rollback_refusal, roll_back, validate_rollback

    project = requested_project(args)
    try:
        # Bad input is refused before a flow run exists (one refused record, exit 2).
        validate_rollback(args.env, args.reason, args.to, project)
    except ConfigError as exc:
        record_rollback_refusal(args.env, exc, _service(args.env, project), reason=args.reason)
        print(exc.render(), file=sys.stderr)
        return EXIT_REFUSED
    try:
        record = roll_back(env=args.env, reason=args.reason, to=args.to, project=project)
    except ConfigError as exc:  # refused under the lock: on record, nothing moved
        print(exc.render(), file=sys.stderr)
        return EXIT_REFUSED
    except Exception as raised:
        exc = raised if isinstance(raised, DeployFailed) else _context(raised, DeployFailed)
        if exc is None:
            refused = _context(raised, ConfigError)
            if refused is None:
                raise
            print(refused.render(), file=sys.stderr)
            return EXIT_REFUSED
        print(exc.record.model_dump_json(indent=2) if args.json else render_record(exc.record))
        print(exc.render(), file=sys.stderr)
        return EXIT_FAILED
    print(record.model_dump_json(indent=2) if args.json else render_record(record))
    return EXIT_OK


def _service(env: str, project: str | None) -> str:
    """The service's name for a refusal's record, when its configuration loads at all."""
    from gangway.config import load_config

    try:
        return load_config(env, project=project).service.name
    except ConfigError:
        return ""
