"""The `gangway` command line: the only layer that prints and chooses exit codes.

Exit codes: 0 success, 1 a blocked/failed/rolled-back run, 2 bad input (configuration).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from cli import approve as approve_cli
from cli import drift as drift_cli
from cli import gate as gate_cli
from cli import promote as promote_cli
from cli import prune as prune_cli
from cli import rollback as rollback_cli
from cli import status as status_cli
from cli import unlock as unlock_cli
from cli.init import add_arguments, run_init, stdin_ask
from cli.project import requested_project
from gangway import interrupts
from gangway.config import (
    apply_env_file,
    available_environments,
    gangway_home,
    project_root,
)
from gangway.errors import ConfigError, GangwayError, RegistryError
from gangway.interrupts import Terminated
from gangway.render import gate_text, table

if TYPE_CHECKING:
    from gangway.record import DeployRecord
    from tasks.ledger import Ledger

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
E = TypeVar("E", bound=BaseException)
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `git log | head`


def _stack(args: argparse.Namespace) -> int:
    from rehearsal import stack

    if args.action == "seed":
        from rehearsal.service_seed import seed_service

        print(seed_service(project_root(args.project), args.env or None).render())
        return EXIT_OK
    if args.action == "up":
        status = stack.up(envs=args.env or None)
    elif args.action == "down":
        stack.down()
        status = stack.status()
    else:
        status = stack.status()
    print(status.render())
    apply_env_file()
    return EXIT_OK


def render_record(record: DeployRecord) -> str:
    """A deploy record as a readable summary: outcome, artifact chain, steps, functions."""
    head = [
        f"deploy {record.deploy_id}  {record.env}  {record.outcome.value.upper()}",
        f"  {record.message}",
        f"  commit  {record.commit_sha}{' (dirty tree)' if record.dirty else ''}",
        f"  image   {record.image_ref or '-'}",
        f"  digest  {record.image_digest or '-'}",
        f"  service {record.service or '-'}",
        f"  schema  {record.schema_before or 'base'} → {record.schema_after or '-'}"
        if record.schema_before or record.schema_after
        else "  schema  -",
        f"  evidence {record.evidence} (the strongest gate about the new version that passed)",
        f"  traffic {record.traffic.get('mode', '-')}"
        + (
            f" {record.traffic['canary_percent']}% / {record.traffic['bake_s']}s"
            if record.traffic.get("mode") == "canary"
            else ""
        ),
        f"  by      {record.actor} at {record.started_at:%Y-%m-%d %H:%M:%S} UTC",
        "",
    ]
    step_rows = [(s.status, s.name, f"{s.seconds:.2f}s", s.detail) for s in record.steps]
    fn_rows = [
        (
            m.name,
            m.version_before or "-",
            m.version_after or "-",
            (m.restored_to or "-") + (" (verified)" if m.restore_verified else ""),
        )
        for m in record.functions.values()
    ]
    parts = ["\n".join(head), table(("", "step", "time", "evidence"), step_rows), ""]
    parts.append(table(("function", "before", "after", "rolled back to"), fn_rows))
    failed = [g for g in record.gates if g.status.value != "passed"]
    for gate in failed:
        parts += ["", gate_text(gate)]
        for check in gate.failures:
            parts.append(f"  - {check.name}: expected {check.expected}; found {check.found}")
            if check.remedy:
                parts.append(f"    remedy: {check.remedy}")
    if record.rollback:
        parts += [
            "",
            f"rollback: {record.rollback.get('result')} in {record.rollback.get('seconds', '-')}s",
        ]
    parts += [f"note: {n}" for n in record.notes]
    return "\n".join(parts)


def _deploy(args: argparse.Namespace) -> int:
    from flows.deploy import DeployFailed, deploy
    from flows.request import record_refusal, validate_request
    from gangway.plan import DeployPlan, render_plan

    try:
        # Every input is checked before a flow run exists: bad input is exit 2 with one
        # refused record, never a failed Prefect run that logs the whole error again.
        validate_request(args.env, args.sha, args.canary, args.bake, requested_project(args))
    except (ConfigError, RegistryError) as exc:
        if not args.dry_run:
            record_refusal(args.env, args.sha, exc)
        print(exc.render(), file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        result = deploy(
            env=args.env,
            sha=args.sha,
            canary_percent=args.canary,
            bake_s=args.bake,
            allow_destructive=args.allow_destructive,
            dry_run=args.dry_run,
            project=requested_project(args),
        )
    except Exception as raised:
        # With its API gone, Prefect's engine fails to report the end of a deploy that has
        # already ended (and recorded it); the deploy's own DeployFailed is that error's context.
        exc = raised if isinstance(raised, DeployFailed) else _context(raised, DeployFailed)
        if exc is None:
            raise
        if args.json:
            print(exc.record.model_dump_json(indent=2))
        else:
            print(render_record(exc.record))
            print()
            print(exc.render(), file=sys.stderr)
        return EXIT_FAILED
    if isinstance(result, DeployPlan):
        if args.json:
            print(json.dumps(dataclasses.asdict(result), indent=2, default=str))
        else:
            print(render_plan(result))
        return EXIT_OK
    print(result.model_dump_json(indent=2) if args.json else render_record(result))
    return EXIT_OK


def _context(exc: BaseException, wanted: type[E]) -> E | None:
    """The first exception of type wanted in exc's chain of causes and contexts."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, wanted):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


