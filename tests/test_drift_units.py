"""The drift check's deciding code without the stack: the Terraform reader, Terraform as the
one declared source of the fields it owns, the ignore file, the exit codes' precedence and
the keyed-hash comparison of secrets."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from gangway import terraform
from gangway.config import REPO_ROOT, load_config, read_settings
from gangway.errors import ConfigError
from gangway.evidence import Check
from tasks import drift_ignore
from tasks.drift_compare import (
    DeclaredFunction,
    ExpectedRouting,
    LiveLambda,
    Owner,
    StrandedMove,
    configuration_drift,
    keyed_hash,
    routing_drift,
)

KEY = b"k" * 32


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the reference service's declarations (deployments/, terraform/, migrations/)."""
    for folder in ("deployments", "terraform", "migrations"):
        shutil.copytree(REPO_ROOT / folder, tmp_path / folder)
    return tmp_path


def test_terraform_declares_every_function_per_environment() -> None:
    for env in ("dev", "staging", "prod"):
        declared = terraform.read(REPO_ROOT, env)
        assert declared is not None
        api = declared.functions["api"]
        assert (api.timeout, api.memory, api.architecture, api.package_type) == (
            30,
            512,
            "x86_64",
            "Image",
        )
        assert api.env["DB_NAME"] == f"daily_report_{env}"
        # A sensitive variable is never a value in a file: a reference to the secret's variable.
        assert api.env["DB_PASSWORD"] == f"${{GANGWAY_{env.upper()}_DB_PASSWORD}}"
        assert "DB_PASSWORD" in api.secret_keys
        assert declared.functions["report_worker"].memory == 1024
        assert "image_uri" in api.ignore_changes  # the pipeline's field, not Terraform's


def test_config_takes_the_fields_terraform_owns_from_it(project: Path) -> None:
    settings = read_settings("staging", root=project)
    assert settings.functions["report_worker"].timeout == 120
    assert settings.functions["line_webhook"].env["LINE_CHANNEL_SECRET"] == (
        "${GANGWAY_STAGING_LINE_SECRET}"
    )


def test_a_field_declared_twice_names_both_places(project: Path) -> None:
    path = project / "deployments" / "service.toml"
    path.write_text(
        path.read_text().replace(
            'handler = "app.api.handler"\n', 'handler = "app.api.handler"\ntimeout = 45\n'
        )
    )
    with pytest.raises(ConfigError) as err:
        read_settings("dev", root=project)
    assert "functions.api.timeout in service.toml" in err.value.found
    assert "terraform" in err.value.found


def test_function_env_in_toml_is_refused_where_terraform_exists(project: Path) -> None:
    path = project / "deployments" / "dev.toml"
    path.write_text(path.read_text() + '\n[function_env]\nTZ = "UTC"\n')
    with pytest.raises(ConfigError) as err:
        read_settings("dev", root=project)
    assert "[function_env] in dev.toml" in err.value.found


def test_an_expression_gangway_cannot_evaluate_is_named(project: Path) -> None:
    path = project / "terraform" / "main.tf"
    path.write_text(path.read_text().replace("timeout       = 30", "timeout = max(30, 10)", 1))
    with pytest.raises(ConfigError) as err:
        terraform.read(project, "dev")
    assert "aws_lambda_function.api.timeout" in err.value.message


def test_an_environment_without_a_var_file_is_refused(project: Path) -> None:
    (project / "terraform" / "environments" / "prod.tfvars").unlink()
    with pytest.raises(ConfigError) as err:
        load_config("prod", project=project)
    assert "prod.tfvars" in err.value.expected


def _declared(**env: str) -> DeclaredFunction:
    return DeclaredFunction(
        key="api",
        name="svc-dev-api",
        required=("TZ", "TOKEN"),
        env_hashes={k: keyed_hash(KEY, v) for k, v in env.items()},
        env_plain={k: v for k, v in env.items() if k != "TOKEN"},
        timeout=30,
        memory=512,
        architecture="x86_64",
    )


def _live(version: str = "3", weights: dict[str, float] | None = None, **env: str) -> LiveLambda:
    return LiveLambda(
        key="api",
        name="svc-dev-api",
        package_type="Image",
        timeout=30,
        memory=512,
        architectures=("x86_64",),
        env_hashes={k: keyed_hash(KEY, v) for k, v in env.items()},
        env_plain={k: v for k, v in env.items() if k != "TOKEN"},
        alias_version=version,
        weights=weights or {},
        digests={version: "sha256:aa"},
    )


