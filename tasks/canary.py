"""Judging a canary bake: what the new versions served inside the bake window, as a gate.

Pure deciding, no AWS: the flow sends the synthetic traffic and reads the logs' window counts
(tasks/logs_scan.count_window) of the new versions and of the stable ones; this module tallies
them per function and returns the bake's GateResult. The checks combine as follows, all
required to pass:

* the absolute ceiling: the canary's observed error rate above error_rate_threshold fails on
  its own, whatever the stable version does;
* the minimum sample: no errors but fewer canary invocations than min_canary_invocations is
  *inconclusive* (Argo Rollouts' sense) and fails too: "0 errors in 2 invocations" proves
  nothing;
* non-inferiority (tasks/noninferiority.py): the canary's error rate against the stable
  version's over the same window, pooled over the canaried functions (the canary weight is
  the same for all of them). Shown worse than stable + margin fails; not shown no worse is
  inconclusive (rolled back, and said so, with the traffic that would decide). With no
  stable invocations the canary must show on its own that its error rate is within the
  margin, and it can never be shown "worse"; few stable invocations widen the bound.

A stable log line that never arrived is not a failure (unlike the canary's): it can only hide
a stable error, which makes the canary look worse, never better.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gangway.config import EnvironmentSpec
from gangway.evidence import Check, GateResult, Strength
from tasks.logs_scan import WindowCount
from tasks.noninferiority import Decision, NonInferiority, Rate, non_inferiority
from tasks.smoke import SmokeOutcome


@dataclass
class BakeTally:
    """One function's canary in the bake: its synthetic invokes and its logged invocations."""

    new: list[SmokeOutcome]
    old: list[SmokeOutcome]
    logged: frozenset[str] = frozenset()
    log_errors: frozenset[str] = frozenset()
    orphan_errors: int = 0
    unseen: tuple[str, ...] = ()
    first_log_error: str = ""
    # The stable version's side of the same window (its versions' log lines).
    stable_logged: frozenset[str] = frozenset()
    stable_log_errors: frozenset[str] = frozenset()
    stable_orphan_errors: int = 0
    stable_unseen: tuple[str, ...] = ()

    @classmethod
    def of(cls, outcomes: Sequence[SmokeOutcome], key: str, new_version: str) -> BakeTally:
        """The synthetic invokes of function key, split by the version that ran them (an
        invoke that got no answer names no version and is in neither list)."""
        mine = [o for o in outcomes if o.function == key]
        return cls(
            new=[o for o in mine if o.executed_version == new_version],
            old=[o for o in mine if o.executed_version not in (new_version, None)],
        )

    @property
    def awaited(self) -> list[str]:
        """Request ids whose log lines the count must wait for: the invokes that ran the new
        version and answered well (a failed one already counts as an error)."""
        return [o.request_id for o in self.new if o.ok and o.request_id]

    @property
    def stable_awaited(self) -> list[str]:
        """The same for the invokes that ran the stable version."""
        return [o.request_id for o in self.old if o.ok and o.request_id]

    def add_logs(self, count: WindowCount) -> None:
        """Merge what the new version's logs show in the window."""
        self.logged, self.log_errors = count.invocations, count.errored
        self.orphan_errors, self.unseen = count.orphan_errors, count.unseen
        self.first_log_error = count.first_error

    def add_stable_logs(self, count: WindowCount) -> None:
        """Merge what the stable version's logs show in the same window."""
        self.stable_logged, self.stable_log_errors = count.invocations, count.errored
        self.stable_orphan_errors, self.stable_unseen = count.orphan_errors, count.unseen

    @staticmethod
    def _ids(outcomes: list[SmokeOutcome]) -> tuple[set[str], int]:
        ids = {o.request_id for o in outcomes if o.request_id}
        return ids, sum(1 for o in outcomes if not o.request_id)

    @classmethod
    def _counted(cls, outcomes: list[SmokeOutcome], logged: frozenset[str]) -> int:
        ids, anonymous = cls._ids(outcomes)
        return len(logged | ids) + anonymous

    @classmethod
    def _failed(cls, outcomes: list[SmokeOutcome], errored: frozenset[str], orphans: int) -> int:
        ids, anonymous = cls._ids([o for o in outcomes if not o.ok])
        return len(errored | ids) + anonymous + orphans

    @property
    def invocations(self) -> int:
        """The new version's invocations in the window: logged or synthetic, by request id."""
        return self._counted(self.new, self.logged)

    @property
    def errors(self) -> int:
        """Failed invocations: an error in the logs, or a response that failed validation."""
        return self._failed(self.new, self.log_errors, self.orphan_errors)

    @property
    def stable_invocations(self) -> int:
        """The stable version's invocations in the same window, counted the same way."""
        return self._counted(self.old, self.stable_logged)

    @property
    def stable_errors(self) -> int:
        """The stable version's failed invocations in the same window."""
        return self._failed(self.old, self.stable_log_errors, self.stable_orphan_errors)

    @property
    def failures(self) -> list[str]:
        """The first message of each failure: failed responses, then the first log error."""
        found = [
            f"{o.case} (request {o.request_id or '?'}): {c.name}: {c.found}"[:300]
            for o in self.new
            if not o.ok
            for c in o.result.failures[:1]
        ]
        if self.first_log_error:
            found.append(f"log: {self.first_log_error}")
        return found

    def evidence(self) -> dict[str, object]:
        """What the ledger keeps of this function's bake."""
        return {
            "invocations": self.invocations,
            "errors": self.errors,
            "logged": len(self.logged),
            "synthetic_new": len(self.new),
            "synthetic_old": len(self.old),
            "synthetic_failed_new": sum(1 for o in self.new if not o.ok),
            "synthetic_failed_old": sum(1 for o in self.old if not o.ok),
            "unseen": list(self.unseen),
            "failures": self.failures[:3],
            "stable_invocations": self.stable_invocations,
            "stable_errors": self.stable_errors,
            "stable_logged": len(self.stable_logged),
            "stable_unseen": list(self.stable_unseen),
        }


