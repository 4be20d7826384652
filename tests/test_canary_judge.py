"""The bake's judgement, on tallies (no AWS): errors fail it, too little traffic makes it
inconclusive, a response that failed on the new version counts even when logs are silent, and
the canary must be shown no worse than the stable version over the same window."""

from __future__ import annotations

from gangway.config import EnvironmentSpec
from gangway.evidence import Check, GateResult, Strength
from tasks.canary import BakeTally, BakeWindow, judge_bake
from tasks.logs_scan import WindowCount
from tasks.smoke import SmokeOutcome

WINDOW = BakeWindow(bake_s=60, canary_percent=10)


def environment(**deploy: object) -> EnvironmentSpec:
    return EnvironmentSpec.model_validate(
        {
            "name": "dev",
            "registry": "127.0.0.1:5000",
            "bucket": "b",
            "database": {"host": "h", "name": "d", "user": "u", "password_env": "P"},
            "deploy": {"min_canary_invocations": 5, **deploy},
        }
    )


def invoke(version: str | None, request_id: str, ok: bool = True) -> SmokeOutcome:
    check = Check(name="status", ok=ok, expected="200", found="200" if ok else "500")
    return SmokeOutcome(
        case="api-health",
        function="api",
        function_name="svc-dev-api",
        qualifier="live",
        result=GateResult(
            gate="smoke", boundary="deployment", strength=Strength.CONTENT, checks=(check,)
        ),
        executed_version=version,
        request_id=request_id,
    )


def logs(invocations: set[str], errored: set[str] = frozenset(), unseen: tuple = ()) -> WindowCount:
    return WindowCount(
        invocations=frozenset(invocations),
        errored=frozenset(errored),
        orphan_errors=0,
        unseen=unseen,
    )


def judge(synthetic: list[SmokeOutcome], count: WindowCount, **deploy: object):
    tally = BakeTally.of(synthetic, "api", "7")
    tally.add_logs(count)
    return judge_bake(environment(**deploy), WINDOW, {"api": tally}, synthetic)


def check(verdict, name: str) -> Check:
    return next(c for c in verdict.result.checks if c.name == name)


def test_enough_clean_canary_traffic_passes() -> None:
    # 52 clean canary invocations: the fewest that show a clean canary within the default
    # 5 pp of stable at 95 % (z^2 / (52 + z^2) = 0.0495; tests/test_noninferiority.py).
    synthetic = [invoke("7", f"r{i}") for i in range(3)] + [invoke("6", "old1")]
    real = {f"real{i}" for i in range(49)}
    verdict = judge(synthetic, logs({"r0", "r1", "r2"} | real))
    assert verdict.result.status.value == "passed" and verdict.inconclusive == ""
    # Synthetic invokes are counted once (by request id), real traffic alike.
    assert "52 canary invocations" in check(verdict, "canary traffic").found
    assert check(verdict, "canary vs stable error rate").ok
    assert verdict.comparison.canary.invocations == 52


def test_clean_traffic_above_the_minimum_but_too_little_to_compare_is_inconclusive() -> None:
    synthetic = [invoke("7", f"r{i}") for i in range(5)] + [invoke("6", "old1")]
    verdict = judge(synthetic, logs({f"r{i}" for i in range(5)}))
    assert verdict.result.status.value == "failed"
    assert check(verdict, "canary traffic").ok and check(verdict, "canary error rate").ok
    comparison = check(verdict, "canary vs stable error rate")
    assert not comparison.ok and "inconclusive" in comparison.found
    assert verdict.inconclusive.startswith("inconclusive: the canary is not shown no worse")
    assert "canary 0/5 errors, stable 0/1" in verdict.inconclusive
    assert "about 52 canary" in verdict.inconclusive
    assert "noninferiority_margin" in comparison.remedy


def stable_logs(tally: BakeTally, invocations: set[str], errored: set[str] = frozenset()) -> None:
    tally.add_stable_logs(logs(invocations, errored))


