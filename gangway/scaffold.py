"""`gangway init`'s draft of a service's configuration: from a SAM template or from answers.

Everything a draft assumed is kept as a note for the user, and every value gangway cannot
know is a ``${VAR}`` reference to export, never an invented value. gangway/scaffold_files.py
renders and writes it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gangway.config import HANDLER, MAX_EVENT_BYTES, SECRET_REF
from gangway.errors import ConfigError
from gangway.sam_template import SamFunction, SamTemplate, dockerfile_cmd, intrinsic

DEFAULT_TIMEOUT, DEFAULT_MEMORY, DEFAULT_ARCH = 30, 512, "x86_64"  # gangway's FunctionSpec
SERVICE_NAME = re.compile(r"\A[a-z][a-z0-9-]{0,40}\Z")  # ServiceSpec.name's pattern


@dataclass
class FunctionDraft:
    """One function as `gangway init` will write it."""

    key: str
    handler: str | None
    handler_source: str
    name: str | None = None
    timeout: int = DEFAULT_TIMEOUT
    memory: int = DEFAULT_MEMORY
    architecture: str = DEFAULT_ARCH
    env: dict[str, str] = field(default_factory=dict)  # its own variables (<env>.toml)
    required_env: tuple[str, ...] = ()


@dataclass
class SmokeDraft:
    """A smoke case from an event file, without invented expectations."""

    name: str
    function: str
    event_file: str


@dataclass
class ServiceDraft:
    """The whole configuration `gangway init` writes, and what it assumed on the way."""

    name: str
    source: str
    context: str = "."
    dockerfile: str = "Dockerfile"
    functions: list[FunctionDraft] = field(default_factory=list)
    shared_env: dict[str, str] = field(default_factory=dict)  # [function_env]
    smoke: list[SmokeDraft] = field(default_factory=list)
    buckets: tuple[str, ...] = ()
    databases: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    exports: dict[str, str] = field(default_factory=dict)  # variable → what it stands for


def service_name(text: str) -> str:
    """text as a valid service.name (lowercase letters, digits, '-'), e.g. a folder's name."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    slug = slug if slug[:1].isalpha() else f"svc-{slug}".rstrip("-")
    return slug[:41].rstrip("-")


def _checked_name(name: str) -> str:
    if not SERVICE_NAME.fullmatch(name):
        raise ConfigError(
            f"service name {name!r} is not valid",
            expected="lowercase letters, digits and '-', starting with a letter (at most 41)",
            found=repr(name),
            remedy=f"pass --name {service_name(name)}",
        )
    return name


def env_variable(env: str, key: str) -> str:
    """The variable a value gangway cannot know is read from: GANGWAY_<ENV>_<KEY>."""
    return f"GANGWAY_{env.upper().replace('-', '_')}_{key.upper()}"


def handler_from_dockerfile(project: Path, context: str, dockerfile: str) -> tuple[str | None, str]:
    """(the handler the Dockerfile's CMD names or None, where it was read / why not)."""
    path = project / context / dockerfile
    shown = os.path.normpath(os.path.join(context, dockerfile))
    if not path.is_file():
        return None, f"no Dockerfile at {shown}"
    cmd = dockerfile_cmd(path.read_text(errors="replace"))
    if cmd is None:
        return None, f"{shown} sets no CMD in its final stage"
    where = f"{shown} line {cmd.line} (CMD)"
    if cmd.shell_form:
        where += '; shell form runs through /bin/sh -c: write CMD ["module.function"]'
    return cmd.handler, where


def check_handler(key: str, handler: str, source: str) -> str:
    """handler when it looks like ``module.function``, else ConfigError naming its source."""
    if not HANDLER.fullmatch(handler):
        raise ConfigError(
            f"function {key!r}: handler {handler!r} is not a Python handler",
            expected="module.function (e.g. app.lambda_handler)",
            found=f"{handler!r} from {source}",
            remedy=f"fix it there, or pass --function {key}=module.function",
        )
    return handler


def _inside(project: Path, path: Path, what: str) -> str:
    """path relative to the project root (posix), or ConfigError when it lies outside."""
    try:
        relative = path.resolve().relative_to(project.resolve())
    except ValueError:
        raise ConfigError(
            f"{what} is outside the project",
            expected=f"a path inside {project}",
            found=str(path.resolve()),
            remedy="run gangway init on the repository that holds the service's code",
        ) from None
    return relative.as_posix() or "."