@dataclass(frozen=True)
class BakeWindow:
    """The bake as requested: how long, and what share of traffic the canary got."""

    bake_s: int
    canary_percent: int


@dataclass(frozen=True)
class BakeVerdict:
    """The bake's gate result, the reason when it ended inconclusive ("" otherwise), and the
    canary-versus-stable comparison it was judged on."""

    result: GateResult
    inconclusive: str
    comparison: NonInferiority


def compare(environment: EnvironmentSpec, tally: dict[str, BakeTally]) -> NonInferiority:
    """The canaried functions' pooled error rate against their stable versions' (same window)."""
    policy = environment.deploy
    return non_inferiority(
        Rate(sum(t.errors for t in tally.values()), sum(t.invocations for t in tally.values())),
        Rate(
            sum(t.stable_errors for t in tally.values()),
            sum(t.stable_invocations for t in tally.values()),
        ),
        margin=policy.noninferiority_margin,
        confidence=policy.noninferiority_confidence,
    )


def judge_bake(
    environment: EnvironmentSpec,
    window: BakeWindow,
    tally: dict[str, BakeTally],
    synthetic: Sequence[SmokeOutcome],
) -> BakeVerdict:
    """The bake judged on the canaried functions' tallies (function key → tally)."""
    policy = environment.deploy
    invocations = sum(t.invocations for t in tally.values())
    errors = sum(t.errors for t in tally.values())
    new = sum(len(t.new) for t in tally.values())
    old = sum(len(t.old) for t in tally.values())
    unknown = [o for o in synthetic if o.executed_version is None]
    failed = [f for t in tally.values() for f in t.failures]
    rate = errors / invocations if invocations else 0.0
    within = f"the {window.bake_s}s bake window"
    if policy.bake_synthetic:
        sent = (
            f"{len(synthetic)} synthetic invokes through alias {environment.alias}: "
            f"{new} ran the new version, {old} the old"
            + (f", {len(unknown)} no version (no answer)" if unknown else "")
        )
    else:
        sent = "synthetic traffic off (environment.deploy.bake_synthetic = false)"
    rate_ok = errors == 0 or (invocations > 0 and rate <= policy.error_rate_threshold)
    unseen = sorted(r for t in tally.values() for r in t.unseen)
    enough = invocations >= policy.min_canary_invocations
    comparison = compare(environment, tally)
    shown_worse = comparison.decision is Decision.WORSE
    # Inconclusive: nothing failed, but too little to pass on. With errors already failing
    # the canary (over the ceiling, or shown worse than stable), more traffic is not the remedy.
    inconclusive = (
        rate_ok
        and not unseen
        and not shown_worse
        and (not enough or comparison.decision is Decision.INCONCLUSIVE)
    )
    checks = (
        Check(
            name="canary error rate",
            ok=rate_ok,
            expected=f"≤ {policy.error_rate_threshold:.0%} errors over the new versions' "
            f"invocations in {within} (log errors and synthetic responses that failed "
            "the smoke checks)",
            found=f"{errors} errors in {invocations} canary invocations ({rate:.1%}); {sent}"
            + (f"; first failure: {failed[0]}" if failed else ""),
            remedy=""
            if rate_ok
            else "read the new version's logs and the failed responses; the alias was put "
            "back on the old version",
            evidence={k: t.evidence() for k, t in tally.items()},
        ),
        Check(
            name="canary logs delivered",
            ok=not unseen,
            expected="a REPORT line for every synthetic invoke that ran the new version",
            found="all delivered"
            if not unseen
            else f"not delivered within environment.deploy.bake_log_wait_s = "
            f"{policy.bake_log_wait_s:g}s: {', '.join(unseen[:10])}",
            remedy=""
            if not unseen
            else "unread logs cannot clear a canary: check the execution role may write "
            "logs; raise environment.deploy.bake_log_wait_s if delivery is just slow",
        ),
        Check(
            name="canary traffic",
            ok=enough,
            expected=f"≥ {policy.min_canary_invocations} invocations of the new versions in "
            f"{within}, real and synthetic alike (environment.deploy.min_canary_invocations)",
            found=f"{invocations} canary invocations"
            if enough
            else ("inconclusive: " if inconclusive else "")
            + f"{invocations} canary invocations < minimum "
            f"{policy.min_canary_invocations} in {within} "
            f"({window.canary_percent}% canary; {sent})",
            remedy=traffic_remedy(environment) if inconclusive and not enough else "",
        ),
        _comparison_check(environment, comparison, within),
    )
    result = GateResult(
        gate="bake", boundary="observability", strength=Strength.OBSERVABILITY, checks=checks
    )
    if not inconclusive:
        reason = ""
    elif not enough:
        reason = (
            f"inconclusive: {invocations} canary invocations < minimum "
            f"{policy.min_canary_invocations}"
        )
    else:
        reason = (
            f"inconclusive: the canary is not shown no worse than stable + "
            f"{comparison.margin:.1%} ({_counts(comparison)}; {comparison.needed_text()})"
        )
    return BakeVerdict(result=result, inconclusive=reason, comparison=comparison)


