"""`gangway gate`: the PR gate any CI runs, with JUnit, JSON and a GitHub job summary.

Exit codes: 0 every gate passed, 1 a gate failed, 2 bad input (an unknown environment or base
ref, a project that is not one, a configuration that does not validate).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from cli.project import requested_project
from gangway.config import available_environments, deployments_dir, load_config, project_root
from gangway.errors import ConfigError
from gangway.gate_report import (
    SUMMARY_LIMIT,
    TimedGate,
    junit_xml,
    report_json,
    summary_markdown,
)
from gangway.redact import scrub
from gangway.render import gate_text, table

HELP = (
    "the PR gate: build, import every handler in the image, every environment's configuration "
    "contract, lint the migrations the change adds; no push unless --push"
)
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_ENV = "dev"


def add_arguments(parser: argparse.ArgumentParser, envs: list[str]) -> None:
    """The gate's flags (--project comes from the parent parser)."""
    parser.add_argument(
        "--env",
        help=f"the environment whose configuration builds and gates the image (default: "
        f"{DEFAULT_ENV}, else the first); one of: {', '.join(envs) or '(none found)'}",
    )
    parser.add_argument(
        "--base",
        metavar="REF",
        help="the branch the change merges into: migrations not on the merge-base with it are "
        "linted (default: origin/main, else main)",
    )
    parser.add_argument(
        "--push", action="store_true", help="push the image by digest when every gate passed"
    )
    parser.add_argument("--junit", metavar="PATH", help="write the results as JUnit XML")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def _environment(asked: str | None, root: Path) -> str:
    known = available_environments(deployments_dir(root))
    if asked is None:
        if not known:
            raise ConfigError(
                f"{root} declares no environment",
                expected=f"at least one <env>.toml in {deployments_dir(root)}",
                found="only service.toml",
                remedy="add deployments/dev.toml (`gangway init` writes one)",
            )
        return DEFAULT_ENV if DEFAULT_ENV in known else known[0]
    if asked not in known:
        raise ConfigError(
            f"unknown environment {asked!r}",
            expected=f"one of: {', '.join(known) or '(none)'}",
            found=asked,
            remedy=f"pass --env with one of them, or add deployments/{asked}.toml",
        )
    return asked


def _check_input(args: argparse.Namespace) -> tuple[str, list[str]]:
    """Everything that is input, judged before a flow run exists: the environment, its
    configuration, every environment's declaration and the base ref. Returns the environment
    and the secret values to keep out of every report."""
    from flows.request import resolve_source
    from tasks.added_migrations import merge_base
    from tasks.config_contract import declarations

    project = requested_project(args)
    root = project_root(project)
    env = _environment(args.env, root)
    config, _ = resolve_source(load_config(env, project=project), None)
    declarations(config.root)
    merge_base(config.root, args.base)
    return env, config.secret_values()


def _carried(exc: BaseException) -> Any:
    """The GatesFailed in exc's chain (Prefect may wrap the flow's own exception), or None."""
    from cli.main import _context
    from flows.image import GatesFailed

    return _context(exc, GatesFailed)


def append_summary(path: Path, markdown: str) -> None:
    """Append to a GitHub step summary, keeping the whole file under its limit."""
    used = path.stat().st_size if path.exists() else 0
    text = markdown if len(markdown.encode()) + used < SUMMARY_LIMIT else ""
    if not text:
        print(
            f"[gate] step summary {path} is full ({used} bytes): not written",
            file=sys.stderr,
        )
        return
    with path.open("a", encoding="utf-8") as out:
        out.write(text + "\n")


def run(args: argparse.Namespace) -> int:
    """Run the gate and write the reports; the exit code says pass, fail or bad input."""
    try:
        env, secrets = _check_input(args)
    except ConfigError as exc:
        if args.json:
            print(
                json.dumps(
                    {
                        "status": "bad input",
                        "exit_code": EXIT_BAD_INPUT,
                        "error": {
                            "message": exc.message,
                            "expected": exc.expected,
                            "found": exc.found,
                            "remedy": exc.remedy,
                        },
                    },
                    indent=2,
                )
            )
        print(exc.render(), file=sys.stderr)
        return EXIT_BAD_INPUT
    from flows.image import build_and_gate

    started = time.monotonic()
    try:
        outcome = build_and_gate(
            env=env, push_image=args.push, project=requested_project(args), base=args.base
        )
    except Exception as raised:
        failed = _carried(raised)
        if failed is None:
            raise
        outcome = failed.outcome
    seconds = round(time.monotonic() - started, 2)
    gates: list[TimedGate] = [
        TimedGate(scrub(g.result, secrets), g.started_at) for g in outcome.gates
    ]
    code = EXIT_OK if outcome.passed else EXIT_FAILED
    built = outcome.built
    facts = {
        "env": env,
        "commit_sha": outcome.revision.sha,
        "dirty": outcome.revision.dirty,
        "base": {"ref": outcome.base.ref, "merge_base": outcome.base.sha},
        "image": built.reference if built else None,
        "digest": outcome.pushed.digest if outcome.pushed else None,
        "pushed": outcome.pushed is not None,
        "seconds": seconds,
    }
    if args.junit:
        path = Path(args.junit)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(junit_xml(gates))
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        commit = outcome.revision.sha[:12] + (" (dirty)" if outcome.revision.dirty else "")
        headline = f"{env} · {commit} · base {outcome.base.ref} · {seconds:.1f} s"
        append_summary(Path(os.environ["GITHUB_STEP_SUMMARY"]), summary_markdown(gates, headline))
    if args.json:
        body = report_json(gates, code, **facts)
        in_image = next((g for g in gates if g.result.gate == "in-image import"), None)
        body["gate"] = in_image.result.model_dump(mode="json") if in_image else None
        print(json.dumps(body, indent=2))
        return code
    for timed in gates:
        print(gate_text(timed.result) if timed.result.checks else timed.result.summary())
        for check in timed.result.failures:
            print(f"  - {check.name}: expected {check.expected}; found {check.found}")
            if check.remedy:
                print(f"    remedy: {check.remedy}")
        print()
    rows = [
        ("result", "PASSED" if code == EXIT_OK else "FAILED"),
        ("commit", facts["commit_sha"] + (" (dirty tree)" if facts["dirty"] else "")),
        ("base", f"{outcome.base.ref} (merge-base {outcome.base.sha[:12]})"),
        ("image", facts["image"] or "(not built)"),
        ("digest", outcome.pushed.by_digest if outcome.pushed else "(not pushed)"),
        ("total (with Prefect)", f"{seconds:.1f}s"),
    ]
    print(table(("", ""), rows))
    return code
