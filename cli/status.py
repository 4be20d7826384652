"""`gangway status`: what is live in each environment, and which deploy put it there.

Exit codes: 0 every environment read; 1 one could not be read (its boundary is named); 2 bad
input (an unknown environment, a configuration that does not load).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gangway.config import available_environments, deployments_dir, load_config, project_root
from gangway.errors import ConfigError
from gangway.render import table

if TYPE_CHECKING:
    from flows.status import EnvStatus

ALL = "all"
SHORT = 12  # characters of an id, a commit or a digest's hex in the table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `gangway status` (--project comes from the shared parent parser)."""
    parser.add_argument(
        "--env", default=ALL, help="one environment, or 'all' (default): every <env>.toml"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _environments(args: argparse.Namespace) -> list[str]:
    known = available_environments(deployments_dir(project_root(getattr(args, "project", None))))
    if args.env == ALL:
        return known
    if args.env not in known:
        raise ConfigError(
            f"no environment {args.env!r} in this project",
            expected=f"one of: {', '.join(known) or '(none)'}, or {ALL}",
            found=repr(args.env),
            remedy="pass --env with an environment that has a <env>.toml beside service.toml",
        )
    return [args.env]


def run(args: argparse.Namespace) -> int:
    """`gangway status`: read each environment, print a table (or --json); see the exit codes."""
    from flows.status import read_environment
    from tasks.ledger import Ledger

    project = getattr(args, "project", None)
    # Every configuration loads before anything is read: bad input is exit 2, nothing half-read.
    configs = [load_config(env, project=project) for env in _environments(args)]
    ledger = Ledger()
    try:
        statuses = [read_environment(config, ledger) for config in configs]
    finally:
        ledger.engine.dispose()
    if args.json:
        print(json.dumps({"environments": [status_json(s) for s in statuses]}, indent=2))
    else:
        print("\n\n".join(status_text(s) for s in statuses))
    failed = [s for s in statuses if s.error]
    for s in failed:
        print(f"status of {s.env} is incomplete ({s.boundary}):\n{s.error}", file=sys.stderr)
    return 1 if failed else 0


def status_json(status: EnvStatus) -> dict[str, Any]:
    """An EnvStatus as a stable JSON object (every key always present)."""
    data = asdict(status)
    for fn, raw in zip(status.functions, data["functions"], strict=True):
        for route, out in zip(fn.routes, raw["routes"], strict=True):
            out["from_gangway"] = route.from_gangway
    return json.loads(json.dumps(data, default=_iso))


def _iso(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _short_digest(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:SHORT]}" if hexpart else (digest or "-")


def status_text(status: EnvStatus) -> str:
    """An EnvStatus for people: a header, the schema and lock lines, one row per route."""
    head = f"{status.env}  service {status.service}  alias {status.alias}"
    if status.error:
        return f"{head}\n  could not be read ({status.boundary}): {status.error.splitlines()[0]}"
    lock = status.lock
    lines = [
        head,
        f"  schema       {status.schema.text()}",
        f"  lock         {lock.kind} {lock.name}: {lock.holder or 'free'}",
    ]
    if status.in_progress:
        lines += [
            f"  in progress  {p.kind} {p.deploy_id[:SHORT]} of {p.commit_sha[:SHORT]} by "
            f"{p.actor} since {p.started_at:%Y-%m-%d %H:%M:%S} UTC"
            for p in status.in_progress
        ]
    else:
        lines.append("  in progress  none")
    rows = [
        (
            fn.key,
            route.version,
            f"{route.weight:.0%}",
            _short_digest(route.digest),
            (route.commit_sha or "-")[:SHORT],
            f"{route.placed_by.kind} {route.placed_by.deploy_id[:SHORT]} "
            f"{route.placed_by.outcome}"
            if route.placed_by
            else "not from gangway",
        )
        for fn in status.functions
        for route in fn.routes
    ]
    lines += ["", table(("function", "version", "weight", "digest", "commit", "placed by"), rows)]
    return "\n".join(lines)
