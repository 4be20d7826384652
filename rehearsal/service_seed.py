"""Rehearse any service: create on the rehearsal stack what its configuration declares.

On real AWS the service's infrastructure code (Terraform, CDK, SAM) makes its functions,
aliases, log groups, bucket and database exist; gangway deploys code into them. On the
rehearsal stack this module stands in for that code, for a service in any checkout: exactly
what the service's deployments/ declares, and nothing it does not (no bucket, no database, no
command override, no secret it does not reference).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from gangway.config import (
    DeployConfig,
    apply_env_file,
    available_environments,
    deployments_dir,
    load_config,
)
from gangway.errors import StackError
from rehearsal import mariadb_setup, package_index, system
from rehearsal.aws_seed import seed_environment


@dataclass
class SeededService:
    """What seeding made sure of, per environment, and how long it took."""

    project: Path
    envs: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    def render(self) -> str:
        """A few lines for the terminal."""
        lines = [f"rehearsal seeded for {self.project} in {self.seconds:.1f}s"]
        for env, done in self.envs.items():
            lines.append(f"  {env}:")
            lines += [f"    {item}" for item in done]
        return "\n".join(lines)


def _require_stack() -> None:
    from rehearsal.stack import moto_ready

    missing = [
        name
        for name, ready in (
            ("dockerd", system.docker_ready),
            ("registry", system.registry_ready),
            ("moto", moto_ready),
        )
        if not ready()
    ]
    if missing:
        raise StackError(
            "the rehearsal stack is not up",
            expected="dockerd, the registry and the moto bridge answering",
            found=f"not answering: {', '.join(missing)}",
            remedy="run `gangway stack up` first",
        )


def seed_service(project: Path, envs: list[str] | None = None) -> SeededService:
    """Create what the service at project declares for each env (default: all of its envs)."""
    from rehearsal.stack import push_bootstrap, registry_login

    began = time.monotonic()
    _require_stack()
    directory = deployments_dir(project)
    envs = envs or available_environments(directory)
    if not envs:
        raise StackError(
            f"{project} declares no environment",
            expected=f"an <env>.toml beside {directory / 'service.toml'}",
            found="none",
            remedy="run `gangway init` there, or add an environment file",
        )
    result = SeededService(project=project)
    # Databases (only those declared) and the secrets the configuration references come
    # first: load_config needs the password variables this writes into stack.env.
    databases = mariadb_setup.ensure_databases(envs, directory=directory)
    apply_env_file()
    for env in envs:
        config = load_config(env, project=project)
        done: list[str] = []
        if config.environment.database is not None:
            db = config.environment.database
            done.append(
                f"database {db.name} (user {db.user}; password in stack.env as "
                f"{db.password_env})" if db.name in databases else f"database {db.name} "
                "(not on the rehearsal MariaDB: left alone)"
            )
        uri, _digest, _pushed = push_bootstrap(
            config.environment.registry, config.service.build.repository, registry_login(config)
        )
        done += seed_environment(config, uri)
        done += _fill_index(config)
        result.envs[env] = done
    result.seconds = time.monotonic() - began
    return result


def _fill_index(config: DeployConfig) -> list[str]:
    """Wheels for what the service's Dockerfile installs, into the stack's package index."""
    filled = package_index.fill_for_service(config)
    if not filled.requirements:
        return ["package index: nothing to fill (the Dockerfile installs no requirements)"]
    return [
        f"package index: {filled.wheels} wheels for {filled.platform} / Python {filled.python} "
        f"({'cached' if filled.cached else f'{filled.seconds:.1f}s'})"
    ]
