"""The `gangway` command line: the only layer that prints and chooses exit codes.

Exit codes: 0 success, 1 a blocked/failed/rolled-back run, 2 bad input (configuration).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence

from gangway.config import apply_env_file, available_environments
from gangway.errors import ConfigError, GangwayError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _stack(args: argparse.Namespace) -> int:
    from rehearsal import stack

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


def _gate(args: argparse.Namespace) -> int:
    from flows.image import build_and_gate
    from gangway.render import gate_text, table

    started = time.monotonic()
    outcome = build_and_gate(env=args.env, push_image=not args.no_push)
    total = time.monotonic() - started
    if args.json:
        print(
            json.dumps(
                {
                    "env": args.env,
                    "commit_sha": outcome.built.revision.sha,
                    "dirty": outcome.built.revision.dirty,
                    "image": outcome.built.reference,
                    "digest": outcome.pushed.digest if outcome.pushed else None,
                    "gate": outcome.gate.model_dump(mode="json"),
                    "seconds": round(total, 2),
                },
                indent=2,
            )
        )
        return EXIT_OK
    print(gate_text(outcome.gate))
    print()
    rows = [
        (
            "commit",
            outcome.built.revision.sha + (" (dirty tree)" if outcome.built.revision.dirty else ""),
        ),
        ("image", outcome.built.reference),
        ("digest", outcome.pushed.by_digest if outcome.pushed else "(not pushed)"),
        ("vendor", f"{outcome.built.vendor_s:.1f}s"),
        ("build", f"{outcome.built.build_s:.1f}s"),
        ("in-image gate", f"{outcome.gate.duration_s:.1f}s ({len(outcome.gate.checks)} checks)"),
        ("push", f"{outcome.pushed.push_s:.1f}s" if outcome.pushed else "-"),
        ("total (with Prefect)", f"{total:.1f}s"),
    ]
    print(table(("step", "result"), rows))
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from rehearsal import stack

    started = time.monotonic()
    print("== rehearsal stack")
    print(stack.up().render())
    apply_env_file()
    print(f"\n== build, in-image import gate and push for {args.env}")
    code = _gate(argparse.Namespace(env=args.env, no_push=False, json=False))
    print(f"\ndemo finished in {time.monotonic() - started:.1f}s")
    return code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per job."""
    envs = available_environments()
    parser = argparse.ArgumentParser(prog="gangway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="provision / stop / inspect the local rehearsal stack")
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--env", action="append", help="environment(s) to seed (default: all)")
    p.set_defaults(run=_stack)

    p = sub.add_parser("gate", help="build the image, import every handler inside it, push it")
    p.add_argument("--env", required=True, help=f"one of: {', '.join(envs)}")
    p.add_argument("--no-push", action="store_true", help="stop after the in-image gate")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=_gate)

    p = sub.add_parser("demo", help="stack up, then the whole rehearsal for one environment")
    p.add_argument("--env", default="dev")
    p.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gangway` console script."""
    apply_env_file()
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_BAD_INPUT
    except GangwayError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
