"""Is the canary's error rate no worse than the stable version's? A non-inferiority test.

Pure arithmetic, no AWS, no scipy. Both versions' error counts over the same bake window are
compared through the difference of their error rates, d = p_canary - p_stable, bounded by
Newcombe's hybrid score interval (Newcombe 1998, "method 10"): a Wilson score interval
[l, u] is computed for each rate at the same z, and

    lower = d - sqrt((p_canary - l_canary)^2 + (u_stable - p_stable)^2)
    upper = d + sqrt((u_canary - p_canary)^2 + (p_stable - l_stable)^2)

Each bound is used one-sided at the stated confidence c (z = the standard normal's c
quantile: 1.645 at 95 %), which is the usual reading of a non-inferiority test. With the
margin m (absolute, in error-rate units):

* ``upper <= m``: the canary is shown no worse than stable + m (passed);
* ``lower > m``: it is worse than stable + m with confidence (rolled back);
* otherwise inconclusive: the sample cannot tell (rolled back, and said so, with how many
  canary invocations at the observed rates would decide).

A version with no invocations in the window has the rate 0 and the Wilson interval [0, 1]:
with no stable invocations the test reduces to "the canary's own upper bound <= m" (a
canary shown within m of a perfect stable is within m of any stable), and a canary can
never be shown worse than a stable that was not observed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

# The search for the sample that would decide an inconclusive test stops here: beyond it the
# margin is, in practice, the observed difference, and no bake reaches it.
MAX_NEEDED = 10_000_000


@dataclass(frozen=True)
class Rate:
    """Errors among invocations of one version in the window."""

    errors: int
    invocations: int

    @property
    def rate(self) -> float:
        """The observed error rate (0 with no invocations, at most 1)."""
        return min(self.errors / self.invocations, 1.0) if self.invocations else 0.0


@dataclass(frozen=True)
class Interval:
    """A confidence interval [low, high]."""

    low: float
    high: float


class Decision(StrEnum):
    """What the bound shows about the canary against stable + margin."""

    NO_WORSE = "no worse"
    WORSE = "worse"
    INCONCLUSIVE = "inconclusive"


def z_for(confidence: float) -> float:
    """The one-sided standard normal quantile for confidence (0.95 → 1.6449)."""
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
    return NormalDist().inv_cdf(confidence)


def wilson(errors: float, invocations: float, z: float) -> Interval:
    """Wilson's score interval for errors/invocations at z (each side one-sided at z).

    Counts may be fractional (the sample-size search scales observed rates); no invocations
    give [0, 1].
    """
    if invocations <= 0:
        return Interval(0.0, 1.0)
    # Errors beyond the invocations (error lines outside any invocation) are a rate of 1.
    n, p = invocations, min(max(errors / invocations, 0.0), 1.0)
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # Clamped: rounding can leave 0/n a hair below 0 (the true bound is exactly 0).
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def newcombe(canary: Rate, stable: Rate, z: float) -> Interval:
    """Newcombe's hybrid score bounds for p_canary - p_stable, each one-sided at z."""
    return _newcombe(canary.errors, canary.invocations, stable.errors, stable.invocations, z)


def _newcombe(e1: float, n1: float, e0: float, n0: float, z: float) -> Interval:
    p1 = min(e1 / n1, 1.0) if n1 > 0 else 0.0
    p0 = min(e0 / n0, 1.0) if n0 > 0 else 0.0
    w1, w0 = wilson(e1, n1, z), wilson(e0, n0, z)
    d = p1 - p0
    return Interval(
        d - math.hypot(p1 - w1.low, w0.high - p0),
        d + math.hypot(w1.high - p1, p0 - w0.low),
    )


def _decide(bounds: Interval, margin: float) -> Decision:
    if bounds.high <= margin:
        return Decision.NO_WORSE
    if bounds.low > margin:
        return Decision.WORSE
    return Decision.INCONCLUSIVE


