"""`gangway init`: answers from a SAM template, flags or questions; the files written; a report.

Questions are asked only on a terminal: elsewhere a missing answer is bad input (exit 2)
naming the flag that gives it, so that a script never hangs on a prompt.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from gangway.errors import ConfigError
from gangway.sam_template import load_template
from gangway.scaffold import (
    ServiceDraft,
    add_events,
    check_handler,
    draft_from_answers,
    draft_from_template,
    handler_from_dockerfile,
    service_name,
)
from gangway.scaffold_files import deployment_files, refuse_overwrite, write_deployments

Ask = Callable[[str], str]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `gangway init`."""
    parser.add_argument(
        "--project", help="the service's repository (default: $GANGWAY_PROJECT or .)"
    )
    parser.add_argument(
        "--template", metavar="PATH", help="SAM template (default: <project>/template.yaml)"
    )
    parser.add_argument("--env", default="dev", help="the environment file to write (default: dev)")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument("--name", help="service name (default with a template: the folder's)")
    parser.add_argument(
        "--function",
        action="append",
        default=[],
        metavar="KEY[=HANDLER]",
        help="a function and its handler (default handler: the Dockerfile's CMD); repeatable",
    )
    parser.add_argument("--context", help="docker build context, relative to the project")
    parser.add_argument("--dockerfile", help="Dockerfile, relative to the context")
    parser.add_argument(
        "--event",
        action="append",
        default=[],
        metavar="KEY=FILE",
        help="a smoke event (JSON) for function KEY, relative to the project; repeatable "
        "(default: events/*.json)",
    )


def _pairs(values: list[str], flag: str, need_value: bool) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for value in values:
        key, sep, rest = value.partition("=")
        if not key.strip() or (need_value and not rest.strip()):
            raise ConfigError(
                f"{flag} {value!r} is not KEY=VALUE",
                expected=f"{flag} KEY=VALUE",
                found=repr(value),
                remedy=f"e.g. {flag} price_alert=app.lambda_handler"
                if flag == "--function"
                else f"e.g. {flag} price_alert=events/alert.json",
            )
        found.append((key.strip(), rest.strip() if sep else None))
    return found


def _answer(ask: Ask | None, flag: str, question: str, default: str | None = None) -> str:
    if ask is None:
        if default is not None:
            return default
        raise ConfigError(
            f"gangway init needs {question} and stdin is not a terminal",
            expected=f"{flag} on the command line",
            found="no answer",
            remedy=f"pass {flag}",
        )
    shown = f" [{default}]" if default is not None else ""
    while True:
        try:
            reply = ask(f"{question}{shown}: ").strip() or default
        except EOFError:  # Ctrl-D: no answer is coming
            raise ConfigError(
                f"gangway init needs {question}",
                expected="an answer",
                found="end of input",
                remedy=f"pass {flag}",
            ) from None
        if reply:
            return reply


def _template_path(args: argparse.Namespace, project: Path) -> Path | None:
    if args.template:
        return Path(args.template).resolve()
    for name in ("template.yaml", "template.yml"):
        if (project / name).is_file():
            return project / name
    return None


def _from_answers(args: argparse.Namespace, project: Path, ask: Ask | None) -> ServiceDraft:
    name = args.name or _answer(
        ask, "--name", "the service's name", None if ask is None else service_name(project.name)
    )
    context = args.context or _answer(
        ask,
        "--context",
        "the docker build context",
        "." if (project / "Dockerfile").is_file() else None,
    )
    dockerfile = args.dockerfile or _answer(
        ask,
        "--dockerfile",
        "the Dockerfile (relative to the context)",
        "Dockerfile" if (project / context / "Dockerfile").is_file() else None,
    )
    functions = dict(_pairs(args.function, "--function", need_value=False))
    while not functions:
        reply = _answer(
            ask, "--function KEY=HANDLER", "a function as KEY=HANDLER (e.g. api=app.handler)"
        )
        functions = dict(_pairs([reply], "--function", need_value=False))
    handlers: dict[str, str] = {}
    for key, handler in functions.items():
        if handler is None:
            found, source = handler_from_dockerfile(project, context, dockerfile)
            handler = found or _answer(
                ask, f"--function {key}=HANDLER", f"{key}'s handler ({source})"
            )
        handlers[key] = handler
    return draft_from_answers(project, name, handlers, context, dockerfile)