SHORT_ID_MIN = 8  # `ledger list` prints 12 characters of the id; 8 hex digits is 2**32 ids


def _find_record(ledger: Ledger, ref: str) -> DeployRecord:
    """The record a deploy id, a unique id prefix (8+ characters) or a commit SHA names."""
    record = ledger.get(ref)
    if record is not None:
        return record
    if len(ref) >= SHORT_ID_MIN:
        matches = ledger.by_id_prefix(ref, limit=11)
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            shown = ", ".join(
                f"{r.deploy_id} ({r.env} {r.outcome.value} {r.started_at:%Y-%m-%d %H:%M})"
                for r in matches[:10]
            )
            raise ConfigError(
                f"deploy id prefix {ref!r} is ambiguous",
                expected="a prefix that names one deploy",
                found=f"{'more than 10' if len(matches) > 10 else len(matches)} deploys: {shown}",
                remedy="pass more characters of the id, or the whole id",
            )
    record = next(iter(ledger.by_sha(ref, limit=1)), None)
    if record is None:
        raise ConfigError(
            f"no deploy {ref!r} in the ledger",
            expected=f"a deploy id (or its first {SHORT_ID_MIN}+ characters) or a commit SHA",
            found="no record",
            remedy="list them with `gangway ledger list`",
        )
    return record


def _event_text(data: dict[str, object]) -> str:
    text = ", ".join(f"{k}={v}" for k, v in data.items() if k not in ("checks", "evidence"))
    return text.replace("\n", " ")


def _ledger(args: argparse.Namespace) -> int:
    from tasks.ledger import Ledger

    ledger = Ledger()
    if args.action == "show":
        record = _find_record(ledger, args.ref)
        print(record.model_dump_json(indent=2) if args.json else render_record(record))
        return EXIT_OK
    if args.action == "events":
        # The append-only facts the record is folded from, in the order they were written.
        events = ledger.events(_find_record(ledger, args.ref).deploy_id)
        if args.json:
            print(json.dumps([e.model_dump(mode="json") for e in events], indent=2))
            return EXIT_OK
        rows = [(f"{e.at:%H:%M:%S.%f}"[:12], e.kind.value, _event_text(e.data)) for e in events]
        print(table(("at", "event", "data"), rows))
        return EXIT_OK
    if args.action == "list":
        records = ledger.recent(args.env)
    elif args.action == "sha":
        records = ledger.by_sha(args.ref, args.env)
    else:
        records = ledger.by_digest(args.ref)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return EXIT_OK
    rows = [
        (
            r.deploy_id[:12],
            r.env,
            r.kind,
            r.commit_sha[:12],
            (r.image_digest or "-")[:19],
            r.outcome.value,
            f"{r.started_at:%Y-%m-%d %H:%M}",
        )
        for r in records
    ]
    print(table(("deploy", "env", "kind", "commit", "digest", "outcome", "started"), rows))
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from rehearsal import stack

    started = time.monotonic()
    print("== rehearsal stack")
    print(stack.up().render())
    apply_env_file()
    print(f"\n== deploy the reference service to {args.env}, end to end")
    # Through the real parser, so every deploy flag (and its default) exists here too.
    code = _deploy(build_parser().parse_args(["deploy", "--env", args.env]))
    print(f"\ndemo finished in {time.monotonic() - started:.1f}s")
    return code


