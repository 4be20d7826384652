"""`gangway unlock --env E --reason "…"`: clear a stuck deploy lock whose holder is proven gone.

Exit codes: 0 cleared or nothing to clear, 2 refused (its holder may be alive) or bad input,
1 a boundary (database, ledger store) failed. Every attempt is recorded (kind "unlock").
"""

from __future__ import annotations

import argparse
import sys

from cli.project import requested_project
from gangway.config import load_config
from gangway.errors import ConfigError, GangwayError

EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `gangway unlock` (--project comes from the shared parent parser)."""
    parser.add_argument("--env", required=True, help="the environment whose deploy lock is stuck")
    parser.add_argument(
        "--reason",
        required=True,
        help="why you believe the lock is stuck (recorded in the ledger; required)",
    )


def run(args: argparse.Namespace) -> int:
    """Prove the holder gone and clear the lock, or refuse naming the holder."""
    from flows.unlock import unlock

    project = requested_project(args)
    try:
        result = unlock(load_config(args.env, project=project), args.reason)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_REFUSED
    except GangwayError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_FAILED
    v, record = result.verdict, result.record
    if v.state == "refused":
        print(result.refusal().render(), file=sys.stderr)
        return EXIT_REFUSED
    if v.state == "cleared":
        print(f"unlock {record.env}: cleared the {v.kind} {v.name!r}")
        print(f"  holder:       {v.holder}")
        print(f"  proven gone:  {v.why}")
    else:
        print(f"unlock {record.env}: nothing to clear ({v.kind} {v.name!r}: {v.why})")
    for line in result.recovery:
        print(f"  recovery:     {line}")
    print(f"  recorded:     unlock {record.deploy_id} (gangway ledger show {record.deploy_id})")
    return EXIT_OK
