"""Data faults: the code → storage boundary, caught before traffic or proven wrong after it.

Each row changes what the code writes (a variant of the reference image) or the schema it
writes into (a migration, a downgrade), runs a real deploy against the environment's MariaDB,
and expects the gate that owns the boundary to catch it: the migration lint or the
schema-state check before anything runs, verify-columns before traffic, and after traffic the
smoke invoke (an error the database raised) or the ground truth (a value stored wrongly
without any error), with the alias put back and read back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from gangway.config import REPO_ROOT, DeployConfig
from gangway.record import DeployRecord
from tasks import schema

from .conftest import FaultRun, add_revision_0003, append_python, replace_text

pytestmark = pytest.mark.stack

TABLE = "precomputed_reports"
WORKER_STORE = 'report_json=json.dumps(report, sort_keys=True, separators=(",", ":")),'


@pytest.fixture
def real_config(fault: FaultRun) -> DeployConfig:
    """The environment's configuration with the committed migrations (for repairs)."""
    # `fault` loads its configuration before any row-specific override is set.
    assert fault.config.migrations_dir == (REPO_ROOT / "migrations").resolve()
    return fault.config


@pytest.fixture
def schema_restored(real_config: DeployConfig) -> Iterator[None]:
    """Put the schema back at head afterwards, whatever the row did to it."""
    yield
    schema.upgrade(real_config)


def assert_worker_failed_first(record: DeployRecord) -> None:
    """The report worker's invoke failed; the other failed checks are its consequences."""
    worker, *consequences = record.trigger["checks"]
    assert worker["name"] == "report worker stores row and PDF: function error"
    # The API then serves the row the previous deploy stored: a consequence, reported too.
    assert all(c["name"].startswith("api serves the stored report") for c in consequences)


@pytest.mark.fault("the column the code writes does not exist", group="data")
def test_missing_column_blocks_at_verify_columns(
    fault: FaultRun, real_config: DeployConfig, schema_restored: None, migrations_copy: Path
) -> None:
    # The database is at 0001 and the code's migrations have no revision adding pdf_s3_key:
    # the code that writes it must not ship.
    with schema.engine(real_config).begin() as conn:
        command.downgrade(schema.alembic_config(real_config, conn), "0001")
    (migrations_copy / "versions" / "0002_add_pdf_s3_key.py").unlink()
    attempt = fault.deploy()
    record = fault.blocked(
        attempt,
        step="verify columns",
        boundary="data",
        says=(f"{TABLE}.pdf_s3_key", "column does not exist"),
    )
    [missing] = [c for c in record.trigger["checks"] if c["name"] == f"{TABLE}.pdf_s3_key"]
    assert missing["remedy"] == f"write a migration that adds {TABLE}.pdf_s3_key"
    assert not any(m.version_after for m in record.functions.values())


@pytest.mark.fault("the INSERT silently drops pdf_s3_key", group="data")
def test_insert_dropping_pdf_s3_key_rolls_back_at_ground_truth(
    fault: FaultRun, real_config: DeployConfig, variant: Callable[..., None]
) -> None:
    # The incident: the column list loses pdf_s3_key, the INSERT succeeds, the handler still
    # returns the key, and only the table shows the value is gone. The smoke row is deleted
    # first so the INSERT makes a new row, as a new day's report does (an upsert onto an old
    # row would keep the old key, which ground truth reports as a different value).
    with schema.engine(real_config).begin() as conn:
        conn.execute(sa.text(f"DELETE FROM {TABLE} WHERE symbol = 'GWSMOKE'"))
    variant(replace_text("models", '    "pdf_s3_key",\n', ""))
    attempt = fault.deploy()
    record = fault.rolled_back(
        attempt,
        step="ground truth",
        boundary="data",
        says=(f"{TABLE}.pdf_s3_key", "pdf_s3_key = NULL", "the INSERT does not write pdf_s3_key"),
    )
    smoke = next(g for g in record.gates if g.gate == "smoke")
    assert smoke.status.value == "passed", "the handler's own answer looked right"


@pytest.mark.fault("NULL written into a NOT NULL column", group="data")
def test_null_into_not_null_column_rolls_back_at_smoke(
    fault: FaultRun, variant: Callable[..., None]
) -> None:
    # A single-row INSERT of an explicit NULL into a NOT NULL column is refused (error 1048,
    # strict mode or not): the handler raises after uploading the PDF, the invoke reports a
    # FunctionError. Nothing is stored, so no ground truth is needed to see it.
    variant(
        replace_text("report_worker", "        updated_at=now_utc,\n", "        updated_at=None,\n")
    )
    attempt = fault.deploy()
    record = fault.rolled_back(
        attempt,
        step="smoke",
        boundary="deployment",
        says=(
            "IntegrityError: (1048, \"Column 'updated_at' cannot be null\")",
            "the database refused the row the handler wrote",
        ),
    )
    assert_worker_failed_first(record)


