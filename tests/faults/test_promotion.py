"""Promotion faults: each refused by the promotion policy (or, for a digest the target
registry does not hold, by the registry) before anything moves, and a target gate failure that
rolls back the target only.

Every row promotes dev's validated HEAD (``validated_head``) into staging with
`gangway promote`, as a user would; the verdict reads the TARGET's aliases. These rows use
dev, staging and prod, as the rest of the suite does, so they run in its lane rather than in
the matrix's own environment's (tests/conftest.py).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from gangway.config import REPO_ROOT, load_config
from gangway.record import DeployRecord, Outcome
from rehearsal import system
from tasks import schema
from tasks.source import _git

from .conftest import TRACEBACK, FaultRun, read_aliases
from .test_input import PREFECT_ERROR, unseen_commit

pytestmark = pytest.mark.xdist_group("main")

SOURCE = "dev"
EXIT_FAILED, EXIT_REFUSED, EXIT_BAD_INPUT = 1, 2, 2
TARGET = "staging"
POLICY = "promotion policy"


@pytest.fixture
def row_env() -> str:
    """The promotion rows deploy (and promote from) dev."""
    return SOURCE


def _aim(fault: FaultRun, env: str = TARGET) -> None:
    """Judge the row on the target environment's aliases."""
    fault.config = load_config(env)
    fault.rebaseline()


def _promote(fault: FaultRun, sha: str, *extra: str, to: str = TARGET,
             env: dict[str, str] | None = None) -> object:
    # The matrix may run in any environment: the path rule is exercised by its own row.
    path = ("--skip-path", "--reason-for-skip", "fault row") if to == TARGET else ()
    return fault.cli(
        "promote", "--sha", sha, "--from", SOURCE, "--to", to, "--reason", "fault row",
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
        says=(f"has no validated image in {SOURCE}", first[:12], "deploy commit"),
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
    source_before = read_aliases(load_config(SOURCE))
    attempt = _promote(fault, validated_head.commit_sha)
    assert attempt.exit_code == EXIT_FAILED, attempt.output[-2000:]  # type: ignore[attr-defined]
    record = fault.rolled_back(
        attempt,  # type: ignore[arg-type]
        step="smoke",
        boundary="deployment",
        says=("report worker",),
    )
    assert record.kind == "promote"
    assert read_aliases(load_config(SOURCE)) == source_before, "the source was touched"


@pytest.fixture
def empty_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A second, real registry that holds nothing (as a target environment's might)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("GANGWAY_REGISTRY_PORT", str(port))
    config = system.registry_config(home=tmp_path)
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is part of the rehearsal stack"
    process = subprocess.Popen(
        [binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while not system.registry_ready(port):
            assert time.monotonic() < deadline and process.poll() is None, "registry did not start"
            time.sleep(0.1)
        monkeypatch.delenv("GANGWAY_REGISTRY_PORT")
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.fault("promoted digest missing from the target registry", group="input")
def test_promoting_a_digest_the_registry_does_not_hold_is_refused(
    fault: FaultRun, validated_head: DeployRecord, empty_registry: str
) -> None:
    # Both environments name the empty registry: no copy, and the digest is not there.
    attempt = fault.cli(
        "promote",
        "--sha",
        validated_head.commit_sha,
        "--from",
        SOURCE,
        "--to",
        TARGET,
        "--reason",
        "fault row",
        env={"GANGWAY_ENVIRONMENT__REGISTRY": empty_registry},
    )
    assert attempt.exit_code == EXIT_BAD_INPUT, attempt.output[-2000:]
    fault.refused(
        attempt,
        boundary="registry",
        step="registry",
        says=(str(validated_head.image_digest), empty_registry, "gangway deploy to rebuild it"),
    )


@pytest.mark.fault(
    "build context outside the repository (absolute), deployed by --sha, then promoted",
    group="input",
)
def test_build_context_outside_the_repository_is_dirty_and_never_promoted(
    fault: FaultRun, tmp_path: Path
) -> None:
    context = tmp_path / "context"
    shutil.copytree(
        REPO_ROOT / "service",
        context,
        ignore=shutil.ignore_patterns("vendor", "__pycache__", ".pytest_cache"),
    )
    commit = unseen_commit()
    # Not a refusal: the context cannot come from the commit, so it is used from disk as is
    # (git archive used to crash on the absolute path, with no record) and the build is dirty.
    built = fault.cli(
        "deploy",
        "--env",
        SOURCE,
        "--sha",
        commit,
        env={"GANGWAY_SERVICE__BUILD__CONTEXT": str(context)},
    )
    assert built.exit_code == 0, built.output[-3000:]
    assert TRACEBACK not in built.output, built.output[-3000:]
    record = built.record
    assert record is not None and record.outcome is Outcome.SUCCEEDED, record
    assert record.commit_sha == commit and record.dirty, record
    assert f":{commit}-dirty" in str(record.image_ref), record.image_ref
    fault.rebaseline()  # the dirty build is live now, on purpose

    attempt = fault.cli(
        "promote", "--sha", commit, "--from", SOURCE, "--to", TARGET, "--reason", "fault row",
    )
    assert attempt.exit_code == EXIT_BAD_INPUT, attempt.output[-3000:]
    assert not PREFECT_ERROR.search(attempt.output), attempt.output[-3000:]
    refused = fault.refused(
        attempt, step="promotion policy", says=(commit[:12], "has no validated image", "dirty tree")
    )
    assert refused.commit_sha == commit
