"""The pipeline → Lambda boundary for code, versions and aliases.

Reads what is deployed, gates its configuration against what the code declares, publishes a
version that runs exactly the tested image digest, and moves the environment's alias. Every
write is read back: a version counts only when it reports the digest it was published with,
and a rollback only when the alias is seen back where it was. Function environment values are
secrets: they stay in ``SecretStr`` and only their names ever reach a message.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError, WaiterError
from botocore.exceptions import ConnectionError as BotoConnectionError
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from gangway.config import DeployConfig, ResolvedFunction
from gangway.errors import AwsError
from gangway.evidence import Check, GateResult, Strength
from tasks.aws import BOTO, THROTTLING_CODES, aws_error, client, error_code

LATEST = "$LATEST"
NOT_FOUND = "ResourceNotFoundException"
PRECONDITION = "PreconditionFailedException"
POLL_DELAY_S = 1
DEFAULT_WAIT_S = 180.0
# A re-run after a crash finds its version among the newest; scanning every version of a
# long-lived function would cost one GetFunction each for no gain.
REUSE_SCAN_LIMIT = 25
WEIGHT_TOLERANCE = 1e-6
INFRA = "gangway deploys code, not infrastructure"
RESTORE_BACKOFF_BASE_S = 0.5
RESTORE_BACKOFF_CAP_S = 5.0
# Short on purpose: UpdateAlias/GetAlias answer in milliseconds; a hung call must not eat
# the window. Each attempt is one request (restore_client).
RESTORE_CONNECT_TIMEOUT_S = 3
RESTORE_READ_TIMEOUT_S = 10


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


class DeployedVersion(BaseModel):
    """A published version running image_uri, and where the alias was before traffic moves."""

    model_config = ConfigDict(frozen=True)

    key: str
    name: str
    version: str
    image_uri: str
    code_sha256: str
    reused: bool
    previous_alias: AliasState
    duration_s: float = 0.0


# --- calling AWS ----------------------------------------------------------------------------


def _call(
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


def _missing_function(name: str) -> AwsError:
    return AwsError(
        f"function {name} does not exist",
        expected=f"Lambda function {name} (PackageType=Image)",
        found="ResourceNotFoundException",
        remedy=f"create it with your infrastructure tool ({INFRA}), or fix its name in config",
    )


def _missing_alias(alias: str, name: str) -> AwsError:
    return AwsError(
        f"alias {alias} of function {name} does not exist",
        expected=f"alias {alias} on {name}, pointing at the version serving traffic",
        found="ResourceNotFoundException",
        remedy=f"create alias {alias} with your infrastructure tool ({INFRA}), "
        "or fix environment.alias in config",
    )


def _alias_moved(alias: str, name: str) -> AwsError:
    return AwsError(
        f"the alias changed under us: another deploy? ({name}:{alias})",
        expected=f"{name}:{alias} unchanged since it was read (same RevisionId)",
        found="PreconditionFailedException: the RevisionId no longer matches",
        remedy="check who else is deploying this environment; re-read the alias and re-run",
    )


# --- reading --------------------------------------------------------------------------------


def _alias_state(response: Mapping[str, Any]) -> AliasState:
    routing = response.get("RoutingConfig") or {}
    weights = routing.get("AdditionalVersionWeights") or {}
    return AliasState(
        name=response["Name"],
        version=response["FunctionVersion"],
        weights={str(v): float(w) for v, w in weights.items()},
        revision_id=response.get("RevisionId", ""),
    )


def _get_alias(lam: Any, alias: str, name: str) -> AliasState:
    response = _call(
        lam.get_alias,
        "lambda:GetAlias",
        f"{name}:{alias}",
        {NOT_FOUND: _missing_alias(alias, name)},
        FunctionName=name,
        Name=alias,
    )
    return _alias_state(response)


def _get_function(lam: Any, name: str, qualifier: str = LATEST) -> dict[str, Any]:
    return _call(
        lam.get_function,
        "lambda:GetFunction",
        f"{name}:{qualifier}",
        {NOT_FOUND: _missing_function(name if qualifier == LATEST else f"{name}:{qualifier}")},
        FunctionName=name,
        Qualifier=qualifier,
    )


def _describe(lam: Any, fn: ResolvedFunction, alias: str) -> LiveFunction:
    # GetFunction returns the $LATEST configuration and the code location in one call.
    response = _get_function(lam, fn.name)
    conf = response["Configuration"]
    return LiveFunction(
        key=fn.key,
        name=fn.name,
        arn=conf.get("FunctionArn", "").removesuffix(f":{LATEST}"),
        package_type=conf.get("PackageType", "Zip"),
        image_uri=response.get("Code", {}).get("ImageUri", ""),
        code_sha256=conf.get("CodeSha256", ""),
        env={k: SecretStr(v) for k, v in _env_of(conf).items()},
        timeout=conf.get("Timeout", 0),
        memory=conf.get("MemorySize", 0),
        architectures=tuple(conf.get("Architectures") or ("x86_64",)),
        state=conf.get("State", ""),
        last_update_status=conf.get("LastUpdateStatus", ""),
        alias=_get_alias(lam, alias, fn.name),
        image_config=_image_config(conf),
    )


def _env_of(conf: Mapping[str, Any]) -> dict[str, str]:
    return dict((conf.get("Environment") or {}).get("Variables") or {})


def _image_config(conf: Mapping[str, Any]) -> dict[str, Any]:
    return dict((conf.get("ImageConfigResponse") or {}).get("ImageConfig") or {})


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
    return _get_alias(client(config, "lambda"), config.environment.alias, name)


# --- the configuration gate -----------------------------------------------------------------


def _check(
    fn: ResolvedFunction,
    what: str,
    ok: bool,
    expected: str,
    found: str,
    remedy: str,
    **evidence: Any,
) -> Check:
    return Check(
        name=f"{fn.key} ({fn.name}): {what}",
        ok=ok,
        expected=expected,
        found=found,
        remedy="" if ok else remedy,
        evidence={"function": fn.name, "key": fn.key, **evidence},
    )


def _env_checks(fn: ResolvedFunction, live: LiveFunction) -> list[Check]:
    """Required keys are present; declared values match. Names only: values are secrets."""
    missing = [k for k in fn.spec.required_env if k not in live.env]
    absent = sorted(k for k in fn.env if k not in live.env and k not in missing)
    differ = sorted(
        k
        for k, v in fn.env.items()
        if k in live.env and live.env[k].get_secret_value() != v.get_secret_value()
    )
    drift = "; ".join(
        f"{what}: {', '.join(keys)}"
        for what, keys in (("differ", differ), ("absent", absent))
        if keys
    )
    return [
        _check(
            fn,
            "required env",
            not missing,
            "set: " + ", ".join(fn.spec.required_env),
            "missing: " + ", ".join(missing) if missing else "all set",
            f"add {', '.join(missing)} to the function's environment (infrastructure config)",
            missing=missing,
        ),
        _check(
            fn,
            "declared env values",
            not drift,
            "values as declared in config",
            drift or "as declared",
            f"set {', '.join(differ + absent)} to the declared values (infrastructure config), "
            f"or change functions.{fn.key}.env / function_env",
            differ=differ,
            absent=absent,
        ),
    ]


def _runtime_checks(fn: ResolvedFunction, live: LiveFunction) -> list[Check]:
    """Package type, timeout, memory and architecture as declared."""
    spec = fn.spec
    return [
        _check(
            fn,
            "package type",
            live.package_type == "Image",
            "Image",
            live.package_type,
            "recreate the function as a container-image function (infrastructure config)",
        ),
        _check(
            fn,
            "timeout",
            live.timeout == spec.timeout,
            f"{spec.timeout} s",
            f"{live.timeout} s",
            f"set the function's timeout to {spec.timeout} s (infrastructure config), or "
            f"change functions.{fn.key}.timeout if the design changed",
        ),
        _check(
            fn,
            "memory",
            live.memory == spec.memory,
            f"{spec.memory} MB",
            f"{live.memory} MB",
            f"set the function's memory to {spec.memory} MB (infrastructure config), or "
            f"change functions.{fn.key}.memory if the design changed",
        ),
        _check(
            fn,
            "architecture",
            list(live.architectures) == [spec.architecture],
            f"[{spec.architecture}]",
            f"[{', '.join(live.architectures)}]",
            f"set Architectures=[{spec.architecture}] (infrastructure config) to match the "
            "image the pipeline builds",
        ),
    ]


def config_gate(config: DeployConfig, live: Mapping[str, LiveFunction]) -> GateResult:
    """Compare each deployed function's configuration with what config declares (pure)."""
    started = time.monotonic()
    checks: list[Check] = []
    for key, fn in config.functions.items():
        found = live.get(key)
        if found is None:
            checks.append(
                _check(
                    fn,
                    "exists",
                    False,
                    "described",
                    "not described",
                    "describe every configured function before the gate",
                )
            )
            continue
        checks.extend(_runtime_checks(fn, found) + _env_checks(fn, found))
    return GateResult(
        gate="function config",
        boundary="deployment",
        strength=Strength.CONTENT,
        checks=tuple(checks),
        duration_s=time.monotonic() - started,
    )