@dataclass(frozen=True)
class NonInferiority:
    """The test's inputs, bounds and decision, as the record keeps them."""

    canary: Rate
    stable: Rate
    margin: float
    confidence: float
    bounds: Interval
    decision: Decision
    # Canary invocations that would decide at the observed rates and the same stable share
    # (None: decided, or no sample decides: the observed difference is the margin itself).
    needed: int | None

    @property
    def difference(self) -> float:
        """The observed p_canary - p_stable."""
        return self.canary.rate - self.stable.rate

    def summary(self) -> str:
        """One line: both versions' counts, the bounds against the margin, the decision."""
        c, s = self.canary, self.stable
        level = f"{self.confidence:.0%}"
        text = (
            f"canary {c.errors}/{c.invocations} errors ({c.rate:.1%}) vs stable "
            f"{s.errors}/{s.invocations} ({s.rate:.1%}): difference {_pp(self.difference)}, "
            f"one-sided {level} bounds [{_pp(self.bounds.low)}, {_pp(self.bounds.high)}], "
            f"margin {self.margin * 100:.1f}pp: "
        )
        if self.decision is Decision.NO_WORSE:
            return text + f"no worse (upper bound {_pp(self.bounds.high)} ≤ margin)"
        if self.decision is Decision.WORSE:
            low = _pp(self.bounds.low)
            return text + f"worse with {level} confidence (lower bound {low} > margin)"
        return (
            text
            + f"inconclusive (upper bound {_pp(self.bounds.high)} > margin ≥ lower bound); "
            + self.needed_text()
        )

    def needed_text(self) -> str:
        """How much traffic would decide an inconclusive test."""
        if self.needed is None:
            return "at the observed rates no sample decides (their difference is the margin)"
        share = self.stable.invocations / self.canary.invocations if self.canary.invocations else 0
        stable = f" and {math.ceil(self.needed * share)} stable" if share else ""
        return (
            f"about {self.needed} canary{stable} invocations at the observed rates would decide"
        )

    def evidence(self) -> dict[str, object]:
        """Both versions' counts and rates, the bounds, margin, confidence and decision."""
        return {
            "method": "Newcombe hybrid score interval (Wilson), one-sided bounds",
            "canary": {
                "invocations": self.canary.invocations,
                "errors": self.canary.errors,
                "rate": round(self.canary.rate, 6),
            },
            "stable": {
                "invocations": self.stable.invocations,
                "errors": self.stable.errors,
                "rate": round(self.stable.rate, 6),
            },
            "difference": round(self.difference, 6),
            "lower_bound": round(self.bounds.low, 6),
            "upper_bound": round(self.bounds.high, 6),
            "margin": self.margin,
            "confidence": self.confidence,
            "decision": self.decision.value,
            "needed_canary_invocations": self.needed,
        }


def _pp(value: float) -> str:
    shown = f"{value * 100:+.1f}pp"
    return "+0.0pp" if shown == "-0.0pp" else shown  # a rounding artefact, not a sign


def non_inferiority(
    canary: Rate, stable: Rate, *, margin: float, confidence: float
) -> NonInferiority:
    """Decide whether the canary's error rate is no worse than stable's + margin."""
    z = z_for(confidence)
    bounds = newcombe(canary, stable, z)
    decision = _decide(bounds, margin)
    needed = None
    if decision is Decision.INCONCLUSIVE:
        needed = invocations_needed(canary, stable, margin=margin, z=z)
    return NonInferiority(canary, stable, margin, confidence, bounds, decision, needed)


def invocations_needed(canary: Rate, stable: Rate, *, margin: float, z: float) -> int | None:
    """The fewest canary invocations that would decide at the observed rates, with stable
    invocations in the same proportion (none: none); None when no sample up to MAX_NEEDED
    decides. A canary not yet observed is assumed error-free (the least it could need)."""
    p1, p0 = canary.rate, stable.rate
    share = stable.invocations / canary.invocations if canary.invocations else 0.0
    if not canary.invocations and stable.invocations:
        share = 1.0  # nothing to scale by: assume the split the bake aimed at is even

    def decided(n: int) -> bool:
        n0 = share * n
        return _decide(_newcombe(p1 * n, n, p0 * n0, n0, z), margin) is not Decision.INCONCLUSIVE

    low = max(canary.invocations, 1)
    if decided(low):
        return low
    high = low
    while not decided(high):
        if high >= MAX_NEEDED:
            return None
        high = min(high * 2, MAX_NEEDED)
    # decided() is monotone in n here: both bounds tighten around the fixed difference.
    while high - low > 1:
        mid = (low + high) // 2
        if decided(mid):
            high = mid
        else:
            low = mid
    return high
