"""Canary bakes judged on their traffic: a canary that degrades under the bake's traffic, a
healthy canary that got too little traffic to be judged (inconclusive), a canary twice as bad
as the stable version (shown worse: rolled back), and one as good as it (promoted).

The bake judges only what the new versions served inside the bake window (the smoke invokes
do not count), validates every synthetic response as the smoke gate does, needs
environment.deploy.min_canary_invocations of them, and compares the canary's error rate with
the stable version's over the same window (tasks/noninferiority.py).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from flows.deploy import deploy
from gangway.record import DeployRecord, Outcome
from tasks import schema
from tasks.smoke import smoke_invoke

from .conftest import FAULTS_ENV, FaultRun, append_python

pytestmark = pytest.mark.stack

DEPLOY = "GANGWAY_ENVIRONMENT__DEPLOY__"

FAILS_AFTER_FIRST_CALL = """
    import os as _gw_os

    import pymysql as _gw_pymysql

    _gw_original = {attr}

    def {attr}(event, context):
        # Fails every invocation after this function's first (its smoke test): only the
        # bake's traffic sees the errors, as with a canary that degrades under load.
        conn = _gw_pymysql.connect(
            host=_gw_os.environ["DB_HOST"], port=int(_gw_os.environ["DB_PORT"]),
            user=_gw_os.environ["DB_USER"], password=_gw_os.environ["DB_PASSWORD"],
            database=_gw_os.environ["DB_NAME"], autocommit=True,
        )
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS gw_canary_hits (fn VARCHAR(64))")
            cur.execute("INSERT INTO gw_canary_hits VALUES (%s)", ({module!r},))
            cur.execute("SELECT COUNT(*) FROM gw_canary_hits WHERE fn = %s", ({module!r},))
            hits = cur.fetchone()[0]
        if hits > 1:
            raise RuntimeError("canary degraded (variant)")
        return _gw_original(event, context)
"""


# Deterministic error injection: every k-th invoke of a version fails, counted in the
# environment's MariaDB (one atomic upsert per invoke), so the count is the same whichever
# execution environment serves an invoke, warm or cold, one at a time or concurrently. Each
# function's first invoke of the version (its smoke test) is neither failed nor counted: the
# gates before the canary see a healthy version, and the bake's traffic alone is counted. The
# tag (one per image) keeps every build's counters apart.
FAILS_EVERY_KTH = """
    import os as _gw_os

    import pymysql as _gw_pymysql

    _gw_original = {attr}
    _GW_NEXT = (
        "INSERT INTO gw_fail_every (k, n) VALUES (%s, LAST_INSERT_ID(1)) "
        "ON DUPLICATE KEY UPDATE n = LAST_INSERT_ID(n + 1)"
    )

    def _gw_next(cur, key):
        cur.execute(_GW_NEXT, (key,))
        cur.execute("SELECT LAST_INSERT_ID()")
        return cur.fetchone()[0]

    def {attr}(event, context):
        version = {tag!r} + ":" + _gw_os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "?")
        conn = _gw_pymysql.connect(
            host=_gw_os.environ["DB_HOST"], port=int(_gw_os.environ["DB_PORT"]),
            user=_gw_os.environ["DB_USER"], password=_gw_os.environ["DB_PASSWORD"],
            database=_gw_os.environ["DB_NAME"], autocommit=True,
        )
        with conn, conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS gw_fail_every "
                "(k VARCHAR(191) PRIMARY KEY, n BIGINT NOT NULL)"
            )
            first = _gw_next(cur, version + ":" + {module!r}) == 1
            n = 0 if first else _gw_next(cur, version)
        if n and n % {k} == 0:
            raise RuntimeError(f"injected failure: invoke {{n}} of {{version}} (1 in {k})")
        return _gw_original(event, context)