# --- publishing a version -------------------------------------------------------------------


def _runtime_differences(live_fn: LiveFunction, conf: Mapping[str, Any]) -> list[str]:
    """What differs between live_fn's configuration and conf; names only, never env values."""
    env = _env_of(conf)
    wanted = {k: v.get_secret_value() for k, v in live_fn.env.items()}
    diffs = []
    changed = sorted(k for k in wanted.keys() | env.keys() if wanted.get(k) != env.get(k))
    if changed:
        diffs.append("env " + ", ".join(changed))
    pairs = (
        ("timeout", live_fn.timeout, conf.get("Timeout")),
        ("memory", live_fn.memory, conf.get("MemorySize")),
        (
            "architectures",
            list(live_fn.architectures),
            list(conf.get("Architectures") or ("x86_64",)),
        ),
        ("image config", live_fn.image_config, _image_config(conf)),
    )
    diffs.extend(f"{what} {want!r} → {got!r}" for what, want, got in pairs if want != got)
    return diffs


def _require_digest(image_uri: str, name: str) -> None:
    if "@sha256:" not in image_uri:
        raise AwsError(
            f"refusing to deploy {name} from a tag",
            expected="an image reference by digest (repo@sha256:…)",
            found=image_uri,
            remedy="deploy the digest the registry reported for the tested image",
        )


