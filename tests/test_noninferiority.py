"""The non-inferiority arithmetic against published and hand-computed values (no scipy).

Published values: Newcombe, R. G. (1998) "Interval estimation for the difference between
independent proportions: comparison of eleven methods", Statistics in Medicine 17, 873-890,
Table II, method 10 (the hybrid score interval), two-sided 95 % (each side one-sided 97.5 %);
and Newcombe (1998) "Two-sided confidence intervals for the single proportion", Statistics in
Medicine 17, 857-872, Table I, the Wilson score method (no continuity correction).
"""

from __future__ import annotations

import math

import pytest

from tasks.noninferiority import (
    Decision,
    Rate,
    invocations_needed,
    newcombe,
    non_inferiority,
    wilson,
    z_for,
)

Z95 = z_for(0.95)  # one-sided 95 %
Z975 = z_for(0.975)  # one-sided 97.5 % = two-sided 95 %


def test_normal_quantiles_are_the_table_values() -> None:
    assert Z95 == pytest.approx(1.644854, abs=1e-6)
    assert Z975 == pytest.approx(1.959964, abs=1e-6)
    with pytest.raises(ValueError):
        z_for(0.4)


@pytest.mark.parametrize(
    ("errors", "n", "low", "high"),
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombe_single_proportion(
    errors: int, n: int, low: float, high: float
) -> None:
    found = wilson(errors, n, Z975)
    assert (round(found.low, 4), round(found.high, 4)) == (low, high)


@pytest.mark.parametrize(
    ("a", "m", "b", "n", "low", "high"),
    [
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.0582, 0.8062),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (0, 10, 0, 10, -0.2775, 0.2775),
        (10, 10, 0, 20, 0.6791, 1.0000),
        (10, 10, 0, 10, 0.6075, 1.0000),
    ],
)
def test_newcombe_hybrid_score_matches_the_published_table(
    a: int, m: int, b: int, n: int, low: float, high: float
) -> None:
    found = newcombe(Rate(a, m), Rate(b, n), Z975)
    assert (round(found.low, 4), round(found.high, 4)) == (low, high)


def test_a_canary_twice_as_bad_is_worse_by_hand() -> None:
    # By hand, z = 1.644854, z^2 = 2.705543, n = 100 on both sides:
    # Wilson 50/100: centre (0.5 + 0.013528) / 1.027055 = 0.5, half 1.601524 * sqrt(0.0025 +
    #   0.0000676) = 0.081155 -> [0.418845, 0.581155];
    # Wilson 25/100: centre 0.263528 / 1.027055 = 0.256586, half 1.601524 * sqrt(0.001875 +
    #   0.0000676) = 0.070591 -> [0.185995, 0.327177];
    # lower = 0.25 - sqrt(0.081155^2 + 0.077177^2) = 0.25 - 0.111987 = 0.138013 > 0.05;
    # upper = 0.25 + sqrt(0.081155^2 + 0.064005^2) = 0.25 + 0.103357 = 0.353357.
    found = non_inferiority(Rate(50, 100), Rate(25, 100), margin=0.05, confidence=0.95)
    assert found.bounds.low == pytest.approx(0.138013, abs=2e-6)
    assert found.bounds.high == pytest.approx(0.353357, abs=1e-5)
    assert found.decision is Decision.WORSE and found.needed is None
    assert "worse with 95% confidence" in found.summary()
    assert "canary 50/100 errors (50.0%) vs stable 25/100 (25.0%)" in found.summary()


def test_a_clean_canary_needs_52_invocations_at_5pp_and_95_percent() -> None:
    # 0 errors: the canary's Wilson upper bound is z^2 / (n + z^2); with a clean stable
    # (p - l = 0) Newcombe's upper bound is exactly that. 2.705543 / 54.705543 = 0.049457
    # <= 0.05 at n = 52; 2.705543 / 53.705543 = 0.050377 > 0.05 at n = 51.
    passed = non_inferiority(Rate(0, 52), Rate(0, 300), margin=0.05, confidence=0.95)
    assert passed.bounds.high == pytest.approx(Z95**2 / (52 + Z95**2))
    assert passed.decision is Decision.NO_WORSE
    short = non_inferiority(Rate(0, 51), Rate(0, 300), margin=0.05, confidence=0.95)
    assert short.decision is Decision.INCONCLUSIVE and short.needed == 52
    assert "about 52 canary and 306 stable invocations" in short.summary()