def run_init(args: argparse.Namespace, ask: Ask | None) -> int:
    """`gangway init`: write deployments/ for the project; ask is None when not on a terminal."""
    project = Path(args.project or os.environ.get("GANGWAY_PROJECT") or ".").resolve()
    if not project.is_dir():
        raise ConfigError(
            "the project is not a directory",
            expected="the service's repository (--project DIR)",
            found=str(project),
            remedy="pass --project with the folder that holds the service's code",
        )
    refuse_overwrite(deployment_files(project, args.env), args.force)
    template = _template_path(args, project)
    if template is not None:
        given = [
            flag
            for flag, value in (("--context", args.context), ("--dockerfile", args.dockerfile))
            if value
        ]
        if given:
            raise ConfigError(
                f"{' and '.join(given)} given with a SAM template",
                expected="the build described once: by the template's Metadata",
                found=f"{template} and {' '.join(given)}",
                remedy="drop the flag, or edit the template's Metadata (Dockerfile, DockerContext)",
            )
        draft = draft_from_template(project, load_template(template), args.env, args.name)
        for key, handler in _pairs(args.function, "--function", need_value=True):
            fn = next((f for f in draft.functions if f.key == key), None)
            if fn is None:
                raise ConfigError(
                    f"--function {key}=… names a function the template does not declare",
                    expected=", ".join(f.key for f in draft.functions),
                    found=key,
                    remedy="use a key listed above",
                )
            fn.handler, fn.handler_source = handler or "", "--function"
    else:
        draft = _from_answers(args, project, ask)
    for fn in draft.functions:
        if not fn.handler:
            fn.handler = _answer(
                ask, f"--function {fn.key}=HANDLER", f"{fn.key}'s handler ({fn.handler_source})"
            )
            fn.handler_source = "your answer"
        check_handler(fn.key, fn.handler, fn.handler_source)
    events = [
        (key, (project / path).resolve())
        for key, path in _pairs(args.event, "--event", need_value=True)
        if path
    ]
    if not events:
        events = [(None, path) for path in sorted((project / "events").glob("*.json"))]
    add_events(project, draft, events)
    written = write_deployments(project, args.env, draft, args.force)
    _report(draft, project, written)
    return 0


def _report(draft: ServiceDraft, project: Path, written: list[Path]) -> None:
    print(f"gangway init: {draft.name} from {draft.source}")
    for path in written:
        print(f"  wrote {path.relative_to(project)}")
    rows = [f"{fn.key}: {fn.handler} (from {fn.handler_source})" for fn in draft.functions]
    rows += [f"smoke case {c.name!r} → {c.function} with {c.event_file}" for c in draft.smoke]
    print("functions and smoke cases:")
    print("\n".join(f"  - {row}" for row in rows))
    if draft.notes:
        print("assumed:")
        print("\n".join(f"  - {note}" for note in draft.notes))
    if draft.exports:
        print("export before deploying (values the template does not give):")
        print("\n".join(f"  export {var}=...   # {why}" for var, why in draft.exports.items()))
    env = written[1].stem
    print(
        "next: review the files (expectations for the smoke cases, app_logs), then "
        f"`gangway deploy --project {project} --env {env}` (on the rehearsal stack, first "
        f"`gangway stack seed --project {project} --env {env}`)"
    )


def stdin_ask() -> Ask | None:
    """input() when stdin is a terminal, else None (missing answers are then errors)."""
    return input if sys.stdin.isatty() else None