def _require_unchanged(lam: Any, live_fn: LiveFunction) -> None:
    current = _get_function(lam, live_fn.name)["Configuration"]
    diffs = _runtime_differences(live_fn, current)
    if diffs:
        raise AwsError(
            f"the configuration of {live_fn.name} changed since it was checked",
            expected="the configuration the config gate passed",
            found="; ".join(diffs),
            remedy="re-run the deploy so the config gate sees the current configuration",
        )


def _find_version(lam: Any, live_fn: LiveFunction, image_uri: str) -> dict[str, Any] | None:
    """The newest published version running image_uri with live_fn's configuration."""
    versions: list[dict[str, Any]] = []
    try:
        for page in lam.get_paginator("list_versions_by_function").paginate(
            FunctionName=live_fn.name
        ):
            versions.extend(v for v in page.get("Versions", []) if v.get("Version") != LATEST)
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, "lambda:ListVersionsByFunction", live_fn.name) from exc
    same_config = [v for v in versions if not _runtime_differences(live_fn, v)]
    same_config.sort(key=lambda v: int(v["Version"]), reverse=True)
    for candidate in same_config[:REUSE_SCAN_LIMIT]:
        found = _get_function(lam, live_fn.name, candidate["Version"])
        if found.get("Code", {}).get("ImageUri") == image_uri:
            return found["Configuration"]
    return None


def _configuration(lam: Any, name: str, qualifier: str) -> dict[str, Any]:
    return _call(
        lam.get_function_configuration,
        "lambda:GetFunctionConfiguration",
        f"{name}:{qualifier}",
        {NOT_FOUND: _missing_function(name)},
        FunctionName=name,
        Qualifier=qualifier,
    )


