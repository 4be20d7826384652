"""Bad input: refused before any side effect, through the CLI a user types, with a record.

Each row runs ``gangway deploy`` in its own process and expects exit code 2, a ``[config]``
(or ``[registry]``) error with expected/found/remedy, no traceback, a REFUSED ledger record,
and aliases unchanged.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from gangway.config import MAX_CONFIG_BYTES, REPO_ROOT
from tasks import schema

from .conftest import FAULTS_ENV, Attempt, FaultRun

pytestmark = pytest.mark.stack

EXIT_BAD_INPUT = 2


def deployments_copy(tmp_path: Path) -> Path:
    """A copy of deployments/ a row may break (GANGWAY_DEPLOYMENTS points the CLI at it)."""
    target = tmp_path / "deployments"
    shutil.copytree(REPO_ROOT / "deployments", target)
    return target


def set_in_toml(path: Path, table: str, line: str) -> None:
    """Put ``line`` into ``[table]`` of a TOML file, under its header or in a new table."""
    text = path.read_text()
    header = f"[{table}]\n"
    if header in text:
        path.write_text(text.replace(header, header + line + "\n", 1))
    else:
        path.write_text(f"{text}\n{header}{line}\n")


# A Prefect log line at ERROR level, e.g. "12:00:00.123 | ERROR   | Flow run 'x' - ...".
PREFECT_ERROR = re.compile(r"\|\s*ERROR\s*\|")


def assert_refused_before_prefect(attempt: Attempt) -> None:
    """Bad input is exit 2 and refused before a flow run exists: no Prefect run repeats it."""
    assert attempt.exit_code == EXIT_BAD_INPUT, attempt.output[-3000:]
    assert not PREFECT_ERROR.search(attempt.output), attempt.output[-3000:]
    assert "Encountered exception" not in attempt.output, attempt.output[-3000:]
    assert attempt.record is not None and attempt.record.flow_run_id is None, attempt.record
    assert len(attempt.records) == 1, [r.deploy_id for r in attempt.records]


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
    attempt = fault.cli("deploy", "--env", "uat")
    assert attempt.exit_code == EXIT_BAD_INPUT, attempt.output[-2000:]
    record = fault.refused(attempt, says=("uat.toml", "known environments", FAULTS_ENV))
    assert record.env == "uat"


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


@pytest.mark.fault("a boolean where a number belongs (timeout = true)", group="input")
def test_boolean_for_a_number_is_refused(fault: FaultRun, tmp_path: Path) -> None:
    broken = deployments_copy(tmp_path)
    set_in_toml(broken / f"{FAULTS_ENV}.toml", "functions.api", "timeout = true")
    attempt = fault.cli("deploy", "--env", FAULTS_ENV, env={"GANGWAY_DEPLOYMENTS": str(broken)})
    assert_refused_before_prefect(attempt)
    fault.refused(attempt, says=("functions.api.timeout", "expected an integer", "boolean true"))


@pytest.mark.fault("non-finite bake interval (bake_invoke_interval_s = inf)", group="input")
def test_infinite_bake_interval_is_refused(fault: FaultRun, tmp_path: Path) -> None:
    broken = deployments_copy(tmp_path)
    set_in_toml(broken / f"{FAULTS_ENV}.toml", "environment.deploy", "bake_invoke_interval_s = inf")
    # A canary, so the interval would be used: today it raised OverflowError after traffic moved.
    attempt = fault.cli(
        "deploy",
        "--env",
        FAULTS_ENV,
        "--canary",
        "50",
        "--bake",
        "5",
        env={"GANGWAY_DEPLOYMENTS": str(broken)},
    )
    assert_refused_before_prefect(attempt)
    fault.refused(attempt, says=("environment.deploy.bake_invoke_interval_s = inf", "finite"))


@pytest.mark.fault("handler with a trailing newline (GANGWAY_* override)", group="input")
def test_handler_with_a_trailing_newline_is_refused(fault: FaultRun) -> None:
    attempt = fault.cli(
        "deploy",
        "--env",
        FAULTS_ENV,
        env={"GANGWAY_FUNCTIONS__API__HANDLER": "app.api.handler\n"},
    )
    assert_refused_before_prefect(attempt)
    fault.refused(attempt, says=("functions.api.handler", "'app.api.handler\\n'"))


@pytest.mark.fault("function name of 65 characters", group="input")
def test_function_name_over_64_characters_is_refused_locally(
    fault: FaultRun, tmp_path: Path
) -> None:
    broken = deployments_copy(tmp_path)
    name = "gangway-fault-" + "n" * 51
    assert len(name) == 65
    set_in_toml(broken / f"{FAULTS_ENV}.toml", "functions.api", f'name = "{name}"')
    attempt = fault.cli("deploy", "--env", FAULTS_ENV, env={"GANGWAY_DEPLOYMENTS": str(broken)})
    assert_refused_before_prefect(attempt)
    assert "[aws]" not in attempt.output, "checked locally, before any AWS call"
    fault.refused(attempt, says=("functions.api.name", "65 characters", "1-64 characters"))


@pytest.mark.fault("--bake above the environment's max_bake_s", group="input")
def test_bake_above_max_bake_s_is_refused(fault: FaultRun) -> None:
    attempt = fault.cli("deploy", "--env", FAULTS_ENV, "--canary", "10", "--bake", "1000000000")
    assert_refused_before_prefect(attempt)
    fault.refused(attempt, says=("--bake 1000000000", "max_bake_s = 3600"))


@pytest.mark.fault("configuration file above 1 MiB", group="input")
def test_config_file_above_one_mib_is_refused(fault: FaultRun, tmp_path: Path) -> None:
    broken = deployments_copy(tmp_path)
    env_file = broken / f"{FAULTS_ENV}.toml"
    env_file.write_text(env_file.read_text() + "#" * MAX_CONFIG_BYTES + "\n")
    attempt = fault.cli("deploy", "--env", FAULTS_ENV, env={"GANGWAY_DEPLOYMENTS": str(broken)})
    assert_refused_before_prefect(attempt)
    fault.refused(attempt, says=(f"{FAULTS_ENV}.toml", "1 MiB", f"{env_file.stat().st_size} bytes"))


def unseen_commit() -> str:
    """A commit no deploy ever named: HEAD's tree under a new commit object.

    No ref, index or file moves (``git commit-tree`` only writes the object), so the working
    tree other work shares is untouched; a later ``git gc`` drops it.
    """
    identity = {
        "GIT_AUTHOR_NAME": "gangway fault matrix",
        "GIT_AUTHOR_EMAIL": "faults@gangway.invalid",
        "GIT_COMMITTER_NAME": "gangway fault matrix",
        "GIT_COMMITTER_EMAIL": "faults@gangway.invalid",
    }
    return subprocess.run(
        [
            "git",
            "-C",
            str(REPO_ROOT),
            "commit-tree",
            "HEAD^{tree}",
            "-p",
            "HEAD",
            "-m",
            f"fault row: outside build context {uuid.uuid4().hex}",
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **identity},
    ).stdout.strip()