def _init(args: argparse.Namespace) -> int:
    return run_init(args, stdin_ask())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per job."""
    try:
        envs = available_environments()
    except ConfigError:  # a bad --project / GANGWAY_PROJECT is reported once the args are read
        envs = []
    parser = argparse.ArgumentParser(prog="gangway", description=__doc__)
    project = argparse.ArgumentParser(add_help=False)
    project.add_argument(
        "--project",
        metavar="DIR",
        help="the service's checkout (default: $GANGWAY_PROJECT, else the current directory "
        "when it has deployments/service.toml, else gangway's reference service)",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "stack",
        parents=[project],
        help="provision / stop / inspect the local rehearsal stack; `seed` creates what a "
        "service's configuration declares (functions, aliases, log groups, bucket, database)",
    )
    p.add_argument("action", choices=("up", "down", "status", "seed"))
    p.add_argument("--env", action="append", help="environment(s) to seed (default: all)")
    p.set_defaults(run=_stack)

    p = sub.add_parser("gate", parents=[project], help=gate_cli.HELP)
    gate_cli.add_arguments(p, envs)
    p.set_defaults(run=gate_cli.run)

    p = sub.add_parser(
        "deploy", parents=[project], help="deploy one commit to one environment, with evidence"
    )
    p.add_argument("--env", required=True, help=f"one of: {', '.join(envs)}")
    p.add_argument("--sha", help="commit to deploy (default: HEAD of the service)")
    p.add_argument(
        "--canary",
        type=int,
        default=0,
        metavar="PERCENT",
        help="route PERCENT of traffic to the new version during the bake",
    )
    p.add_argument("--bake", type=int, default=0, metavar="SECONDS", help="canary bake time")
    p.add_argument(
        "--allow-destructive",
        action="store_true",
        help="let drop/rename/narrowing migrations through",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    p.add_argument("--json", action="store_true", help="the ledger record as JSON")
    p.set_defaults(run=_deploy)

    p = sub.add_parser("ledger", help="read the deploy ledger")
    p.add_argument("action", choices=("list", "show", "events", "sha", "digest"))
    p.add_argument("ref", nargs="?", default="", help="deploy id, commit SHA or digest")
    p.add_argument("--env")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_ledger)

    p = sub.add_parser("demo", help="stack up, then the whole rehearsal for one environment")
    p.add_argument("--env", default="dev")
    p.set_defaults(run=_demo)

    p = sub.add_parser("status", parents=[project], help="what is live in each environment")
    status_cli.add_arguments(p)
    p.set_defaults(run=status_cli.run)

    p = sub.add_parser("drift", parents=[project], help=drift_cli.HELP)
    drift_cli.add_arguments(p)
    p.set_defaults(run=drift_cli.run)

    p = sub.add_parser("prune", parents=[project], help="delete what nothing can roll back to")
    prune_cli.add_arguments(p)
    p.set_defaults(run=prune_cli.run)

    p = sub.add_parser("unlock", parents=[project], help="clear a stuck lock, holder proven gone")
    unlock_cli.add_arguments(p)
    p.set_defaults(run=unlock_cli.run)

    p = sub.add_parser("promote", parents=[project], help=promote_cli.HELP)
    promote_cli.add_arguments(p)
    p.set_defaults(run=promote_cli.run)

    p = sub.add_parser("rollback", parents=[project], help=rollback_cli.HELP)
    rollback_cli.add_arguments(p)
    p.set_defaults(run=rollback_cli.run)

    p = sub.add_parser("approve", help=approve_cli.HELP)
    approve_cli.add_arguments(p)
    p.set_defaults(run=approve_cli.run)

    p = sub.add_parser("init", help="write a starting deployments/ for a service (SAM or answers)")
    add_arguments(p)
    p.set_defaults(run=_init)
    return parser


def _terminate(signum: int, _frame: object) -> None:
    stop = Terminated(f"received {signal.Signals(signum).name}")
    interrupts.request(stop)
    raise stop


def _interrupt(_signum: int, _frame: object) -> None:
    interrupts.request(KeyboardInterrupt())
    raise KeyboardInterrupt


def _interrupted(stop: BaseException) -> int:
    if isinstance(stop, Terminated):
        print(f"terminated ({stop})", file=sys.stderr)
        return 143
    print("interrupted", file=sys.stderr)
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gangway` console script."""
    apply_env_file()
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    # init makes a project (its deployments/ may not exist yet): it reads --project itself.
    if getattr(args, "project", None) and args.command != "init":
        try:
            # One project for the whole process: the flows, the ledger's reads and the
            # in-process Prefect run all resolve the same checkout.
            os.environ["GANGWAY_PROJECT"] = str(project_root(args.project))
        except ConfigError as exc:
            print(exc.render(), file=sys.stderr)
            return EXIT_BAD_INPUT
    # Python's default for SIGTERM is to die on the spot, skipping the rollback of an alias
    # that already moved; a runner cancelling a job sends SIGTERM before SIGKILL.
    signal.signal(signal.SIGTERM, _terminate)
    # Recorded as well as raised: the deploy re-checks it should the exception get lost.
    signal.signal(signal.SIGINT, _interrupt)
    interrupts.watch()
    try:
        code = run(args)
        sys.stdout.flush()  # a closed pipe surfaces here, not at interpreter exit
        return code
    except BrokenPipeError:
        # The reader went away (`gangway ledger list | head`): nothing of ours failed. Point
        # stdout at /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_BAD_INPUT
    except GangwayError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_FAILED
    except (KeyboardInterrupt, Terminated) as exc:
        return _interrupted(exc)
    except Exception as exc:  # a bug in gangway: say so plainly, keep the traceback on disk
        if (stop := interrupts.requested()) is not None:
            # The signal surfaced as another error on its way up (a library converted it).
            return _interrupted(stop)
        trace = gangway_home() / "logs" / "last-error.txt"
        trace.parent.mkdir(parents=True, exist_ok=True)
        trace.write_text(traceback.format_exc())
        print(
            f"[gangway] unexpected error {type(exc).__name__}: {exc}\n"
            f"  this is a bug in gangway, not in your deploy; traceback: {trace}",
            file=sys.stderr,
        )
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