def _settle(
    lam: Any,
    name: str,
    qualifier: str,
    wait_s: float,
    *,
    field: str,
    done: tuple[str, ...],
    waiter: str,
) -> dict[str, Any]:
    """Wait until field of name:qualifier is in done; Failed or the deadline is an error."""
    deadline = time.monotonic() + wait_s
    final = (*done, "Failed")
    conf = _configuration(lam, name, qualifier)
    if conf.get(field) not in final:
        try:
            lam.get_waiter(waiter).wait(
                FunctionName=name,
                Qualifier=qualifier,
                WaiterConfig={
                    "Delay": POLL_DELAY_S,
                    "MaxAttempts": max(1, int(wait_s / POLL_DELAY_S)),
                },
            )
        except WaiterError:
            pass  # the reads below say why, with Lambda's own reason
        except (ClientError, BotoCoreError) as exc:  # e.g. the endpoint stopped answering
            raise aws_error(exc, f"lambda waiter {waiter}", f"{name}:{qualifier}") from exc
        # Our own reads are the verdict: the waiter knows no reason and passes early on
        # endpoints that report no update state at all.
        conf = _configuration(lam, name, qualifier)
        while conf.get(field) not in final and time.monotonic() < deadline:
            time.sleep(POLL_DELAY_S)
            conf = _configuration(lam, name, qualifier)
    if conf.get(field) in done:
        return conf
    raise _not_settled(name, qualifier, field, done[0], conf, wait_s)


def _not_settled(
    name: str, qualifier: str, field: str, done: str, conf: Mapping[str, Any], wait_s: float
) -> AwsError:
    reason_field = "LastUpdateStatusReason" if field == "LastUpdateStatus" else "StateReason"
    status = conf.get(field, "") or "(not reported)"
    reason = conf.get(reason_field, "")
    code = conf.get(f"{reason_field}Code", "")
    failed = status == "Failed"
    return AwsError(
        f"{name}:{qualifier} {'failed' if failed else 'did not settle'}: {field} is {status}",
        expected=f"{field} {done}" + ("" if failed else f" within {wait_s:.0f} s"),
        found=f"{status} {code}: {reason}".strip(),
        remedy="check that the function's role can pull the image (ECR permissions) and that "
        "the image is valid for Lambda"
        if failed
        else "Lambda is still applying an update; wait, then re-run the deploy",
    )


def _update_code(lam: Any, live_fn: LiveFunction, image_uri: str) -> str:
    response = _call(
        lam.update_function_code,
        "lambda:UpdateFunctionCode",
        live_fn.arn or live_fn.name,
        FunctionName=live_fn.name,
        ImageUri=image_uri,
    )
    return str(response["CodeSha256"])


def _publish(lam: Any, live_fn: LiveFunction, code_sha256: str, image_uri: str) -> str:
    conflict = AwsError(
        f"the code of {live_fn.name} changed between update and publish: another deploy?",
        expected=f"$LATEST with CodeSha256 {code_sha256}",
        found="PreconditionFailedException: CodeSha256 no longer matches",
        remedy="check who else is deploying this environment, then re-run",
    )
    response = _call(
        lam.publish_version,
        "lambda:PublishVersion",
        live_fn.arn or live_fn.name,
        {PRECONDITION: conflict},
        FunctionName=live_fn.name,
        # Pinning the sha means a concurrent code change fails the publish instead of
        # slipping into the version.
        CodeSha256=code_sha256,
        Description=f"gangway: {image_uri}"[:256],
    )
    return str(response["Version"])


def _digest(image_uri: str) -> str:
    return image_uri.rpartition("@")[2] if "@" in image_uri else ""


def _verify_version(
    lam: Any, live_fn: LiveFunction, version: str, image_uri: str
) -> dict[str, Any]:
    """Read the version back: it must run image_uri and carry the gated configuration."""
    response = _get_function(lam, live_fn.name, version)
    code = response.get("Code", {})
    conf = response["Configuration"]
    problems = []
    if code.get("ImageUri") != image_uri:
        problems.append(f"ImageUri {code.get('ImageUri')}")
    resolved = code.get("ResolvedImageUri", "")
    if resolved and _digest(resolved) != _digest(image_uri):
        problems.append(f"ResolvedImageUri {resolved}")
    if problems:
        raise AwsError(
            f"version {version} of {live_fn.name} does not run the tested digest",
            expected=image_uri,
            found="; ".join(problems),
            remedy="do not route traffic to it; check for a concurrent deploy and re-run",
        )
    diffs = _runtime_differences(live_fn, conf)
    if diffs:
        raise AwsError(
            f"version {version} of {live_fn.name} was published with a changed configuration",
            expected="the configuration the config gate passed",
            found="; ".join(diffs),
            remedy="check for a concurrent configuration change, then re-run the deploy",
        )
    return conf


