"""Moving traffic: shift an alias, set a canary, and the one rollback that puts aliases back.

Every move is guarded by the RevisionId just read, so a concurrent deploy fails it instead of
being overwritten. A rollback counts only when the alias is read back where it was.
restore_aliases is the rollback of the deploy and of crash recovery alike; told what the
deploy set (moved_to), it puts back only aliases that still route as that deploy left them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random_exponential,
)

from gangway.config import DeployConfig
from gangway.errors import AwsError, GangwayError
from tasks.aws import client
from tasks.lambda_read import (
    NOT_FOUND,
    PRECONDITION,
    AliasState,
    alias_state,
    call,
    get_alias,
    missing_alias,
)
from tasks.transient import is_transient

RESTORE_BACKOFF_BASE_S = 0.5
RESTORE_BACKOFF_CAP_S = 5.0
# Equal jitter (half the exponential ceiling, plus up to the other half at random): parallel
# restores of several functions do not retry in lockstep, and none retries at once.
_EQUAL_JITTER = wait_exponential(
    multiplier=RESTORE_BACKOFF_BASE_S / 2, max=RESTORE_BACKOFF_CAP_S / 2
) + wait_random_exponential(multiplier=RESTORE_BACKOFF_BASE_S / 2, max=RESTORE_BACKOFF_CAP_S / 2)

OnRetry = Callable[[str], None]
# What a conditional restore says of an alias another deploy has moved since (left alone).
SUPERSEDED = "(another deploy moved it)"
# How often a conditional restore re-reads an alias that changed between its read and write.
CAS_ATTEMPTS = 3


class AliasMoved(AwsError):
    """The alias changed between our read and our write (its RevisionId no longer matches)."""


class AliasSuperseded(AwsError):
    """A restore found the alias routed by someone else: it is left alone."""


def _alias_moved(alias: str, name: str) -> AwsError:
    return AliasMoved(
        f"the alias changed under us: another deploy? ({name}:{alias})",
        expected=f"{name}:{alias} unchanged since it was read (same RevisionId)",
        found="PreconditionFailedException: the RevisionId no longer matches",
        remedy="check who else is deploying this environment; re-read the alias and re-run",
    )


def _update_alias(
    lam: Any,
    config: DeployConfig,
    name: str,
    version: str,
    weights: Mapping[str, float],
    current: AliasState | None = None,
) -> AliasState:
    """Point the alias at version with weights, guarded by the RevisionId of current (read
    now unless given): compare-and-set, so a change by anyone in between fails it."""
    alias = config.environment.alias
    current = current or get_alias(lam, alias, name)
    kwargs: dict[str, Any] = {
        "FunctionName": name,
        "Name": alias,
        "FunctionVersion": version,
        "RoutingConfig": {"AdditionalVersionWeights": dict(weights)},
    }
    if current.revision_id:
        kwargs["RevisionId"] = current.revision_id
    response = call(
        lam.update_alias,
        "lambda:UpdateAlias",
        f"{name}:{alias}",
        {PRECONDITION: _alias_moved(alias, name), NOT_FOUND: missing_alias(alias, name)},
        **kwargs,
    )
    return alias_state(response)


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


# --- putting traffic back -------------------------------------------------------------------


def _message(exc: BaseException | None) -> str:
    return exc.message if isinstance(exc, GangwayError) else f"{type(exc).__name__}: {exc}"


def _restore_failed(
    config: DeployConfig,
    name: str,
    previous: AliasState,
    last: BaseException | None,
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
        found=f"last attempt: {_message(last)}",
        remedy=f"the alias may still route traffic to the new version: once AWS answers, "
        f"`{command}`; the next deploy of this environment also restores it first",
    )


def _within(window_s: float) -> Callable[[RetryCallState], float]:
    """The backoff, cut to what is left of the window: the last attempt lands on its end."""

    def wait(state: RetryCallState) -> float:
        left = window_s - (state.seconds_since_start or 0.0)
        return max(0.0, min(left, _EQUAL_JITTER(state)))

    return wait


def _report_retry(
    name: str, previous: AliasState, window_s: float, on_retry: OnRetry | None
) -> Callable[[RetryCallState], None]:
    def report(state: RetryCallState) -> None:
        if on_retry is None or state.outcome is None or state.next_action is None:
            return
        left = window_s - (state.seconds_since_start or 0.0)
        on_retry(
            f"restore of {name}:{previous.name}, attempt {state.attempt_number}: "
            f"{_message(state.outcome.exception())}; retrying in {state.next_action.sleep:.1f} s "
            f"({left:.0f} s of the window left)"
        )

    return report


def _versions(state: AliasState) -> set[str]:
    return {state.version, *state.weights}


def _still_ours(now: AliasState, previous: AliasState, moved_to: AliasState) -> bool:
    """The alias routes only to versions this deploy's before and after states route to: as
    it set it, or part-way between (a full shift that moved some weight and failed)."""
    return now.routes_like(moved_to) or _versions(now) <= _versions(previous) | _versions(moved_to)


def restore_alias(
    config: DeployConfig,
    name: str,
    previous: AliasState,
    *,
    window_s: float | None = None,
    on_retry: OnRetry | None = None,
    moved_to: AliasState | None = None,
) -> AliasState:
    """Put the alias back where previous says, then prove it by reading it back.

    With moved_to (what this deploy set), the restore is conditional: an alias already like
    previous needs nothing; one that routes to a version neither previous nor moved_to knows
    was moved by another deploy and is left alone (AliasSuperseded). The write is a
    compare-and-set on the RevisionId read just before, so a move in between is re-judged.

    A rollback runs exactly when something is wrong, possibly with AWS itself: while AWS does
    not answer, throttles or fails with a 5xx, the whole update-and-read-back is retried with
    jittered exponential backoff for window_s (default: environment.deploy.restore_window_s),
    one request per call (the "restore" client profile), so the window bounds the restore.
    Any other failure (denied, not found, another deploy moved the alias) is final at once.
    """
    lam = client(config, "lambda", profile="restore")
    window = config.environment.deploy.restore_window_s if window_s is None else window_s

    alias = config.environment.alias

    def attempt() -> AliasState:
        if moved_to is None:
            _update_alias(lam, config, name, previous.version, previous.weights)
            return get_alias(lam, alias, name)
        for _ in range(CAS_ATTEMPTS):
            now = get_alias(lam, alias, name)
            if now.routes_like(previous):
                return now
            if not _still_ours(now, previous, moved_to):
                raise AliasSuperseded(
                    f"not restored: alias now routes {now.describe()} {SUPERSEDED}",
                    expected=f"{name}:{alias} as this deploy left it ({moved_to.describe()})",
                    found=now.describe(),
                    remedy="nothing: the deploy that moved it owns it now",
                )
            try:
                _update_alias(lam, config, name, previous.version, previous.weights, now)
            except AliasMoved:
                continue  # changed between our read and our write: judge it again
            return get_alias(lam, alias, name)
        raise _alias_moved(alias, name)

    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_delay(window),
        wait=_within(window),
        before_sleep=_report_retry(name, previous, window, on_retry),
    )
    try:
        now = retrying(attempt)
    except RetryError as gave_up:
        last = gave_up.last_attempt
        raise _restore_failed(
            config, name, previous, last.exception(), last.attempt_number, window
        ) from last.exception()
    if not now.routes_like(previous):
        raise AwsError(
            f"rollback of {name}:{previous.name} is not proven",
            expected=previous.describe(),
            found=now.describe(),
            remedy=f"point {name}:{previous.name} at version {previous.version} by hand "
            "and check for a concurrent deploy",
        )
    return now


def restore_aliases(
    config: DeployConfig,
    previous: dict[str, AliasState],
    window_s: float | None = None,
    on_retry: OnRetry | None = None,
    moved_to: dict[str, AliasState] | None = None,
) -> dict[str, AliasState | str]:
    """Put every alias (function name → where it was) back and read it back, concurrently.

    The one rollback, of a failed deploy and of crash recovery alike. Each function gets its
    own try within the window: the result is its verified AliasState, or the rendered error
    (expected / found / remedy) when it could not be restored. With moved_to (function name
    → what this deploy set), an alias another deploy moved since is left alone and reported
    as "not restored: alias now routes … (another deploy moved it)".
    """

    def restore(name: str) -> AliasState | str:
        try:
            return restore_alias(
                config,
                name,
                previous[name],
                window_s=window_s,
                on_retry=on_retry,
                moved_to=(moved_to or {}).get(name),
            )
        except AliasSuperseded as exc:
            return exc.message
        except GangwayError as exc:  # every alias gets its try; the caller reports each
            return exc.render()

    if not previous:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(previous))) as pool:
        futures = {name: pool.submit(restore, name) for name in previous}
        return {name: future.result() for name, future in futures.items()}
