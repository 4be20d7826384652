"""`gangway init`'s files: a draft (gangway/scaffold.py) as service.toml and <env>.toml.

Written as text rather than through a TOML writer, so that the files carry the comments a
user needs: where each value came from, what to add, how to point at real AWS.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from gangway.config import ENV_NAME
from gangway.errors import ConfigError
from gangway.scaffold import ServiceDraft, env_variable

REHEARSAL = {
    "registry": "127.0.0.1:5000",
    "region": "ap-southeast-1",
    "endpoint_url": "http://127.0.0.1:4566",
}
BARE_KEY = re.compile(r"\A[A-Za-z0-9_-]+\Z")


def _text(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string


def _key(key: str) -> str:
    return key if BARE_KEY.fullmatch(key) else _text(key)


def _strings(values: tuple[str, ...] | list[str]) -> str:
    return "[" + ", ".join(_text(v) for v in values) + "]"


def render_service(draft: ServiceDraft) -> str:
    """deployments/service.toml for the draft: what is deployed."""
    today = datetime.now(UTC).date().isoformat()
    lines = [
        f"# What is deployed: written by `gangway init` from {draft.source} on {today}.",
        "# Paths are relative to the project root (the service's repository). Where it is",
        "# deployed lives in <env>.toml beside this file, which may override any key below.",
        "",
        "[service]",
        f"name = {_text(draft.name)}",
    ]
    if draft.databases:
        lines += [
            "# The template declares a database "
            f"({', '.join(draft.databases)}): alembic migrations, if the service has them.",
            '# migrations = "migrations"',
        ]
    lines += [
        "",
        "[service.build]",
        f"context = {_text(draft.context)}",
        f"dockerfile = {_text(draft.dockerfile)}  # relative to the context",
        f"repository = {_text(draft.name)}",
    ]
    for fn in draft.functions:
        lines += ["", f"[functions.{_key(fn.key)}]", f"handler = {_text(fn.handler or '')}"]
        lines[-1] += f"  # from {fn.handler_source}"
        if fn.name:
            lines.append(f"name = {_text(fn.name)}")
        lines += [
            f"required_env = {_strings(fn.required_env)}",
            f"timeout = {fn.timeout}",
            f"memory = {fn.memory}",
            f"architecture = {_text(fn.architecture)}",
            "# app_logs = false  # declare it when the function writes no application log lines",
        ]
    lines += [
        "",
        "# Smoke cases: invoked after traffic moves; `{correlation_id}` in an event is replaced",
        "# per deploy. No expectations were invented: under each case, say what the response",
        "# must show: status_code (a proxy response's), expect (top-level or body fields with",
        "# their values), expect_fields (fields that must be present).",
    ]
    if not draft.smoke:
        lines += [
            "# [[smoke]]",
            '# name = "first"',
            f'# function = "{draft.functions[0].key if draft.functions else "KEY"}"',
            '# event_file = "events/first.json"',
        ]
    for case in draft.smoke:
        lines += [
            "",
            "[[smoke]]",
            f"name = {_text(case.name)}",
            f"function = {_text(case.function)}",
            f"event_file = {_text(case.event_file)}",
            "# status_code = 200",
            '# expect = { field = "value" }',
            '# expect_fields = ["field"]',
        ]
    return "\n".join(lines) + "\n"


def render_env(draft: ServiceDraft, env: str) -> str:
    """deployments/<env>.toml for the draft: where it is deployed (the rehearsal stack)."""
    variable = env_variable(env, "DB_PASSWORD")
    lines = [
        f"# The {env!r} environment of {draft.name}, written by `gangway init`. It targets the",
        "# local rehearsal stack (`gangway stack up`): its registry, moto for AWS, and image",
        "# builds on the host network so that pip reaches the stack's local package index.",
        "# For real AWS: set registry to your ECR registry (ACCOUNT.dkr.ecr.REGION.amazonaws.com),",
        "# remove aws.endpoint_url, set aws.region to your functions' region and remove",
        "# [service.build] network. ${VAR} values are read from the environment, never logged.",
        "",
        "[environment]",
        f"name = {_text(env)}",
        'alias = "live"',
        f"registry = {_text(REHEARSAL['registry'])}",
    ]
    if draft.buckets:
        lines += [
            f"# The template declares a bucket ({', '.join(draft.buckets)}): name it here for the",
            "# ground-truth checks of objects.",
            f'# bucket = "{draft.name}-{env}"',
        ]
    lines += [
        "",
        "[environment.aws]",
        f"region = {_text(REHEARSAL['region'])}",
        f"endpoint_url = {_text(REHEARSAL['endpoint_url'])}",
        "",
        "# The evidence a deploy here must reach: smoke, observability or ground-truth.",
        "# [environment.deploy]",
        '# require = "smoke"',
    ]
    if draft.databases:
        db = draft.name.replace("-", "_") + "_" + env.replace("-", "_")
        lines += [
            "",
            f"# The template declares a database ({', '.join(draft.databases)}): describe it",
            "# here (MySQL; the password is read from the named variable).",
            "# [environment.database]",
            '# host = "127.0.0.1"',
            "# port = 3306",
            f'# name = "{db}"',
            f'# user = "{db}"',
            f'# password_env = "{variable}"',
        ]
    lines += ["", "[service.build]", 'network = "host"']
    if draft.shared_env:
        lines += ["", "# Set on every function; a function's own [functions.X.env] overrides."]
        lines += ["[function_env]"] + [
            f"{_key(k)} = {_text(v)}" for k, v in draft.shared_env.items()
        ]
    for fn in draft.functions:
        if fn.env:
            lines += ["", f"[functions.{_key(fn.key)}.env]"]
            lines += [f"{_key(k)} = {_text(v)}" for k, v in fn.env.items()]
    return "\n".join(lines) + "\n"


def deployment_files(project: Path, env: str) -> tuple[Path, Path]:
    """The two files `gangway init` writes: deployments/service.toml and <env>.toml."""
    if not ENV_NAME.fullmatch(env):
        raise ConfigError(
            f"environment name {env!r} is not valid",
            expected="lowercase letters, digits and '-' (e.g. dev)",
            found=repr(env),
            remedy="pass --env NAME",
        )
    directory = project / "deployments"
    return directory / "service.toml", directory / f"{env}.toml"


def refuse_overwrite(files: tuple[Path, ...], force: bool) -> None:
    """ConfigError when any of files exists and force is not set."""
    existing = [str(path) for path in files if path.exists()]
    if existing and not force:
        raise ConfigError(
            "gangway init would overwrite existing configuration",
            expected="no deployments/service.toml or <env>.toml yet",
            found=", ".join(existing),
            remedy="pass --force to replace them, or edit them by hand",
        )


def write_deployments(project: Path, env: str, draft: ServiceDraft, force: bool) -> list[Path]:
    """Write service.toml and <env>.toml for the draft; refuses to overwrite without force."""
    service_file, env_file = deployment_files(project, env)
    refuse_overwrite((service_file, env_file), force)
    missing = [fn.key for fn in draft.functions if not fn.handler]
    if missing:
        raise ConfigError(
            f"no handler for function(s) {', '.join(missing)}",
            expected="a handler for every function",
            found="none",
            remedy=f"pass --function {missing[0]}=module.function",
        )
    service_file.parent.mkdir(parents=True, exist_ok=True)
    service_file.write_text(render_service(draft))
    env_file.write_text(render_env(draft, env))
    return [service_file, env_file]