def _counts(comparison: NonInferiority) -> str:
    c, s = comparison.canary, comparison.stable
    return (
        f"canary {c.errors}/{c.invocations} errors, stable {s.errors}/{s.invocations}, "
        f"upper bound of the difference {comparison.bounds.high:+.1%}"
    )


def _comparison_check(
    environment: EnvironmentSpec, comparison: NonInferiority, within: str
) -> Check:
    """The non-inferiority check: canary versus stable error rate over the same window."""
    env = environment.name
    level = f"{comparison.confidence:.0%}"
    if comparison.decision is Decision.WORSE:
        remedy = (
            "the new version fails more often than the stable one under the same traffic: read "
            "its logs and failed responses; the alias was put back on the stable version"
        )
    elif comparison.decision is Decision.INCONCLUSIVE:
        remedy = (
            "too little traffic to show the canary no worse than stable, so it was not "
            f"promoted (the alias was put back on the stable version): {comparison.needed_text()}; "
            + "; ".join(_traffic_ways(environment))
            + f"; or, knowingly, widen the margin or lower the confidence for {env} "
            "(environment.deploy.noninferiority_margin / noninferiority_confidence)"
        )
    else:
        remedy = ""
    return Check(
        name="canary vs stable error rate",
        ok=comparison.decision is Decision.NO_WORSE,
        expected=f"the canary's error rate shown at most {comparison.margin:.1%} (absolute) "
        f"above the stable version's over {within}: the one-sided {level} upper bound of "
        "the difference (Newcombe's hybrid score interval) ≤ the margin "
        "(environment.deploy.noninferiority_margin / noninferiority_confidence)",
        found=comparison.summary(),
        remedy=remedy,
        evidence=comparison.evidence(),
    )


def traffic_remedy(environment: EnvironmentSpec) -> str:
    """What to do when a bake saw too little canary traffic to judge."""
    return (
        "too little canary traffic to judge the new version, so it was not promoted (the "
        "alias was put back on the old version): " + "; ".join(_traffic_ways(environment))
    )


def _traffic_ways(environment: EnvironmentSpec) -> list[str]:
    env = environment.name
    ways = [
        "send real traffic to the alias during the bake",
        "bake longer (--bake) or raise --canary",
        f"lower min_canary_invocations for {env} ([environment.deploy] in "
        f"deployments/{env}.toml, or GANGWAY_ENVIRONMENT__DEPLOY__MIN_CANARY_INVOCATIONS)",
    ]
    if not environment.deploy.bake_synthetic:
        ways.append(
            "turn synthetic traffic on (environment.deploy.bake_synthetic = true, or "
            "GANGWAY_ENVIRONMENT__DEPLOY__BAKE_SYNTHETIC=true)"
        )
    return ways