"""


def fails_every(fault: FaultRun, k: int, tag: str) -> list[str]:
    """Dockerfile steps making every function of the image fail every k-th invoke."""
    return [
        append_python(
            fn.spec.module.split(".")[-1],
            FAILS_EVERY_KTH.format(
                attr=fn.spec.attribute, module=fn.spec.module.split(".")[-1], k=k, tag=tag
            ),
        )
        for fn in fault.config.functions.values()
    ]


def _drop_counters(fault: FaultRun) -> None:
    with schema.engine(fault.config).begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS gw_fail_every"))


# The bake is timed, the statistics need a number of invokes: the rows measure how long one
# synthetic invoke takes on this stack now and bake long enough for PLAN_FACTOR times the
# invokes they need (slower invokes during the bake than measured still leave enough).
PLAN_FACTOR = 1.5
INTERVAL_S = 0.1


class Stable:
    """The stable version a comparison row starts from: a variant failing every k-th invoke,
    deployed all at once, and the measured time of one synthetic invoke through the alias."""

    def __init__(self, fault: FaultRun, variant: Callable[..., None]) -> None:
        self.fault, self.variant = fault, variant
        self.invoke_s = 0.0

    def deploy(self, k: int) -> None:
        """Make the variant failing every k-th invoke the live, stable version."""
        self.variant(*fails_every(self.fault, k, f"stable-{uuid.uuid4().hex[:12]}"))
        record = deploy(env=FAULTS_ENV)
        assert isinstance(record, DeployRecord) and record.outcome is Outcome.SUCCEEDED, record
        self.fault.rebaseline()  # this stable variant is the world the row starts from
        config = self.fault.config
        cases = [c for c in config.smoke if c.ground_truth is None]
        began = time.monotonic()
        for case in cases:
            smoke_invoke(config, case, config.environment.alias, "bake-timing")
        self.invoke_s = (time.monotonic() - began) / len(cases) + INTERVAL_S / len(cases)

    def bake_s(self, invokes: int) -> int:
        """A bake long enough for PLAN_FACTOR x invokes synthetic invokes at the measured pace."""
        return max(20, math.ceil(invokes * PLAN_FACTOR * self.invoke_s))


@pytest.fixture
def stable(
    fault: FaultRun, variant: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Stable]:
    """A stable variant for the row to deploy; afterwards the healthy image is live again
    (deployed, so the ledger agrees) and the counters are gone."""
    _drop_counters(fault)
    made = Stable(fault, variant)
    yield made
    monkeypatch.delenv("GANGWAY_SERVICE__BUILD__DOCKERFILE", raising=False)
    try:
        record = deploy(env=FAULTS_ENV)
        assert isinstance(record, DeployRecord) and record.outcome is Outcome.SUCCEEDED, record
        fault.rebaseline()  # the healthy image again: nothing left for the row's teardown
    finally:
        _drop_counters(fault)


def _comparison(record: DeployRecord) -> dict:
    checks = _bake_checks(record)
    return checks["canary vs stable error rate"]


def _drop_hits(fault: FaultRun) -> None:
    with schema.engine(fault.config).begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS gw_canary_hits"))


def _bake_checks(record: DeployRecord) -> dict[str, dict]:
    """The bake gate's checks in the record, by name."""
    bake = next(g for g in record.gates if g.gate == "bake")
    return {c.name: c.model_dump() for c in bake.checks}


