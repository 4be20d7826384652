"""The configuration contract: the env keys each function's handler requires, against what
every environment declares, judged before anything is built into an environment.

Required keys are ``functions.X.required_env``, the list the in-image gate's start-up check
and the deploy's config gate (tasks/lambda_config_gate.py) also read, as each environment
resolves it (an <env>.toml may override it). What an environment *declares* comes from a
source, one ``DeclaredEnv`` per environment: today ``deployments/<env>.toml`` ([function_env]
and [functions.X.env], keys only). A Terraform source (a ``terraform/`` folder, issue 15) is one
more function of the ``KeySource`` shape whose DeclaredEnvs go to the same ``contract_gate``.
Keys only: values may be secrets, and no source reads them (``${VAR}`` stays unresolved).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from gangway.config import available_environments, deployments_dir, read_settings
from gangway.evidence import Check, GateResult, Strength


@dataclass(frozen=True)
class DeclaredEnv:
    """What one source says one environment gives each function, and what each requires."""

    env: str
    source: str  # where it was read, e.g. "deployments/staging.toml"
    required: Mapping[str, tuple[str, ...]]  # function key → keys its handler requires
    declared: Mapping[str, frozenset[str]]  # function key → keys the source sets (no values)


# (project root, environment) → that environment's declaration in one source.
KeySource = Callable[[Path, str], DeclaredEnv]


def deployments_source(root: Path, env: str) -> DeclaredEnv:
    """deployments/<env>.toml (merged with service.toml and GANGWAY_* overrides): the keys of
    [function_env] and [functions.X.env]. ConfigError when the environment does not validate."""
    settings = read_settings(env, root=root)
    directory = deployments_dir(root)
    try:
        shown = str((directory / f"{env}.toml").relative_to(root))
    except ValueError:
        shown = str(directory / f"{env}.toml")
    common = set(settings.function_env)
    return DeclaredEnv(
        env=env,
        source=shown,
        required={key: tuple(fn.required_env) for key, fn in settings.functions.items()},
        declared={key: frozenset(common | set(fn.env)) for key, fn in settings.functions.items()},
    )


def terraform_source(root: Path, env: str) -> DeclaredEnv:
    """terraform/ (issue 15): the keys of each aws_lambda_function's environment variables for
    env, and the keys each handler requires (service.toml). ConfigError when unreadable."""
    from gangway import terraform

    settings = read_settings(env, root=root)  # the required keys, and a declared-twice check
    declaration = terraform.read(root, env)
    if declaration is None:
        return deployments_source(root, env)
    shown = f"{terraform.FOLDER}/ ({declaration.var_file.name if declaration.var_file else ''})"
    return DeclaredEnv(
        env=env,
        source=shown,
        required={key: tuple(fn.required_env) for key, fn in settings.functions.items()},
        declared={key: frozenset(fn.env) for key, fn in declaration.functions.items()},
    )


def default_sources(root: Path) -> tuple[KeySource, ...]:
    """Where a project declares its functions' env: terraform/ when it has one, else TOML."""
    from gangway import terraform

    return (terraform_source,) if terraform.folder(root) else (deployments_source,)


def declarations(
    root: Path,
    envs: Iterable[str] | None = None,
    sources: Sequence[KeySource] | None = None,
) -> list[DeclaredEnv]:
    """Every environment's declaration in every source (envs: default, every <env>.toml;
    sources: default, the project's one declared source)."""
    sources = default_sources(root) if sources is None else sources
    chosen = list(envs) if envs is not None else available_environments(deployments_dir(root))
    return [source(root, env) for env in chosen for source in sources]


def contract_gate(declared: Sequence[DeclaredEnv]) -> GateResult:
    """One check per environment, source and function: every required key is declared (pure)."""
    started = time.monotonic()
    checks: list[Check] = []
    for item in declared:
        for key, required in item.required.items():
            name = f"{item.env} · {key}: required env declared ({item.source})"
            have = item.declared.get(key)
            if have is None:
                checks.append(
                    Check(
                        name=name,
                        ok=False,
                        expected=f"function {key} declared in {item.source}",
                        found="no such function there",
                        remedy=f"declare function {key} in {item.source}",
                        evidence={"env": item.env, "function": key, "source": item.source},
                    )
                )
                continue
            missing = [k for k in required if k not in have]
            checks.append(
                Check(
                    name=name,
                    ok=not missing,
                    expected="declared: " + (", ".join(required) or "(nothing required)"),
                    found=f"missing in {item.env}: {', '.join(missing)}"
                    if missing
                    else f"all {len(required)} declared",
                    remedy=""
                    if not missing
                    else f"declare {', '.join(missing)} for {item.env} in {item.source} "
                    + (
                        f"(environment.variables of aws_lambda_function.{key}; a secret as a "
                        "sensitive variable), or "
                        if item.source.startswith("terraform/")
                        else f'([function_env] or [functions.{key}.env]; a secret as "${{VAR}}"), '
                        "or "
                    )
                    + f"drop it from functions.{key}.required_env if the handler no longer "
                    "reads it",
                    evidence={
                        "env": item.env,
                        "function": key,
                        "source": item.source,
                        "missing": missing,
                    },
                )
            )
    return GateResult(
        gate="config contract",
        boundary="configuration",
        strength=Strength.CONTENT,
        checks=tuple(checks),
        skipped_reason="" if declared else "no environment declared under deployments/",
        duration_s=time.monotonic() - started,
    )
