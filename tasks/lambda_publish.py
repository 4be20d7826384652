"""Publishing a version: update a function's code by digest, wait, publish, verify.

A version counts only when it reports the digest the gates passed (CodeSha256 and
ResolvedImageUri) and the configuration the config gate passed; a re-run reuses the version an
earlier attempt published. Every write waits for the function to settle first (State Active,
LastUpdateStatus Successful): botocore's waiter, then our own reads (tenacity polls them) are
the verdict. A write Lambda refuses because someone else's update is in progress is retried
for environment.deploy.conflict_retry_s (tasks/aws.py retry_conflicts).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, WaiterError
from pydantic import BaseModel, ConfigDict
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from gangway.config import DeployConfig
from gangway.errors import AwsError
from tasks.aws import aws_error, client, error_code, retry_conflicts
from tasks.lambda_read import (
    LATEST,
    NOT_FOUND,
    PRECONDITION,
    AliasState,
    LiveFunction,
    call,
    env_of,
    get_alias,
    get_function,
    image_config,
    missing_function,
)

POLL_DELAY_S = 1
DEFAULT_WAIT_S = 180.0


class ForeignCode(AwsError):
    """The code Lambda holds or published is not the image the gates passed (someone else's
    update landed between ours and the publish): nothing may be routed to it."""

    def __init__(
        self, message: str, *, function: str, expected: str, found: str, remedy: str
    ) -> None:
        self.function = function
        super().__init__(message, expected=expected, found=found, remedy=remedy)


FOREIGN_REMEDY = (
    "route nothing to it: someone else updated {name} between gangway's update and publish "
    "(another deploy, an infrastructure tool or a person); find who (CloudTrail: "
    "UpdateFunctionCode on {name}), stop them, then re-run the deploy"
)


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


def _runtime_differences(live_fn: LiveFunction, conf: Mapping[str, Any]) -> list[str]:
    """What differs between live_fn's configuration and conf; names only, never env values."""
    env = env_of(conf)
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
        ("image config", live_fn.image_config, image_config(conf)),
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
    current = get_function(lam, live_fn.name)["Configuration"]
    diffs = _runtime_differences(live_fn, current)
    if diffs:
        raise AwsError(
            f"the configuration of {live_fn.name} changed since it was checked",
            expected="the configuration the config gate passed",
            found="; ".join(diffs),
            remedy="re-run the deploy so the config gate sees the current configuration",
        )


def _find_version(lam: Any, live_fn: LiveFunction, image_uri: str) -> dict[str, Any] | None:
    """The newest published version running image_uri with live_fn's configuration.

    The listing gives each version's CodeSha256 (an image's manifest digest), so only the
    versions of this digest are read in full, however many versions were published since:
    the healthy image of a long-lived function is reused, never published again."""
    versions: list[dict[str, Any]] = []
    try:
        for page in lam.get_paginator("list_versions_by_function").paginate(
            FunctionName=live_fn.name
        ):
            versions.extend(v for v in page.get("Versions", []) if v.get("Version") != LATEST)
    except (ClientError, BotoCoreError) as exc:
        raise aws_error(exc, "lambda:ListVersionsByFunction", live_fn.name) from exc
    sha = _sha_of(image_uri)
    candidates = [
        v
        for v in versions
        if v.get("CodeSha256") == sha and not _runtime_differences(live_fn, v)
    ]
    candidates.sort(key=lambda v: int(v["Version"]), reverse=True)
    for candidate in candidates:
        found = get_function(lam, live_fn.name, candidate["Version"])
        if found.get("Code", {}).get("ImageUri") == image_uri:
            return found["Configuration"]
    return None


