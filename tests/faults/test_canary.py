"""Canary bakes that must not promote: a canary that degrades under the bake's traffic, and a
healthy canary that got too little traffic to be judged (inconclusive).

The bake judges only what the new versions served inside the bake window (the smoke invokes
do not count), validates every synthetic response as the smoke gate does, and needs
environment.deploy.min_canary_invocations of them before it can pass.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from gangway.record import DeployRecord
from tasks import schema

from .conftest import FaultRun, append_python

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
    assert [n for n, c in checks.items() if not c["ok"]] == ["canary traffic"], checks
    remedy = checks["canary traffic"]["remedy"]
    for way in ("send real traffic", "--bake", "min_canary_invocations", "bake_synthetic"):
        assert way in remedy, remedy
    assert "inconclusive" in attempt.error
