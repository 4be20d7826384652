"""Judging a canary bake: what the new versions served inside the bake window, as a gate.

Pure deciding, no AWS: the flow sends the synthetic traffic and reads the logs' window counts
(tasks/logs_scan.count_window); this module tallies them per function and returns the bake's
GateResult. A bake with errors above the threshold fails; a bake with no errors but fewer
canary invocations than the environment's minimum is *inconclusive* (Argo Rollouts' sense):
it fails too, because "0 errors in 2 invocations" proves nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gangway.config import EnvironmentSpec
from gangway.evidence import Check, GateResult, Strength
from tasks.logs_scan import WindowCount
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

    def add_logs(self, count: WindowCount) -> None:
        """Merge what the new version's logs show in the window."""
        self.logged, self.log_errors = count.invocations, count.errored
        self.orphan_errors, self.unseen = count.orphan_errors, count.unseen
        self.first_log_error = count.first_error

    @staticmethod
    def _ids(outcomes: list[SmokeOutcome]) -> tuple[set[str], int]:
        ids = {o.request_id for o in outcomes if o.request_id}
        return ids, sum(1 for o in outcomes if not o.request_id)

    @property
    def invocations(self) -> int:
        """The new version's invocations in the window: logged or synthetic, by request id."""
        ids, anonymous = self._ids(self.new)
        return len(self.logged | ids) + anonymous

    @property
    def errors(self) -> int:
        """Failed invocations: an error in the logs, or a response that failed validation."""
        ids, anonymous = self._ids([o for o in self.new if not o.ok])
        return len(self.log_errors | ids) + anonymous + self.orphan_errors

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
        }


@dataclass(frozen=True)
class BakeWindow:
    """The bake as requested: how long, and what share of traffic the canary got."""

    bake_s: int
    canary_percent: int


@dataclass(frozen=True)
class BakeVerdict:
    """The bake's gate result, and the reason when it ended inconclusive ("" otherwise)."""

    result: GateResult
    inconclusive: str


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
    # Inconclusive: nothing failed, but too little to pass on. With errors already failing
    # the canary, more traffic is not the remedy.
    inconclusive = rate_ok and not unseen and not enough
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
            remedy=traffic_remedy(environment) if inconclusive else "",
        ),
    )
    result = GateResult(
        gate="bake", boundary="observability", strength=Strength.OBSERVABILITY, checks=checks
    )
    reason = (
        f"inconclusive: {invocations} canary invocations < minimum {policy.min_canary_invocations}"
        if inconclusive
        else ""
    )
    return BakeVerdict(result=result, inconclusive=reason)


def traffic_remedy(environment: EnvironmentSpec) -> str:
    """What to do when a bake saw too little canary traffic to judge."""
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
    return (
        "too little canary traffic to judge the new version, so it was not promoted (the "
        "alias was put back on the old version): " + "; ".join(ways)
    )
