"""Promotion faults: each refused by the promotion policy before anything moves, and a target
gate failure that rolls back the target only.

Every row promotes the matrix environment's validated HEAD (``validated_head``) into
staging with `gangway promote`, as a user would; the verdict reads the TARGET's aliases.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from gangway.config import REPO_ROOT, load_config
from gangway.record import DeployRecord
from tasks import schema
from tasks.source import _git

from .conftest import FAULTS_ENV, FaultRun, read_aliases

EXIT_FAILED, EXIT_REFUSED = 1, 2
TARGET = "staging"
POLICY = "promotion policy"


def _aim(fault: FaultRun, env: str = TARGET) -> None:
    """Judge the row on the target environment's aliases."""
    fault.config = load_config(env)
    fault.rebaseline()


def _promote(fault: FaultRun, sha: str, *extra: str, to: str = TARGET,
             env: dict[str, str] | None = None) -> object:
    # The matrix may run in any environment: the path rule is exercised by its own row.
    path = ("--skip-path", "--reason-for-skip", "fault row") if to == TARGET else ()
    return fault.cli(
        "promote", "--sha", sha, "--from", FAULTS_ENV, "--to", to, "--reason", "fault row",
        *path, *extra, env=env,
    )


@pytest.mark.fault("promote a SHA the source never validated", group="promotion")
def test_an_unvalidated_sha_is_refused(fault: FaultRun, validated_head: DeployRecord) -> None:
    _aim(fault)
    # The repository's first commit: never deployed anywhere by the suite.
    first = _git(REPO_ROOT, "rev-list", "--max-parents=0", "HEAD").split()[0]
    attempt = _promote(fault, first)
    assert attempt.exit_code == EXIT_REFUSED, attempt.output[-2000:]  # type: ignore[attr-defined]
    fault.refused(
        attempt,  # type: ignore[arg-type]
        step=POLICY,
        says=(f"has no validated image in {FAULTS_ENV}", first[:12], "deploy commit"),
    )


@pytest.mark.fault("promote a digest that has not soaked in the source", group="promotion")
def test_an_unsoaked_digest_is_refused(fault: FaultRun, validated_head: DeployRecord) -> None:
    _aim(fault)
    attempt = _promote(
        fault, validated_head.commit_sha,
        env={"GANGWAY_ENVIRONMENT__PROMOTION__SOAK_S": "86400"},
    )
    assert attempt.exit_code == EXIT_REFUSED, attempt.output[-2000:]  # type: ignore[attr-defined]
    fault.refused(
        attempt,  # type: ignore[arg-type]
        step=POLICY,
        says=("has not soaked", "at least 86400s", "promote again"),
    )


@pytest.fixture
def column_dropped_in_target() -> Iterator[str]:
    """The target's schema drifted: a column the image writes is gone (version table at head)."""
    config = load_config(TARGET)
    schema.upgrade(config)
    engine = schema.engine(config)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE precomputed_reports DROP COLUMN pdf_s3_key"))
    try:
        yield "precomputed_reports.pdf_s3_key"
    finally:
        if "pdf_s3_key" not in schema.columns(config, "precomputed_reports"):
            with engine.begin() as conn:
                conn.execute(sa.text(
                    "ALTER TABLE precomputed_reports ADD COLUMN pdf_s3_key VARCHAR(512) NULL"
                ))
        engine.dispose()


@pytest.mark.fault("promote into a schema that cannot carry the image", group="promotion")
def test_a_schema_that_cannot_carry_the_image_is_refused(
    fault: FaultRun, validated_head: DeployRecord, column_dropped_in_target: str
) -> None:
    _aim(fault)
    attempt = _promote(fault, validated_head.commit_sha)
    assert attempt.exit_code == EXIT_REFUSED, attempt.output[-2000:]  # type: ignore[attr-defined]
    fault.refused(
        attempt,  # type: ignore[arg-type]
        step=POLICY,
        says=("cannot carry the image", column_dropped_in_target, "column does not exist"),
    )


@pytest.mark.fault("promote off the declared path (dev straight to prod)", group="promotion")
def test_a_path_violation_is_refused(fault: FaultRun, validated_head: DeployRecord) -> None:
    _aim(fault, "prod")
    attempt = _promote(fault, validated_head.commit_sha, to="prod")
    assert attempt.exit_code == EXIT_REFUSED, attempt.output[-2000:]  # type: ignore[attr-defined]
    fault.refused(
        attempt,  # type: ignore[arg-type]
        step=POLICY,
        says=("is not the declared path", "promotion.from_envs", "--skip-path"),
    )


@pytest.fixture
def target_rejects_writes() -> Iterator[str]:
    """The target's world is wrong, not the image: its table refuses every write (a trigger)."""
    config = load_config(TARGET)
    engine = schema.engine(config)
    drop = sa.text(f"DROP TRIGGER IF EXISTS {TRIGGER}")
    with engine.begin() as conn:
        conn.execute(drop)
        conn.execute(sa.text(
            f"CREATE TRIGGER {TRIGGER} BEFORE INSERT ON precomputed_reports FOR EACH ROW "
            "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'fault row: writes refused'"
        ))
    try:
        yield "fault row: writes refused"
    finally:
        with engine.begin() as conn:
            conn.execute(drop)
        engine.dispose()


TRIGGER = "gw_fault_refuse_writes"


@pytest.mark.fault("a target gate fails after the promotion moved traffic", group="promotion")
def test_a_target_gate_failure_rolls_back_the_target_only(
    fault: FaultRun, validated_head: DeployRecord, target_rejects_writes: str
) -> None:
    _aim(fault)
    source_before = read_aliases(load_config(FAULTS_ENV))
    attempt = _promote(fault, validated_head.commit_sha)
    assert attempt.exit_code == EXIT_FAILED, attempt.output[-2000:]  # type: ignore[attr-defined]
    record = fault.rolled_back(
        attempt,  # type: ignore[arg-type]
        step="smoke",
        boundary="deployment",
        says=("report worker",),
    )
    assert record.kind == "promote"
    assert read_aliases(load_config(FAULTS_ENV)) == source_before, "the source was touched"