def _configuration(lam: Any, name: str, qualifier: str) -> dict[str, Any]:
    return call(
        lam.get_function_configuration,
        "lambda:GetFunctionConfiguration",
        f"{name}:{qualifier}",
        {NOT_FOUND: missing_function(name)},
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
        poll = Retrying(
            retry=retry_if_result(lambda read: read.get(field) not in final),
            stop=stop_after_delay(max(0.0, deadline - time.monotonic())),
            wait=wait_fixed(POLL_DELAY_S),
            retry_error_callback=lambda state: state.outcome.result() if state.outcome else {},
        )
        conf = poll(_configuration, lam, name, qualifier)
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


def _update_code(lam: Any, live_fn: LiveFunction, image_uri: str, budget_s: float) -> None:
    retry_conflicts(
        lambda: call(
            lam.update_function_code,
            "lambda:UpdateFunctionCode",
            live_fn.arn or live_fn.name,
            FunctionName=live_fn.name,
            ImageUri=image_uri,
        ),
        budget_s=budget_s,
        action="lambda:UpdateFunctionCode",
        function=live_fn.name,
    )


def _sha_of(image_uri: str) -> str:
    """The CodeSha256 Lambda reports for an image by digest: the manifest digest's hex."""
    return _digest(image_uri).removeprefix("sha256:")


def _latest_code(lam: Any, name: str) -> str:
    """What $LATEST runs now, for a message: 'sha256:… (uri)'."""
    try:
        now = get_function(lam, name)
    except AwsError as exc:
        return f"(could not read $LATEST: {exc.message})"
    uri = now.get("Code", {}).get("ImageUri", "")
    return f"sha256:{now['Configuration'].get('CodeSha256', '')} ({uri})"


def _publish(lam: Any, live_fn: LiveFunction, image_uri: str, budget_s: float) -> str:
    expected = _sha_of(image_uri)
    try:
        response = retry_conflicts(
            lambda: call(
                lam.publish_version,
                "lambda:PublishVersion",
                live_fn.arn or live_fn.name,
                FunctionName=live_fn.name,
                # Pinning the gated digest: AWS refuses the publish (PreconditionFailed) when
                # someone else's code update landed after ours, instead of publishing it.
                CodeSha256=expected,
                Description=f"gangway: {image_uri}"[:256],
            ),
            budget_s=budget_s,
            action="lambda:PublishVersion",
            function=live_fn.name,
        )
    except AwsError as exc:
        if error_code(exc.__cause__ or exc) != PRECONDITION:
            raise
        raise ForeignCode(
            f"the code of {live_fn.name} changed between update and publish: another deploy? "
            "Publish refused, nothing routed to it",
            function=live_fn.name,
            expected=f"$LATEST with the gated digest sha256:{expected} ({image_uri})",
            found=f"$LATEST runs {_latest_code(lam, live_fn.name)}; AWS refused the publish: "
            "PreconditionFailedException (CodeSha256 no longer matches)",
            remedy=FOREIGN_REMEDY.format(name=live_fn.name),
        ) from exc
    return str(response["Version"])


def _digest(image_uri: str) -> str:
    return image_uri.rpartition("@")[2] if "@" in image_uri else ""


def _verify_version(
    lam: Any, live_fn: LiveFunction, version: str, image_uri: str
) -> dict[str, Any]:
    """Read the version back: it must run the gated digest and carry the gated configuration."""
    response = get_function(lam, live_fn.name, version)
    code = response.get("Code", {})
    conf = response["Configuration"]
    problems = []
    if code.get("ImageUri") != image_uri:
        problems.append(f"ImageUri {code.get('ImageUri')}")
    resolved = code.get("ResolvedImageUri", "")
    if resolved and _digest(resolved) != _digest(image_uri):
        problems.append(f"ResolvedImageUri {resolved}")
    sha = str(conf.get("CodeSha256", ""))
    if sha and sha != _sha_of(image_uri):
        problems.append(f"CodeSha256 {sha}")
    if problems:
        raise ForeignCode(
            f"version {version} of {live_fn.name} does not run the tested digest",
            function=live_fn.name,
            expected=image_uri,
            found="; ".join(problems),
            remedy=FOREIGN_REMEDY.format(name=live_fn.name),
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


def _update_and_publish(
    lam: Any, live_fn: LiveFunction, image_uri: str, wait_s: float, budget_s: float
) -> str:
    # Lambda refuses an update of a function still Pending (just created) or mid-update, and
    # a publish mid-update: each write waits for the one before to settle.
    _wait_active(lam, live_fn.name, LATEST, wait_s)
    _wait_updated(lam, live_fn.name, wait_s)
    _update_code(lam, live_fn, image_uri, budget_s)
    _wait_updated(lam, live_fn.name, wait_s)
    return _publish(lam, live_fn, image_uri, budget_s)


def deploy_version(
    config: DeployConfig, live_fn: LiveFunction, image_uri: str, *, wait_s: float = DEFAULT_WAIT_S
) -> DeployedVersion:
    """Publish (or reuse) a version of live_fn running image_uri by digest, read back."""
    _require_digest(image_uri, live_fn.name)
    started = time.monotonic()
    lam = client(config, "lambda")
    previous = get_alias(lam, config.environment.alias, live_fn.name)
    _require_unchanged(lam, live_fn)
    existing = _find_version(lam, live_fn, image_uri)
    if existing is not None:
        version, reused = str(existing["Version"]), True
    else:
        budget_s = config.environment.deploy.conflict_retry_s
        version, reused = _update_and_publish(lam, live_fn, image_uri, wait_s, budget_s), False
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
