"""Bad input: refused before any side effect, through the CLI a user types, with a record.

Each row runs ``gangway deploy`` in its own process and expects exit code 2, a ``[config]``
(or ``[registry]``) error with expected/found/remedy, no traceback, a REFUSED ledger record,
and aliases unchanged.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gangway.config import REPO_ROOT
from rehearsal import system
from tasks import schema
from tasks.ledger import DeployRecord

from .conftest import FAULTS_ENV, FaultRun

pytestmark = pytest.mark.stack

EXIT_BAD_INPUT = 2


def deployments_copy(tmp_path: Path) -> Path:
    """A copy of deployments/ a row may break (GANGWAY_DEPLOYMENTS points the CLI at it)."""
    target = tmp_path / "deployments"
    shutil.copytree(REPO_ROOT / "deployments", target)
    return target


@pytest.mark.fault("malformed config file (a TOML syntax error)", group="input")
def test_malformed_config_file_is_refused(fault: FaultRun, tmp_path: Path) -> None:
    broken = deployments_copy(tmp_path)
    env_file = broken / f"{FAULTS_ENV}.toml"
    env_file.write_text(env_file.read_text() + "\n[environment.deploy\nlock_timeout_s = 5\n")
    attempt = fault.cli("deploy", "--env", FAULTS_ENV, env={"GANGWAY_DEPLOYMENTS": str(broken)})
    assert attempt.exit_code == EXIT_BAD_INPUT, attempt.output[-2000:]
    fault.refused(attempt, says=(f"{FAULTS_ENV}.toml is not valid TOML", "line"))


@pytest.mark.fault("unknown environment", group="input")
def test_unknown_environment_is_refused(fault: FaultRun) -> None:
    attempt = fault.cli("deploy", "--env", "qa")
    assert attempt.exit_code == EXIT_BAD_INPUT, attempt.output[-2000:]
    record = fault.refused(attempt, says=("qa.toml", "known environments", FAULTS_ENV))
    assert record.env == "qa"


@pytest.mark.fault("commit SHA that does not exist", group="input")
def test_unknown_sha_is_refused(fault: FaultRun) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    attempt = fault.cli("deploy", "--env", FAULTS_ENV, "--sha", sha)
    assert attempt.exit_code == EXIT_BAD_INPUT, attempt.output[-2000:]
    record = fault.refused(attempt, says=(sha, "does not exist"))
    assert record.commit_sha == sha


@pytest.mark.parametrize(
    ("what", "original", "injected"),
    [
        pytest.param(
            "table",
            'name = "precomputed_reports"',
            'name = "precomputed_reports; DROP TABLE precomputed_reports"',
            marks=pytest.mark.fault(
                "table name in the config is an injection attempt", group="input"
            ),
            id="table",
        ),
        pytest.param(
            "column",
            "pdf_s3_key =",
            '"pdf_s3_key`) VALUES (1); --" =',
            marks=pytest.mark.fault(
                "column name in the config is an injection attempt", group="input"
            ),
            id="column",
        ),
    ],
)
def test_injection_in_identifiers_is_refused_before_any_sql(
    fault: FaultRun, tmp_path: Path, what: str, original: str, injected: str
) -> None:
    broken = deployments_copy(tmp_path)
    service = broken / "service.toml"
    text = service.read_text()
    assert original in text, f"service.toml no longer declares {original!r}"
    service.write_text(text.replace(original, injected, 1))
    columns_before = schema.columns(fault.config, "precomputed_reports")
    # The database port is closed too: had any SQL been tried, the error would be [data].
    attempt = fault.cli(
        "deploy",
        "--env",
        FAULTS_ENV,
        env={"GANGWAY_DEPLOYMENTS": str(broken), "GANGWAY_ENVIRONMENT__DATABASE__PORT": "1"},
    )
    assert attempt.exit_code == EXIT_BAD_INPUT, attempt.output[-2000:]
    fault.refused(attempt, says=("not a plain SQL identifier", "refused before any SQL runs"))
    assert schema.columns(fault.config, "precomputed_reports") == columns_before, what


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
    attempt = fault.cli(
        "deploy",
        "--env",
        FAULTS_ENV,
        "--sha",
        validated_head.commit_sha,
        "--promote",
        env={"GANGWAY_ENVIRONMENT__REGISTRY": empty_registry},
    )
    assert attempt.exit_code == EXIT_BAD_INPUT, attempt.output[-2000:]
    fault.refused(
        attempt,
        boundary="registry",
        says=(str(validated_head.image_digest), empty_registry, "without --promote"),
    )
