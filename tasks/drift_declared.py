"""What is declared for each function of one environment, as the drift comparison reads it.

The DeployConfig already carries the one declared source's values: terraform/ where the
project has one (gangway/config.py's terraform_owned), else deployments/<env>.toml. This
module names that source and its owner, splits secret keys from plain ones, and hashes every
declared value with the run's key (the value itself never leaves).
"""

from __future__ import annotations

from dataclasses import dataclass

from gangway import terraform
from gangway.config import SECRET_REF, DeployConfig, ResolvedFunction
from tasks.drift_compare import DeclaredFunction, Owner, keyed_hash

SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN", "KEY")


@dataclass(frozen=True)
class Declared:
    """One environment's declared functions, and which source and owner they come from."""

    functions: tuple[DeclaredFunction, ...]
    owner: Owner
    source: str
    plain: dict[str, frozenset[str]]  # function key → keys whose values are not secret


def is_secret(fn: ResolvedFunction, key: str) -> bool:
    """A ${VAR} reference (a sensitive Terraform variable is one), or a name that says so."""
    raw = fn.spec.env.get(key, "")
    return bool(SECRET_REF.search(raw)) or any(w in key.upper() for w in SECRET_WORDS)


def source_of(config: DeployConfig) -> tuple[Owner, str]:
    """(owner, shown source) of the fields Terraform owns, for this project and environment."""
    env = config.environment.name
    if terraform.folder(config.root) is not None:
        return Owner.TERRAFORM, f"{terraform.FOLDER}/ ({terraform.VAR_FILES}/{env}.tfvars)"
    return Owner.CONFIG, f"deployments/{env}.toml"


def declared(config: DeployConfig, hash_key: bytes) -> Declared:
    """Every configured function's declared settings, env values as keyed hashes."""
    owner, source = source_of(config)
    functions = []
    plain: dict[str, frozenset[str]] = {}
    for key, fn in config.functions.items():
        values = fn.env_plain()
        plain[key] = frozenset(k for k in values if not is_secret(fn, k))
        functions.append(
            DeclaredFunction(
                key=key,
                name=fn.name,
                required=tuple(fn.spec.required_env),
                env_hashes={k: keyed_hash(hash_key, v) for k, v in values.items()},
                env_plain={k: v for k, v in values.items() if k in plain[key]},
                timeout=fn.spec.timeout,
                memory=fn.spec.memory,
                architecture=fn.spec.architecture,
            )
        )
    return Declared(functions=tuple(functions), owner=owner, source=source, plain=plain)