def _wait_updated(lam: Any, name: str, wait_s: float) -> dict[str, Any]:
    return _settle(
        lam,
        name,
        LATEST,
        wait_s,
        field="LastUpdateStatus",
        done=("Successful",),
        waiter="function_updated_v2",
    )


def _wait_active(lam: Any, name: str, version: str, wait_s: float) -> dict[str, Any]:
    # An idle old version may be Inactive: it serves (and wakes up) on invoke, so it counts.
    return _settle(
        lam,
        name,
        version,
        wait_s,
        field="State",
        done=("Active", "Inactive"),
        waiter="function_active_v2",
    )


def _update_and_publish(lam: Any, live_fn: LiveFunction, image_uri: str, wait_s: float) -> str:
    _wait_updated(lam, live_fn.name, wait_s)  # UpdateFunctionCode is refused mid-update
    sha = _update_code(lam, live_fn, image_uri)
    _wait_updated(lam, live_fn.name, wait_s)
    return _publish(lam, live_fn, sha, image_uri)


def deploy_version(
    config: DeployConfig, live_fn: LiveFunction, image_uri: str, *, wait_s: float = DEFAULT_WAIT_S
) -> DeployedVersion:
    """Publish (or reuse) a version of live_fn running image_uri by digest, read back."""
    _require_digest(image_uri, live_fn.name)
    started = time.monotonic()
    lam = client(config, "lambda")
    previous = _get_alias(lam, config.environment.alias, live_fn.name)
    _require_unchanged(lam, live_fn)
    existing = _find_version(lam, live_fn, image_uri)
    if existing is not None:
        version, reused = str(existing["Version"]), True
    else:
        version, reused = _update_and_publish(lam, live_fn, image_uri, wait_s), False
    _wait_active(lam, live_fn.name, version, wait_s)
    conf = _verify_version(lam, live_fn, version, image_uri)
    return DeployedVersion(
        key=live_fn.key,
        name=live_fn.name,
        version=version,
        image_uri=image_uri,
        code_sha256=str(conf.get("CodeSha256", "")),
        reused=reused,
        previous_alias=previous,
        duration_s=time.monotonic() - started,
    )


# --- moving traffic -------------------------------------------------------------------------


def _update_alias(
    lam: Any, config: DeployConfig, name: str, version: str, weights: Mapping[str, float]
) -> AliasState:
    """Point the alias at version with weights, guarded by the RevisionId just read."""
    alias = config.environment.alias
    current = _get_alias(lam, alias, name)
    kwargs: dict[str, Any] = {
        "FunctionName": name,
        "Name": alias,
        "FunctionVersion": version,
        "RoutingConfig": {"AdditionalVersionWeights": dict(weights)},
    }
    if current.revision_id:
        kwargs["RevisionId"] = current.revision_id
    response = _call(
        lam.update_alias,
        "lambda:UpdateAlias",
        f"{name}:{alias}",
        {PRECONDITION: _alias_moved(alias, name), NOT_FOUND: _missing_alias(alias, name)},
        **kwargs,
    )
    return _alias_state(response)


def _require_version(name: str, version: str, what: str) -> None:
    if not version.isdigit():
        raise AwsError(
            f"{what} for {name} must be a published version",
            expected="a version number such as '7'",
            found=repr(version),
            remedy="publish a version first (deploy_version); an alias must not follow $LATEST",
        )


def shift_alias(config: DeployConfig, name: str, version: str) -> AliasState:
    """Send all of the alias's traffic to version at once (any canary weights are cleared)."""
    _require_version(name, version, "the alias target")
    return _update_alias(client(config, "lambda"), config, name, version, {})


def set_canary(
    config: DeployConfig, name: str, stable_version: str, new_version: str, percent: float
) -> AliasState:
    """Keep the alias on stable_version and send percent of its traffic to new_version."""
    _require_version(name, stable_version, "the stable version")
    _require_version(name, new_version, "the canary version")
    if stable_version == new_version or not 0 < percent < 100:
        raise AwsError(
            f"invalid canary for {name}",
            expected="two different versions and 0 < percent < 100",
            found=f"stable {stable_version}, new {new_version}, {percent}%",
            remedy="deploy without --canary to move all traffic at once (a canary needs a new "
            "version that differs from the one the alias serves), or pass --canary 1 to 99",
        )
    weights = {new_version: round(percent / 100, 6)}
    return _update_alias(client(config, "lambda"), config, name, stable_version, weights)