@pytest.mark.fault("a dict written where a JSON string is needed", group="data")
def test_dict_for_json_column_rolls_back_at_smoke(
    fault: FaultRun, variant: Callable[..., None]
) -> None:
    # What really happens: PyMySQL (1.2 here) refuses a dict parameter before any SQL is
    # sent, so nothing is stored and the handler raises. No silent repr reaches the column.
    variant(replace_text("report_worker", WORKER_STORE, "report_json=report,"))
    attempt = fault.deploy()
    record = fault.rolled_back(
        attempt,
        step="smoke",
        boundary="deployment",
        says=(
            "TypeError: dict can not be used as parameter",
            "serialise it first (json.dumps for a json column)",
        ),
    )
    assert_worker_failed_first(record)


DOUBLE_ENCODED = """
    import dataclasses as _gw_dataclasses

    _gw_store_report = store_report
    _gw_decode_row = decode_row


    def store_report(conn, table, row):
        # The variant: the JSON text is encoded once more on the way in, so the JSON column
        # holds a JSON *string*, not the report object...
        encoded = json.dumps(row.report_json)
        return _gw_store_report(conn, table, _gw_dataclasses.replace(row, report_json=encoded))


    def decode_row(row):
        # ...and decoded once more on the way out, so every handler's answer still looks right.
        value = row.get("report_json")
        if isinstance(value, bytes | str):
            row = {**row, "report_json": json.loads(value)}
        return _gw_decode_row(row)
"""


@pytest.mark.fault(
    "JSON column stores a double-encoded string; the code reads it back twice", group="data"
)
def test_double_encoded_json_column_rolls_back_at_ground_truth(
    fault: FaultRun, variant: Callable[..., None]
) -> None:
    # The stored value is wrong for every other reader (JSON_EXTRACT, analytics, the next
    # service) while the app round-trips it: the smoke answers, the API serves the report,
    # and the correlation id is still a substring of the column. Only the stored JSON shows it.
    variant(append_python("reports", DOUBLE_ENCODED))
    attempt = fault.deploy()
    record = fault.rolled_back(
        attempt,
        step="ground truth",
        boundary="data",
        says=(f"{TABLE}.report_json", "a JSON string holding JSON of an object (double-encoded)"),
    )
    smoke = next(g for g in record.gates if g.gate == "smoke")
    assert smoke.status.value == "passed", "every handler's answer looked right"
    # The database agrees, independently of gangway: the column holds a string, not an object.
    engine = schema.engine(fault.config)
    try:
        with engine.connect() as conn:
            kind = conn.execute(
                sa.text(
                    f"SELECT JSON_TYPE(report_json) FROM {TABLE} "
                    "WHERE symbol = 'GWSMOKE' AND report_date = '2000-01-03'"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    assert kind == "STRING"


@pytest.mark.fault("a migration that fails halfway", group="data")
def test_migration_failing_halfway_blocks_with_the_exact_schema_state(
    fault: FaultRun, real_config: DeployConfig, migrations_copy: Path
) -> None:
    add_revision_0003(
        migrations_copy,
        "Add source, then a column that already exists: fails after the first DDL.",
        f'op.add_column("{TABLE}", sa.Column("source", sa.String(32)))',
        f'op.add_column("{TABLE}", sa.Column("symbol", sa.String(16)))',
    )
    try:
        attempt = fault.deploy()
    finally:
        # MySQL DDL is not transactional: the first ADD COLUMN stayed. Repair for later rows.
        if "source" in schema.columns(real_config, TABLE):
            with schema.engine(real_config).begin() as conn:
                conn.execute(sa.text(f"ALTER TABLE {TABLE} DROP COLUMN source"))
    record = fault.blocked(
        attempt,
        step="migration applied",
        boundary="data",
        says=("unexpected ['source']", "partially applied revision 0003"),
    )
    assert schema.current_revision(real_config) == "0002"
    assert record.image_digest, "the image was built and pushed before the migration ran"
    assert not any(m.version_after for m in record.functions.values())


@pytest.mark.fault("a destructive migration (drops a column)", group="data")
def test_destructive_migration_blocks_at_the_lint(
    fault: FaultRun, real_config: DeployConfig, migrations_copy: Path
) -> None:
    add_revision_0003(
        migrations_copy, "Drop report_json.", f'op.drop_column("{TABLE}", "report_json")'
    )
    attempt = fault.deploy()
    fault.blocked(
        attempt,
        step="migration lint",
        boundary="data",
        says=(f"drops a column of {TABLE}", "allow_destructive"),
    )
    assert schema.current_revision(real_config) == "0002"
    assert "report_json" in schema.columns(real_config, TABLE)