def test_a_secret_is_compared_by_hash_and_never_shown() -> None:
    checks = configuration_drift(
        "dev",
        [_declared(TZ="UTC", TOKEN="declared-secret")],
        {"api": _live(TZ="UTC", TOKEN="console-secret")},
        Owner.TERRAFORM,
        "terraform/",
    )
    (failed,) = [c for c in checks if not c.ok]
    assert failed.evidence["kind"] == "env value" and failed.evidence["owner"] == "terraform"
    assert "TOKEN" in failed.found
    assert "secret" not in repr(failed).replace("secret, compared", "")


def test_a_recorded_promotion_is_not_drift_and_an_open_move_is_stranded() -> None:
    promoted = ExpectedRouting("3", "sha256:aa", "p1", "promote")
    clean = routing_drift("dev", {"api": _live()}, {"api": promoted}, [])
    assert all(c.ok for c in clean)
    stranded = routing_drift(
        "dev",
        {"api": _live("4", {"3": 0.9})},
        {"api": promoted},
        [StrandedMove("d9", "deploy", "api", "3", "4")],
    )
    assert [c.evidence["kind"] for c in stranded if not c.ok] == ["stranded deploy"]


def test_an_ignore_rule_needs_a_reason(tmp_path: Path) -> None:
    (tmp_path / drift_ignore.FILE).write_text('[[ignore]]\nkind = "timeout"\n')
    with pytest.raises(ConfigError) as err:
        drift_ignore.load_rules(tmp_path)
    assert "no reason" in err.value.found


def test_an_expired_ignore_rule_no_longer_applies(tmp_path: Path) -> None:
    (tmp_path / drift_ignore.FILE).write_text(
        '[[ignore]]\nkind = "timeout"\nreason = "load test"\nuntil = 2026-01-31\n'
    )
    rules = drift_ignore.load_rules(tmp_path)
    check = Check(
        name="t",
        ok=False,
        expected="30 s",
        found="90 s",
        evidence={"kind": "timeout", "env": "dev", "function": "api"},
    )
    (before,) = drift_ignore.apply([check], rules, today=dt.date(2026, 1, 1))
    (after,) = drift_ignore.apply([check], rules, today=dt.date(2026, 2, 1))
    assert before.ok and before.evidence["ignored"] == "load test"
    assert not after.ok


def test_the_most_severe_exit_code_wins() -> None:
    from flows.drift import DriftReport, EnvDrift

    bad = Check(name="x", ok=False, expected="a", found="b")
    clean = EnvDrift(env="a", service="s")
    drifted = EnvDrift(env="b", service="s", checks=(bad,))
    unchecked = EnvDrift(env="c", service="s", error="down", boundary="aws")
    assert DriftReport(envs=(clean,)).exit_code == 0
    assert DriftReport(envs=(clean, drifted)).exit_code == 1
    assert DriftReport(envs=(drifted, unchecked, clean)).exit_code == 3


def test_the_config_contract_reads_terraform(project: Path) -> None:
    from tasks.config_contract import contract_gate, declarations

    path = project / "terraform" / "main.tf"
    text = path.read_text()
    start = text.index('resource "aws_lambda_function" "ticker_fetcher"')
    end = text.index("TICKER_SYMBOLS = var.ticker_symbols", start)
    path.write_text(text[:end] + text[end:].replace("TICKER_SYMBOLS = var.ticker_symbols", "", 1))
    result = contract_gate(declarations(project, ["dev"]))
    (failed,) = result.failures
    assert failed.evidence["function"] == "ticker_fetcher"
    assert failed.evidence["missing"] == ["TICKER_SYMBOLS"]
    assert failed.evidence["source"].startswith("terraform/")


def test_the_nightly_deployment_takes_its_timezone_from_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os

    import yaml
    from prefect.utilities.templating import apply_values

    from flows.drift import drift

    declared = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    nightly = next(d for d in declared if d["name"] == "drift-nightly")
    assert nightly["entrypoint"] == "flows/drift.py:drift" and drift.name == "drift"
    assert nightly["parameters"] == {"env": "all"}
    monkeypatch.setenv("GANGWAY_DRIFT_TIMEZONE", "Asia/Bangkok")
    (schedule,) = apply_values(nightly, os.environ, remove_notset=False)["schedules"]
    assert schedule["timezone"] == "Asia/Bangkok" and len(schedule["cron"].split()) == 5


def test_a_value_terraform_declares_out_of_range_is_a_config_error(project: Path) -> None:
    path = project / "terraform" / "main.tf"
    path.write_text(path.read_text().replace("timeout       = 30", "timeout       = 1000", 1))
    with pytest.raises(ConfigError) as err:
        read_settings("dev", root=project)
    assert "timeout" in err.value.found and "aws_lambda_function.api" in err.value.remedy
