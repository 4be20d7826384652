"""A canary that passes its smoke test and then degrades under the bake's traffic.

Only the error rate over the bake catches it; the rollback takes the canary weight off.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from tasks import schema

from .conftest import FaultRun, append_python

pytestmark = pytest.mark.stack

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


@pytest.mark.fault("canary passes smoke, then errors under the bake's traffic", group="orch")
def test_canary_error_rate_rolls_back(fault: FaultRun, variant: Callable[..., None]) -> None:
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
    record = fault.rolled_back(
        attempt, step="bake", boundary="observability", says=("canary error rate",)
    )
    assert record.traffic == {"mode": "canary", "canary_percent": 50, "bake_s": 6}
