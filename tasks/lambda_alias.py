"""Moving traffic: shift an alias, set a canary, and the one rollback that puts aliases back.

Every move is guarded by the RevisionId just read, so a change between our read and our write
fails it instead of being overwritten. A move and a rollback count only when the alias is read
back as written. restore_aliases is the rollback of the deploy and of crash recovery alike;
told what the deploy set (moved_to), it puts back only aliases that still route as that deploy
left them.

GetAlias is eventually consistent: for a few seconds after a write it may return the value
from before it (with its old RevisionId). So a write refused for a stale RevisionId is retried
on a fresh read, and a read-back polls until it shows the write, each for
environment.deploy.alias_read_window_s; only then is a disagreement a failure.
"""

from __future__ import annotations

import json
import logging
import time
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
from tasks.aws import client, retry_conflicts
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

log = logging.getLogger(__name__)

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
# How often a read-back or a refused compare-and-set re-reads the alias inside the window.
STALE_POLL_S = 0.25


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
    conflict_budget_s: float | None = None,
) -> AliasState:
    """Point the alias at version with weights, guarded by the RevisionId of current (read
    now unless given): compare-and-set, so a change by anyone in between fails it. Refused
    while the function is mid-update (ResourceConflict), it is retried for the budget."""
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
    budget = config.environment.deploy.conflict_retry_s
    response = retry_conflicts(
        lambda: call(
            lam.update_alias,
            "lambda:UpdateAlias",
            f"{name}:{alias}",
            {PRECONDITION: _alias_moved(alias, name), NOT_FOUND: missing_alias(alias, name)},
            **kwargs,
        ),
        budget_s=budget if conflict_budget_s is None else conflict_budget_s,
        action="lambda:UpdateAlias",
        function=name,
    )
    return alias_state(response)


def _write(
    lam: Any,
    config: DeployConfig,
    name: str,
    version: str,
    weights: Mapping[str, float],
    conflict_budget_s: float | None = None,
    window_s: float | None = None,
) -> AliasState:
    """Read the alias, then compare-and-set it; a refusal for a RevisionId that a stale read
    gave is retried on a new read for window_s (default: the read window). Each write still
    overwrites only what it has just read (the deploy lock keeps other deploys out); what it
    returns is AWS's answer to the write, with its new RevisionId."""
    window = config.environment.deploy.alias_read_window_s if window_s is None else window_s
    deadline = time.monotonic() + window
    while True:
        try:
            return _update_alias(lam, config, name, version, weights, None, conflict_budget_s)
        except AliasMoved:
            if time.monotonic() >= deadline:
                raise
            time.sleep(STALE_POLL_S)


def _shows(read: AliasState, written: AliasState) -> bool:
    """The read shows this write: its RevisionId (each write has its own), else its routes."""
    if written.revision_id and read.revision_id:
        return read.revision_id == written.revision_id
    return read.routes_like(written)


def read_back(lam: Any, alias: str, name: str, written: AliasState, window_s: float) -> AliasState:
    """Read the alias until it shows the write or window_s has passed; the last read."""
    deadline = time.monotonic() + window_s
    stale = 0
    while True:
        now = get_alias(lam, alias, name)
        if _shows(now, written) or time.monotonic() >= deadline:
            if stale:
                log.info("%s:%s read back as written after %d stale reads", name, alias, stale)
            return now
        if not stale:
            log.info(
                "%s:%s read back stale: shows %s, written %s; re-reading for up to %.0f s",
                name,
                alias,
                now.describe(),
                written.describe(),
                window_s,
            )
        stale += 1
        time.sleep(STALE_POLL_S)


def _moved_and_read_back(
    lam: Any, config: DeployConfig, name: str, version: str, weights: Mapping[str, float]
) -> AliasState:
    """A forward move: written, then read back as written within the read window."""
    written = _write(lam, config, name, version, weights)
    window = config.environment.deploy.alias_read_window_s
    now = read_back(lam, config.environment.alias, name, written, window)
    if not now.routes_like(written):
        raise AwsError(
            f"the move of {name}:{written.name} does not read back within {window:.0f} s",
            expected=f"{written.describe()} (as UpdateAlias answered)",
            found=now.describe(),
            remedy="check for a concurrent change of the alias; the deploy puts it back",
        )
    return now


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
    return _moved_and_read_back(client(config, "lambda"), config, name, version, {})


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
    return _moved_and_read_back(client(config, "lambda"), config, name, stable_version, weights)


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


def _maybe_stale(now: AliasState, previous: AliasState, moved_to: AliasState) -> bool:
    """The read routes like previous, yet this deploy moved the alias: a stale read showing
    the value from before the move, unless the move never landed (or was undone since)."""
    if moved_to.routes_like(previous):
        return False
    return not previous.revision_id or now.revision_id == previous.revision_id


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
    Any other failure (denied, not found) is final at once. Alias reads may be stale
    (environment.deploy.alias_read_window_s): a write refused for a stale RevisionId is made
    again on a new read, the read-back polls until it shows the write, and an alias is judged
    moved by another deploy only when the reads show it so to the end of that window.
    """
    lam = client(config, "lambda", profile="restore")
    policy = config.environment.deploy
    window = policy.restore_window_s if window_s is None else window_s
    read_window = policy.alias_read_window_s
    alias = config.environment.alias
    ends = time.monotonic() + window

    def conflict_budget() -> float:
        # A write refused for someone else's update waits inside the restore window only.
        return max(0.0, min(policy.conflict_retry_s, ends - time.monotonic()))

    def stale_left() -> float:
        # Stale reads are waited out for the read window, but never past the restore window
        # plus one read window: the restore step's timeout (120 s) bounds the sum.
        return max(0.0, min(read_window, ends + read_window - time.monotonic()))

    def attempt() -> AliasState:
        if moved_to is None:
            budget, stale_s = conflict_budget(), stale_left()
            written = _write(
                lam, config, name, previous.version, previous.weights, budget, stale_s
            )
            return read_back(lam, alias, name, written, stale_left())
        deadline = time.monotonic() + stale_left()
        while True:
            now = get_alias(lam, alias, name)
            if now.routes_like(previous):
                if not _maybe_stale(now, previous, moved_to):
                    return now  # written since the move: really back
                if not previous.revision_id:
                    # Nothing tells a stale read from a true one: trust it only when the
                    # reads agree to the end of the read window.
                    if time.monotonic() >= deadline:
                        return now
                    time.sleep(STALE_POLL_S)
                    continue
                # The very revision from before the move: written anyway (compare-and-set,
                # same routing). A stale RevisionId is refused and re-read; a true one is a
                # harmless rewrite of a move that never landed.
            if not now.routes_like(previous) and not _still_ours(now, previous, moved_to):
                # A stale read may show an older state of someone else's; another deploy's
                # move persists. Foreign only when the reads say so to the end of the window.
                if time.monotonic() < deadline:
                    time.sleep(STALE_POLL_S)
                    continue
                raise AliasSuperseded(
                    f"not restored: alias now routes {now.describe()} {SUPERSEDED}",
                    expected=f"{name}:{alias} as this deploy left it ({moved_to.describe()})",
                    found=now.describe(),
                    remedy="nothing: the deploy that moved it owns it now",
                )
            try:
                written = _update_alias(
                    lam, config, name, previous.version, previous.weights, now, conflict_budget()
                )
            except AliasMoved:
                # Changed between our read and our write, or the read was stale: judge a
                # new read, for the read window.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(STALE_POLL_S)
                continue
            return read_back(lam, alias, name, written, stale_left())

    retrying = Retrying(
        # Not a conflict (HTTP 409) past its budget: that budget already spent the window.
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
