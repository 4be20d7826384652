"""Reading Lambda: what each function runs now and where its alias sends traffic.

Also the shared vocabulary of the Lambda boundary modules (lambda_config_gate, lambda_publish,
lambda_alias): the AliasState and LiveFunction models, one-call wrappers that turn botocore
failures into AwsError, and the messages for a missing function or alias. Function
environment values are secrets: they stay in ``SecretStr`` and only their names ever reach a
message.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from gangway.config import DeployConfig, ResolvedFunction
from gangway.errors import AwsError
from tasks.aws import aws_error, client, error_code

LATEST = "$LATEST"
NOT_FOUND = "ResourceNotFoundException"
PRECONDITION = "PreconditionFailedException"
INFRA = "gangway deploys code, not infrastructure"
WEIGHT_TOLERANCE = 1e-6


class AliasState(BaseModel):
    """Where an alias sends traffic: its version plus any additional weighted versions."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str
    weights: dict[str, float] = Field(default_factory=dict)
    revision_id: str = ""

    def routes_like(self, other: AliasState) -> bool:
        """True when both send traffic to the same versions with the same weights."""
        if self.version != other.version or set(self.weights) != set(other.weights):
            return False
        return all(
            math.isclose(w, other.weights[v], abs_tol=WEIGHT_TOLERANCE)
            for v, w in self.weights.items()
        )

    def routed(self) -> set[str]:
        """Every version this alias sends traffic to."""
        return {self.version, *self.weights}

    def describe(self) -> str:
        """e.g. 'live → 3' or 'live → 3 + {4: 10%}' (for messages)."""
        if not self.weights:
            return f"{self.name} → {self.version}"
        extra = ", ".join(f"{v}: {w:.0%}" for v, w in sorted(self.weights.items()))
        return f"{self.name} → {self.version} + {{{extra}}}"


class LiveFunction(BaseModel):
    """One function as Lambda reports it now ($LATEST configuration, code and alias)."""

    model_config = ConfigDict(frozen=True)

    key: str
    name: str
    arn: str
    package_type: str
    image_uri: str
    code_sha256: str
    env: dict[str, SecretStr]
    timeout: int
    memory: int
    architectures: tuple[str, ...]
    state: str
    last_update_status: str
    alias: AliasState
    image_config: dict[str, Any] = Field(default_factory=dict)


# --- calling AWS ----------------------------------------------------------------------------


def call(
    operation: Callable[..., dict[str, Any]],
    action: str,
    resource: str,
    known: Mapping[str, AwsError] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run one API call; known error codes get their own message, the rest aws_error's."""
    try:
        return operation(**kwargs)
    except (ClientError, BotoCoreError) as exc:
        special = (known or {}).get(error_code(exc))
        raise (special or aws_error(exc, action, resource)) from exc


def missing_function(name: str) -> AwsError:
    """The error for a function that does not exist (infrastructure creates it, not gangway)."""
    return AwsError(
        f"function {name} does not exist",
        expected=f"Lambda function {name} (PackageType=Image)",
        found="ResourceNotFoundException",
        remedy=f"create it with your infrastructure tool ({INFRA}), or fix its name in config",
    )


def missing_alias(alias: str, name: str) -> AwsError:
    """The error for an alias that does not exist (infrastructure creates it, not gangway)."""
    return AwsError(
        f"alias {alias} of function {name} does not exist",
        expected=f"alias {alias} on {name}, pointing at the version serving traffic",
        found="ResourceNotFoundException",
        remedy=f"create alias {alias} with your infrastructure tool ({INFRA}), "
        "or fix environment.alias in config",
    )


# --- reading --------------------------------------------------------------------------------


def alias_state(response: Mapping[str, Any]) -> AliasState:
    """An AliasState from a GetAlias/UpdateAlias response."""
    routing = response.get("RoutingConfig") or {}
    weights = routing.get("AdditionalVersionWeights") or {}
    return AliasState(
        name=response["Name"],
        version=response["FunctionVersion"],
        weights={str(v): float(w) for v, w in weights.items()},
        revision_id=response.get("RevisionId", ""),
    )


def get_alias(lam: Any, alias: str, name: str) -> AliasState:
    """Alias alias of function name, read with the client lam."""
    response = call(
        lam.get_alias,
        "lambda:GetAlias",
        f"{name}:{alias}",
        {NOT_FOUND: missing_alias(alias, name)},
        FunctionName=name,
        Name=alias,
    )
    return alias_state(response)


def get_function(lam: Any, name: str, qualifier: str = LATEST) -> dict[str, Any]:
    """GetFunction of name:qualifier (configuration and code), read with the client lam."""
    return call(
        lam.get_function,
        "lambda:GetFunction",
        f"{name}:{qualifier}",
        {NOT_FOUND: missing_function(name if qualifier == LATEST else f"{name}:{qualifier}")},
        FunctionName=name,
        Qualifier=qualifier,
    )


def env_of(conf: Mapping[str, Any]) -> dict[str, str]:
    """The environment variables of a function configuration (values are secrets)."""
    return dict((conf.get("Environment") or {}).get("Variables") or {})


def image_config(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The ImageConfig (entry point, command, workdir) of a function configuration."""
    return dict((conf.get("ImageConfigResponse") or {}).get("ImageConfig") or {})


def _describe(lam: Any, fn: ResolvedFunction, alias: str) -> LiveFunction:
    # GetFunction returns the $LATEST configuration and the code location in one call.
    response = get_function(lam, fn.name)
    conf = response["Configuration"]
    return LiveFunction(
        key=fn.key,
        name=fn.name,
        arn=conf.get("FunctionArn", "").removesuffix(f":{LATEST}"),
        package_type=conf.get("PackageType", "Zip"),
        image_uri=response.get("Code", {}).get("ImageUri", ""),
        code_sha256=conf.get("CodeSha256", ""),
        env={k: SecretStr(v) for k, v in env_of(conf).items()},
        timeout=conf.get("Timeout", 0),
        memory=conf.get("MemorySize", 0),
        architectures=tuple(conf.get("Architectures") or ("x86_64",)),
        state=conf.get("State", ""),
        last_update_status=conf.get("LastUpdateStatus", ""),
        alias=get_alias(lam, alias, fn.name),
        image_config=image_config(conf),
    )


def describe_functions(config: DeployConfig) -> dict[str, LiveFunction]:
    """Every configured function as deployed now, keyed like config.functions."""
    lam = client(config, "lambda")
    alias = config.environment.alias
    functions = list(config.functions.values())
    with ThreadPoolExecutor(max_workers=min(8, len(functions) or 1)) as pool:
        # map() re-raises the first failure in config order, so errors are deterministic.
        described = list(pool.map(lambda fn: _describe(lam, fn, alias), functions))
    return {live.key: live for live in described}


def read_alias(config: DeployConfig, name: str) -> AliasState:
    """The environment's alias of function name, as Lambda reports it now."""
    return get_alias(client(config, "lambda"), config.environment.alias, name)