class _Values:
    """Template values turned into gangway's, each assumption noted."""

    def __init__(self, draft: ServiceDraft, env: str, defaults: dict[str, Any]) -> None:
        self.draft, self.env, self.defaults = draft, env, defaults

    def resolved(self, value: Any) -> tuple[Any, str]:
        """(a literal, '' | where it came from), or (None, why not) for what is unknown."""
        found = intrinsic(value)
        if found is None:
            return value, ""
        if found.name == "Ref" and found.value in self.defaults:
            return self.defaults[found.value], f"parameter {found.value}'s Default"
        return None, str(found)

    def number(self, value: Any, where: str, default: int) -> int:
        literal, origin = self.resolved(value)
        if value is None:
            return default
        if isinstance(literal, str) and literal.strip().isdigit():
            literal = int(literal)
        if isinstance(literal, int) and not isinstance(literal, bool):
            if origin:
                self.draft.notes.append(f"{where} = {literal} from {origin}")
            return literal
        self.draft.notes.append(
            f"{where}: {origin or repr(value)} is not a literal number; gangway's default "
            f"{default} is written (change it in service.toml)"
        )
        return default

    def text(self, key: str, value: Any, where: str) -> str:
        literal, origin = self.resolved(value)
        if isinstance(literal, bool):
            return "true" if literal else "false"  # what CloudFormation passes
        if isinstance(literal, int | float | str):
            if origin:
                self.draft.notes.append(f"{where} = {literal!r} from {origin}")
            if isinstance(literal, str) and SECRET_REF.search(literal):
                self.draft.notes.append(
                    f"{where}: {literal!r} contains ${{…}}, which gangway reads as a reference "
                    "to an environment variable"
                )
            return str(literal)
        variable = env_variable(self.env, key)
        self.draft.exports[variable] = f"{where} ({origin or 'no literal value'})"
        return f"${{{variable}}}"


def draft_from_template(
    project: Path, template: SamTemplate, env: str, name: str | None
) -> ServiceDraft:
    """The configuration a SAM template describes; functions may lack a handler (ask for it)."""
    draft = ServiceDraft(
        name=_checked_name(name or service_name(project.resolve().name)),
        source=f"{_inside(project, template.path, 'the template')} (SAM)",
    )
    if name is None:
        draft.notes.append(
            f"service name {draft.name!r} from the project folder's name (--name to change)"
        )
    draft.notes.extend(template.skipped)
    if not template.functions:
        raise ConfigError(
            f"{template.path.name} declares no image function",
            expected="a resource of Type AWS::Serverless::Function with PackageType: Image",
            found=f"{len(template.skipped)} function(s) of another package type",
            remedy="gangway deploys container-image functions; answer with flags instead "
            "(--function KEY=HANDLER, --context, --dockerfile)",
        )
    builds = {(f.context, f.dockerfile) for f in template.functions}
    if len(builds) > 1:
        raise ConfigError(
            "the template's functions are built from different Dockerfiles or contexts",
            expected="one image for every function (gangway builds one image per service)",
            found="; ".join(
                f"{f.logical_id}: {f.context}/{f.dockerfile}" for f in template.functions
            ),
            remedy="share one Dockerfile between the functions (each with its own CMD via "
            "ImageConfig.Command), or describe each image as its own service",
        )
    first = template.functions[0]
    context_dir = template.path.parent / first.context
    draft.context = _inside(project, context_dir, f"DockerContext {first.context!r}")
    draft.dockerfile = first.dockerfile
    values = _Values(draft, env, template.parameter_defaults)
    shared = set.intersection(*(set(f.global_env_keys) for f in template.functions))
    for fn in template.functions:
        draft.functions.append(_function_from_template(project, draft, values, fn, shared))
    for key in sorted(shared):
        draft.shared_env[key] = values.text(
            key, first.env[key], f"Globals.Function.Environment.Variables.{key}"
        )
    draft.buckets, draft.databases = template.buckets, template.databases
    for found, what, key in (
        (draft.buckets, "bucket", "environment.bucket"),
        (draft.databases, "database", "environment.database"),
    ):
        if found:
            draft.notes.append(
                f"the template declares a {what} ({', '.join(found)}): left as a commented "
                f"{key} stub in the environment file, to fill in"
            )
    if not draft.buckets and not draft.databases:
        draft.notes.append("no database and no bucket: the template declares neither")
    return draft