def test_a_canary_shown_worse_than_stable_fails_even_under_the_ceiling() -> None:
    # Canary 50/100 errors, stable 25/100: the lower bound of the difference (+13.8 pp, by
    # hand in tests/test_noninferiority.py) is above the 5 pp margin. The ceiling is raised
    # out of the way: the comparison alone fails the bake.
    synthetic = [invoke("7", f"r{i}", ok=i % 2 == 1) for i in range(100)]
    synthetic += [invoke("6", f"o{i}", ok=i % 4 != 3) for i in range(100)]
    tally = BakeTally.of(synthetic, "api", "7")
    tally.add_logs(logs({f"r{i}" for i in range(100)}))
    stable_logs(tally, {f"o{i}" for i in range(100)})
    verdict = judge_bake(environment(error_rate_threshold=1.0), WINDOW, {"api": tally}, synthetic)
    failed = [c.name for c in verdict.result.checks if not c.ok]
    assert failed == ["canary vs stable error rate"] and verdict.inconclusive == ""
    evidence = check(verdict, "canary vs stable error rate").evidence
    assert evidence["canary"] == {"invocations": 100, "errors": 50, "rate": 0.5}
    assert evidence["stable"] == {"invocations": 100, "errors": 25, "rate": 0.25}
    assert evidence["decision"] == "worse" and round(evidence["lower_bound"], 4) == 0.138
    assert evidence["margin"] == 0.05 and evidence["confidence"] == 0.95


def test_the_stable_side_counts_its_logs_and_synthetic_invokes_by_request_id() -> None:
    synthetic = [invoke("7", f"r{i}") for i in range(60)]
    synthetic += [invoke("6", "o1"), invoke("6", "o2", ok=False)]
    tally = BakeTally.of(synthetic, "api", "7")
    tally.add_logs(logs({f"r{i}" for i in range(60)}))
    # o1 logged an error, o2 failed its response (its log line never arrived), real1 is
    # stable's real traffic: 3 stable invocations, 2 of them failed.
    tally.add_stable_logs(
        WindowCount(
            invocations=frozenset({"o1", "real1"}),
            errored=frozenset({"o1"}),
            orphan_errors=0,
            unseen=("o2",),
        )
    )
    assert (tally.stable_invocations, tally.stable_errors) == (3, 2)
    verdict = judge_bake(environment(), WINDOW, {"api": tally}, synthetic)
    # A stable line that never arrived does not fail the bake (it could only hide a stable
    # error, which makes the canary look worse, never better).
    assert check(verdict, "canary logs delivered").ok
    assert verdict.result.status.value == "passed", verdict.result.checks
    evidence = check(verdict, "canary error rate").evidence["api"]
    assert evidence["stable_invocations"] == 3 and evidence["stable_errors"] == 2
    assert evidence["stable_unseen"] == ["o2"]


def test_too_little_traffic_is_inconclusive_not_passed() -> None:
    synthetic = [invoke("6", f"old{i}") for i in range(6)]  # none reached the canary
    verdict = judge(synthetic, logs(set()))
    assert verdict.result.status.value == "failed"
    assert verdict.inconclusive == "inconclusive: 0 canary invocations < minimum 5"
    traffic = check(verdict, "canary traffic")
    assert traffic.found.startswith("inconclusive: 0 canary invocations")
    assert "min_canary_invocations" in traffic.remedy
    # The comparison cannot pass on nothing either, and says so; the minimum is the reason.
    assert not check(verdict, "canary vs stable error rate").ok


def test_a_failed_response_on_the_canary_fails_it_even_with_silent_logs() -> None:
    synthetic = [invoke("7", "r1", ok=False)] + [invoke("7", f"r{i}") for i in range(2, 7)]
    verdict = judge(synthetic, logs({f"r{i}" for i in range(2, 7)}))
    rate = check(verdict, "canary error rate")
    assert not rate.ok and "1 errors in 6 canary invocations" in rate.found
    assert verdict.inconclusive == ""  # failing, not inconclusive


def test_errors_with_too_little_traffic_fail_rather_than_inconclusive() -> None:
    verdict = judge([invoke("7", "r1", ok=False)], logs(set()))
    assert verdict.inconclusive == ""
    assert not check(verdict, "canary error rate").ok
    assert check(verdict, "canary traffic").remedy == ""


def test_a_log_line_that_never_arrived_fails_the_bake() -> None:
    synthetic = [invoke("7", f"r{i}") for i in range(5)]
    verdict = judge(synthetic, logs({"r0", "r1", "r2", "r3"}, unseen=("r4",)))
    assert not check(verdict, "canary logs delivered").ok
    assert verdict.result.status.value == "failed"


def test_an_invoke_with_no_answer_is_neither_canary_nor_old() -> None:
    tally = BakeTally.of([invoke(None, "x"), invoke("7", "r1"), invoke("6", "o1")], "api", "7")
    assert [o.request_id for o in tally.new] == ["r1"]
    assert [o.request_id for o in tally.old] == ["o1"]