def test_equal_rates_pass_only_with_enough_traffic() -> None:
    small = non_inferiority(Rate(4, 100), Rate(4, 100), margin=0.05, confidence=0.95)
    assert small.decision is Decision.INCONCLUSIVE
    assert small.bounds.high == pytest.approx(-small.bounds.low)  # symmetric at equal rates
    assert small.needed is not None and small.needed > 100
    large = non_inferiority(Rate(12, 300), Rate(12, 300), margin=0.05, confidence=0.95)
    assert large.decision is Decision.NO_WORSE and large.bounds.high < 0.05
    # A sample beyond the one said to decide does decide.
    decided = non_inferiority(Rate(5, 130), Rate(5, 130), margin=0.05, confidence=0.95)
    assert decided.decision is Decision.NO_WORSE


def test_needed_is_where_the_bound_crosses_the_margin() -> None:
    # 0 errors on both sides: the boundary is 52 whatever the stable count (see above).
    assert invocations_needed(Rate(0, 10), Rate(0, 90), margin=0.05, z=Z95) == 52
    # At 1 pp the same rule gives z^2 * 99 = 267.8: 268.
    assert invocations_needed(Rate(0, 10), Rate(0, 90), margin=0.01, z=Z95) == 268


def test_a_difference_equal_to_the_margin_never_decides() -> None:
    found = non_inferiority(Rate(10, 100), Rate(5, 100), margin=0.05, confidence=0.95)
    assert found.decision is Decision.INCONCLUSIVE and found.needed is None
    assert "no sample decides" in found.summary()


def test_no_stable_invocations_reduce_to_the_canarys_own_bound() -> None:
    # Stable unobserved: rate 0, interval [0, 1]. The upper bound is the canary's own Wilson
    # upper bound; the lower bound is at most p - 1, so "worse" is impossible.
    clean = non_inferiority(Rate(0, 60), Rate(0, 0), margin=0.05, confidence=0.95)
    assert clean.bounds.high == pytest.approx(wilson(0, 60, Z95).high)
    assert clean.decision is Decision.NO_WORSE
    broken = non_inferiority(Rate(60, 60), Rate(0, 0), margin=0.05, confidence=0.95)
    assert broken.decision is Decision.INCONCLUSIVE and broken.bounds.low <= 0.0
    assert broken.needed is None  # the canary's rate (100 %) is far above any margin


def test_a_canary_better_than_a_failing_stable_passes_on_few_invocations() -> None:
    found = non_inferiority(Rate(0, 20), Rate(9, 20), margin=0.05, confidence=0.95)
    assert found.decision is Decision.NO_WORSE and found.bounds.high < 0


def test_evidence_carries_both_versions_the_bounds_margin_and_confidence() -> None:
    found = non_inferiority(Rate(3, 60), Rate(2, 58), margin=0.05, confidence=0.95)
    evidence = found.evidence()
    assert evidence["canary"] == {"invocations": 60, "errors": 3, "rate": 0.05}
    assert evidence["stable"] == {"invocations": 58, "errors": 2, "rate": round(2 / 58, 6)}
    assert evidence["margin"] == 0.05 and evidence["confidence"] == 0.95
    assert evidence["decision"] == "inconclusive"
    assert evidence["upper_bound"] > 0.05 >= evidence["lower_bound"]
    assert evidence["needed_canary_invocations"] == found.needed
    assert math.isclose(evidence["difference"], 0.05 - 2 / 58, abs_tol=1e-6)


def test_errors_beyond_the_invocations_count_as_a_rate_of_one() -> None:
    # Error lines outside any invocation (an init failure) can outnumber the invocations.
    found = non_inferiority(Rate(5, 3), Rate(0, 50), margin=0.05, confidence=0.95)
    assert found.canary.rate == 1.0 and found.decision is Decision.WORSE