@pytest.mark.fault("canary passes smoke, then errors under the bake's traffic", group="orch")
def test_canary_error_rate_rolls_back(
    fault: FaultRun, variant: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Why this can no longer pass by chance: the 7 smoke invokes are outside the bake window,
    # so only the bake's own traffic counts. Every synthetic invoke that reaches the new
    # version fails its validated response (and logs the error): the error rate fails. If
    # none reaches it, the new version served 0 < 20 invocations: inconclusive. Both roll back.
    monkeypatch.setenv(DEPLOY + "BAKE_INVOKE_INTERVAL_S", "0.1")
    monkeypatch.setenv(DEPLOY + "MIN_CANARY_INVOCATIONS", "20")
    _drop_hits(fault)
    variant(
        *(
            append_python(
                fn.spec.module.split(".")[-1],
                FAILS_AFTER_FIRST_CALL.format(
                    attr=fn.spec.attribute, module=fn.spec.module.split(".")[-1]
                ),
            )
            for fn in fault.config.functions.values()
        )
    )
    try:
        attempt = fault.deploy(canary_percent=50, bake_s=6)
    finally:
        _drop_hits(fault)
    record = fault.rolled_back(attempt, step="bake", boundary="observability")
    assert record.traffic == {"mode": "canary", "canary_percent": 50, "bake_s": 6}
    checks = _bake_checks(record)
    evidence = checks["canary error rate"]["evidence"]
    reached = sum(e["synthetic_new"] for e in evidence.values())
    failed = sum(e["synthetic_failed_new"] for e in evidence.values())
    # The smoke invokes (the only passing calls of the new version) are not counted.
    assert sum(e["invocations"] for e in evidence.values()) == sum(
        e["errors"] for e in evidence.values()
    )
    if reached:
        assert failed == reached, evidence
        assert not checks["canary error rate"]["ok"]
        assert "canary degraded (variant)" in checks["canary error rate"]["found"]
        assert "inconclusive" not in record.message
    else:  # about 1 run in 2**(number of synthetic invokes): none reached the canary
        assert not checks["canary traffic"]["ok"] and "inconclusive" in record.message


@pytest.mark.fault("healthy canary with too little traffic in the bake: inconclusive", group="orch")
def test_canary_without_enough_traffic_is_inconclusive(
    fault: FaultRun, new_image: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No synthetic traffic and nobody else calls prod's functions in the rehearsal: the new
    # versions serve 0 invocations in the window, below the default minimum of 20.
    monkeypatch.setenv(DEPLOY + "BAKE_SYNTHETIC", "false")
    monkeypatch.delenv(DEPLOY + "MIN_CANARY_INVOCATIONS", raising=False)
    attempt = fault.deploy(canary_percent=10, bake_s=2)
    record = fault.rolled_back(
        attempt, step="bake", boundary="observability", says=("inconclusive",)
    )
    assert "inconclusive: 0 canary invocations < minimum 20" in record.message, record.message
    checks = _bake_checks(record)
    # Nothing to compare either: the comparison is inconclusive too, the minimum the reason.
    assert [n for n, c in checks.items() if not c["ok"]] == [
        "canary traffic",
        "canary vs stable error rate",
    ], checks
    assert checks["canary vs stable error rate"]["evidence"]["decision"] == "inconclusive"
    remedy = checks["canary traffic"]["remedy"]
    for way in ("send real traffic", "--bake", "min_canary_invocations", "bake_synthetic"):
        assert way in remedy, remedy
    assert "inconclusive" in attempt.error


# Invokes the rows need, total over both versions at a 50 % canary: the fewest for which the
# decision fails with probability < 1e-9 over the binomial split of the bake's traffic (the
# alias routes each invoke at random), computed with tasks.noninferiority at the defaults
# (5 pp margin, 95 %): 130 for every 2nd vs every 4th (counting one extra stable error from
# the timing invokes), 310 for every 25th vs every 25th. Planned with headroom over both.
WORSE_INVOKES = 150
EQUAL_INVOKES = 340


@pytest.mark.fault(
    "canary 2x worse than stable (fails every 2nd vs every 4th invoke): rolled back",
    group="orch",
)
def test_canary_twice_as_bad_as_stable_is_shown_worse_and_rolled_back(
    fault: FaultRun,
    stable: Stable,
    variant: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The absolute ceiling is raised out of the way (a 50 % canary would fail it on its own):
    # the comparison with the stable version alone must catch it. Margin and confidence are
    # the defaults (5 pp, 95 %).
    monkeypatch.setenv(DEPLOY + "ERROR_RATE_THRESHOLD", "1.0")
    monkeypatch.setenv(DEPLOY + "BAKE_INVOKE_INTERVAL_S", str(INTERVAL_S))
    monkeypatch.delenv(DEPLOY + "MIN_CANARY_INVOCATIONS", raising=False)
    stable.deploy(4)
    variant(*fails_every(fault, 2, f"canary-{uuid.uuid4().hex[:12]}"))
    bake_s = stable.bake_s(WORSE_INVOKES)
    attempt = fault.deploy(canary_percent=50, bake_s=bake_s)
    record = fault.rolled_back(
        attempt, step="bake", boundary="observability", says=("worse with 95% confidence",)
    )
    checks = _bake_checks(record)
    assert [n for n, c in checks.items() if not c["ok"]] == ["canary vs stable error rate"], {
        n: c["found"] for n, c in checks.items()
    }
    evidence = _comparison(record)["evidence"]
    canary, old = evidence["canary"], evidence["stable"]
    # Deterministic: exactly every 2nd canary invoke in the window failed; the stable one's
    # count started at the timing invokes, so it failed every 4th give or take one.
    assert canary["errors"] == canary["invocations"] // 2, evidence
    assert old["errors"] - old["invocations"] // 4 in (0, 1), evidence
    assert evidence["decision"] == "worse" and evidence["lower_bound"] > evidence["margin"]
    assert (evidence["margin"], evidence["confidence"]) == (0.05, 0.95)
    assert "inconclusive" not in record.message
    print(f"\nbake {bake_s}s: {_comparison(record)['found']}")


@pytest.mark.fault(
    "canary as good as stable (both fail every 25th invoke): shown no worse, promoted",
    group="orch",
)
def test_canary_as_good_as_stable_is_shown_no_worse_and_promoted(
    fault: FaultRun,
    stable: Stable,
    variant: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every setting that decides is the default: ceiling 5 % (4 % observed), minimum 20
    # invocations, margin 5 pp, confidence 95 %.
    monkeypatch.setenv(DEPLOY + "BAKE_INVOKE_INTERVAL_S", str(INTERVAL_S))
    monkeypatch.delenv(DEPLOY + "MIN_CANARY_INVOCATIONS", raising=False)
    stable.deploy(25)
    variant(*fails_every(fault, 25, f"canary-{uuid.uuid4().hex[:12]}"))
    bake_s = stable.bake_s(EQUAL_INVOKES)
    attempt = fault.deploy(canary_percent=50, bake_s=bake_s)
    record = attempt.record
    comparison = _comparison(record) if record and record.gates else {"found": attempt.error}
    fault.recovered(
        attempt,
        caught_at="bake",
        boundary="observability",
        evidence=f"bake {bake_s}s: {comparison['found']}",
    )
    assert record is not None
    checks = _bake_checks(record)
    assert all(c["ok"] for c in checks.values()), {n: c["found"] for n, c in checks.items()}
    evidence = comparison["evidence"]
    canary, old = evidence["canary"], evidence["stable"]
    assert canary["errors"] == canary["invocations"] // 25 > 0, evidence
    assert old["errors"] - old["invocations"] // 25 in (0, 1) and old["errors"] > 0, evidence
    assert evidence["decision"] == "no worse" and evidence["upper_bound"] <= 0.05, evidence
    assert [s.name for s in record.steps][-2:] == ["bake", "full shift"]
    print(f"\nbake {bake_s}s: {comparison['found']}")