def _function_from_template(
    project: Path, draft: ServiceDraft, values: _Values, fn: SamFunction, shared: set[str]
) -> FunctionDraft:
    where = f"{fn.logical_id}"
    command, origin = values.resolved(fn.command)
    if isinstance(command, str):
        handler: str | None = command
        source = f"{fn.logical_id}.ImageConfig.Command" + (f" ({origin})" if origin else "")
    else:
        if fn.command is not None:
            draft.notes.append(f"{where}.ImageConfig.Command: {origin} is not a literal")
        handler, source = handler_from_dockerfile(project, draft.context, draft.dockerfile)
    function_name, _ = values.resolved(fn.function_name)
    if fn.function_name is not None and not isinstance(function_name, str):
        draft.notes.append(
            f"{where}.FunctionName is not a literal ({fn.function_name}); the function is named "
            f"gangway's default <service>-<env>-<key>"
        )
    arch = DEFAULT_ARCH
    listed, arch_origin = values.resolved(fn.architectures)
    if fn.architectures is not None:
        if isinstance(listed, list) and listed and listed[0] in ("x86_64", "arm64"):
            arch = listed[0]
        else:
            draft.notes.append(
                f"{where}.Architectures: {arch_origin or listed!r} is not x86_64 or arm64; "
                f"{DEFAULT_ARCH} is written"
            )
    return FunctionDraft(
        key=fn.key,
        handler=handler,
        handler_source=source,
        name=function_name if isinstance(function_name, str) else None,
        timeout=values.number(fn.timeout, f"{where}.Timeout", DEFAULT_TIMEOUT),
        memory=values.number(fn.memory, f"{where}.MemorySize", DEFAULT_MEMORY),
        architecture=arch,
        env={
            key: values.text(key, value, f"{where}.Environment.Variables.{key}")
            for key, value in sorted(fn.env.items())
            if key not in shared
        },
        required_env=tuple(sorted(fn.env)),
    )


def draft_from_answers(
    project: Path, name: str, functions: dict[str, str], context: str, dockerfile: str
) -> ServiceDraft:
    """The configuration given as answers: name, function key → handler, build context."""
    draft = ServiceDraft(name=_checked_name(name), source="answers")
    draft.context = _inside(project, project / context, f"build context {context!r}")
    draft.dockerfile = dockerfile
    for key, handler in functions.items():
        draft.functions.append(FunctionDraft(key=key, handler=handler, handler_source="answers"))
    draft.notes.append(
        f"timeout {DEFAULT_TIMEOUT} s, memory {DEFAULT_MEMORY} MB, architecture {DEFAULT_ARCH} "
        "for every function (gangway's defaults; change them in service.toml)"
    )
    draft.notes.append(
        "no database, no bucket and no environment variables (add environment.database, "
        "environment.bucket, required_env and [functions.X.env] if the service uses them)"
    )
    return draft


def event_problem(path: Path) -> str:
    """Why path cannot be a smoke event ('' when it can): configuration refuses the same."""
    if path.stat().st_size > MAX_EVENT_BYTES:
        return f"larger than {MAX_EVENT_BYTES} bytes"
    try:
        event = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not JSON ({exc})"
    return "" if isinstance(event, dict) else "not a JSON object"


def add_events(project: Path, draft: ServiceDraft, files: list[tuple[str | None, Path]]) -> None:
    """Smoke cases for event files; (None, file) goes to the function its name names."""
    keys = [fn.key for fn in draft.functions]
    for key, path in files:
        relative = _inside(project, path, f"event file {path}")
        problem = event_problem(path) if path.is_file() else "no such file"
        if problem:
            if key is not None:
                raise ConfigError(
                    f"event file {relative} cannot be a smoke event",
                    expected="a JSON object of at most 256 KiB",
                    found=problem,
                    remedy=f"fix {relative} or drop --event {key}={relative}",
                )
            draft.notes.append(f"{relative} skipped: {problem}")
            continue
        if key is None:
            key = _function_for(path.stem, keys)
            if key is None:
                draft.notes.append(
                    f"{relative} skipped: its name names none of the functions "
                    f"({', '.join(keys)}); rename it to include one, or pass --event KEY=FILE"
                )
                continue
        elif key not in keys:
            raise ConfigError(
                f"--event {key}={relative} names an unknown function",
                expected=f"one of {', '.join(keys)}",
                found=key,
                remedy="use a function key the configuration declares",
            )
        taken = {case.name for case in draft.smoke}
        name = path.stem if path.stem not in taken else f"{key}: {path.stem}"
        draft.smoke.append(SmokeDraft(name=name, function=key, event_file=relative))


def _function_for(stem: str, keys: list[str]) -> str | None:
    if len(keys) == 1:
        return keys[0]
    flat = re.sub(r"[^a-z0-9]", "", stem.lower())
    named = [k for k in keys if k.replace("_", "") in flat]
    return max(named, key=len) if named else None
