"""The bake's judgement, on tallies (no AWS): errors fail it, too little traffic makes it
inconclusive, and a response that failed on the new version counts even when logs are silent."""

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
    synthetic = [invoke("7", f"r{i}") for i in range(3)] + [invoke("6", "old1")]
    verdict = judge(synthetic, logs({"r0", "r1", "r2", "real1", "real2"}))
    assert verdict.result.status.value == "passed" and verdict.inconclusive == ""
    # Synthetic invokes are counted once (by request id), real traffic alike.
    assert "5 canary invocations" in check(verdict, "canary traffic").found


def test_too_little_traffic_is_inconclusive_not_passed() -> None:
    synthetic = [invoke("6", f"old{i}") for i in range(6)]  # none reached the canary
    verdict = judge(synthetic, logs(set()))
    assert verdict.result.status.value == "failed"
    assert verdict.inconclusive == "inconclusive: 0 canary invocations < minimum 5"
    traffic = check(verdict, "canary traffic")
    assert traffic.found.startswith("inconclusive: 0 canary invocations")
    assert "min_canary_invocations" in traffic.remedy


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