def restore_client(config: DeployConfig) -> Any:
    """A Lambda client for rollbacks: one request per call, short timeouts.

    restore_alias is the retry loop, so that its window bounds the whole restore: botocore's
    own retries would multiply it and draw on the retry quota of the client the failing
    deploy already drained.
    """
    aws = config.environment.aws
    boto = BOTO.merge(
        BotoConfig(
            connect_timeout=RESTORE_CONNECT_TIMEOUT_S,
            read_timeout=RESTORE_READ_TIMEOUT_S,
            retries={"mode": "standard", "total_max_attempts": 1},
        )
    )
    return boto3.session.Session().client(
        "lambda", region_name=aws.region, endpoint_url=aws.endpoint_url, config=boto
    )


def retryable(exc: BaseException | None) -> bool:
    """Whether a failed AWS call may succeed if simply repeated: no answer, throttled, 5xx."""
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True  # refused, timed out, reset mid-request
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return error_code(exc) in THROTTLING_CODES or status == 429 or status >= 500
    return False


def _restore_failed(
    config: DeployConfig,
    name: str,
    previous: AliasState,
    last: AwsError,
    attempts: int,
    window_s: float,
) -> AwsError:
    alias = previous.name or config.environment.alias
    command = (
        f"aws lambda update-alias --function-name {name} --name {alias} "
        f"--function-version {previous.version}"
    )
    if previous.weights:
        routing = json.dumps({"AdditionalVersionWeights": previous.weights})
        command += f" --routing-config '{routing}'"
    return AwsError(
        f"rollback of {name}:{alias} FAILED: AWS did not accept it within "
        f"{window_s:.0f} s ({attempts} attempts)",
        expected=f"{previous.describe()}, read back",
        found=f"last attempt: {last.message}",
        remedy=f"the alias may still route traffic to the new version: once AWS answers, "
        f"`{command}`; the next deploy of this environment also restores it first",
    )


def restore_alias(
    config: DeployConfig,
    name: str,
    previous: AliasState,
    *,
    lam: Any | None = None,
    window_s: float | None = None,
    on_retry: Callable[[str], None] | None = None,
) -> AliasState:
    """Put the alias back where previous says, then prove it by reading it back.

    A rollback runs exactly when something is wrong, possibly with AWS itself: while AWS does
    not answer, throttles or fails with a 5xx, the whole update-and-read-back is retried with
    jittered exponential backoff for window_s (default: environment.deploy.restore_window_s).
    Any other failure (denied, not found, another deploy moved the alias) is final at once.
    Pass lam=restore_client(config) so that the window, not botocore's retries, bounds it.
    """
    lam = lam or client(config, "lambda")
    window = config.environment.deploy.restore_window_s if window_s is None else window_s
    deadline = time.monotonic() + window
    attempt = 0
    while True:
        attempt += 1
        try:
            _update_alias(lam, config, name, previous.version, previous.weights)
            now = _get_alias(lam, config.environment.alias, name)
            break
        except AwsError as exc:
            remaining = deadline - time.monotonic()
            if not retryable(exc.__cause__):
                raise
            if remaining <= 0:
                raise _restore_failed(config, name, previous, exc, attempt, window) from exc
            ceiling = min(RESTORE_BACKOFF_CAP_S, RESTORE_BACKOFF_BASE_S * 2 ** (attempt - 1))
            # Equal jitter: parallel restores of several functions do not retry in lockstep.
            delay = min(remaining, ceiling / 2 + random.uniform(0, ceiling / 2))
            if on_retry is not None:
                on_retry(
                    f"restore of {name}:{previous.name}, attempt {attempt}: {exc.message}; "
                    f"retrying in {delay:.1f} s ({remaining:.0f} s of the window left)"
                )
            time.sleep(delay)
    if not now.routes_like(previous):
        raise AwsError(
            f"rollback of {name}:{previous.name} is not proven",
            expected=previous.describe(),
            found=now.describe(),
            remedy=f"point {name}:{previous.name} at version {previous.version} by hand "
            "and check for a concurrent deploy",
        )
    return now
