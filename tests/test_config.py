"""Configuration is validated completely, before any side effect, with errors that name the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gangway.config import REPO_ROOT, load_config
from gangway.errors import ConfigError

SECRETS = {
    "GANGWAY_DEV_DB_PASSWORD": "pw-for-tests-1",
    "GANGWAY_DEV_TELEGRAM_TOKEN": "tg-for-tests-1",
    "GANGWAY_DEV_LINE_SECRET": "line-for-tests-1",
}


@pytest.fixture
def deployments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "deployments"
    shutil.copytree(REPO_ROOT / "deployments", target)
    monkeypatch.setenv("GANGWAY_HOME", str(tmp_path / "home"))
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    return target


def test_dev_resolves_seven_functions_with_their_secrets(deployments: Path) -> None:
    config = load_config("dev", deployments)
    assert len(config.functions) == 7
    webhook = config.functions["line_webhook"]
    assert webhook.spec.handler == "app.line_webhook.handle_webhook"
    assert webhook.name == "daily-report-dev-line-webhook"
    assert webhook.env_plain()["LINE_CHANNEL_SECRET"] == "line-for-tests-1"
    assert "LINE_CHANNEL_SECRET" not in config.functions["api"].env
    # Secrets are values to scrub, and never part of a rendered model.
    assert set(SECRETS.values()) <= set(config.secret_values())
    assert "pw-for-tests-1" not in repr(config)


def test_every_function_env_covers_its_declared_requirements(deployments: Path) -> None:
    config = load_config("dev", deployments)
    for fn in config.functions.values():
        assert set(fn.spec.required_env) <= set(fn.env), fn.key


def test_env_file_overrides_single_keys_of_service(deployments: Path) -> None:
    (deployments / "dev.toml").write_text(
        (deployments / "dev.toml").read_text() + "\n[functions.api]\nmemory = 2048\n"
    )
    config = load_config("dev", deployments)
    assert config.functions["api"].spec.memory == 2048
    assert config.functions["api"].spec.handler == "app.api.handler"


def test_environment_variable_overrides_nested_key(
    deployments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANGWAY_ENVIRONMENT__DATABASE__HOST", "aurora.example.internal")
    assert load_config("dev", deployments).environment.database.host == "aurora.example.internal"


def test_unknown_environment_names_the_known_ones(deployments: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config("qa", deployments)
    assert "qa.toml" in err.value.expected
    assert "dev, prod, staging" in err.value.remedy


def test_missing_secret_variable_is_named_before_anything_runs(
    deployments: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GANGWAY_DEV_TELEGRAM_TOKEN")
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "GANGWAY_DEV_TELEGRAM_TOKEN" in str(err.value)
    assert "functions.telegram.env.TELEGRAM_BOT_TOKEN" in str(err.value)


def test_malformed_toml_names_the_file(deployments: Path) -> None:
    (deployments / "dev.toml").write_text("[environment\nname = 'dev'\n")
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "dev.toml is not valid TOML" in str(err.value)


def test_typo_in_a_key_is_an_error_not_a_silent_default(deployments: Path) -> None:
    (deployments / "dev.toml").write_text(
        (deployments / "dev.toml").read_text() + "\n[functions.api]\nmemroy = 2048\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "functions.api.memroy" in err.value.found


@pytest.mark.parametrize(
    "table", ["precomputed_reports; DROP TABLE x", "reports`", "a-b", "1abc", "x" * 65]
)
def test_injection_in_table_names_is_refused(deployments: Path, table: str) -> None:
    service = (deployments / "service.toml").read_text()
    (deployments / "service.toml").write_text(
        service.replace('name = "precomputed_reports"', f"name = {table!r}".replace("'", '"'))
    )
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "not a plain SQL identifier" in err.value.found


def test_injection_in_column_names_is_refused(deployments: Path) -> None:
    service = (deployments / "service.toml").read_text()
    (deployments / "service.toml").write_text(
        service.replace("symbol = {", '"symbol`, (SELECT 1)" = {')
    )
    with pytest.raises(ConfigError) as err:
        load_config("dev", deployments)
    assert "column name" in err.value.found


def test_invalid_environment_name_is_refused(deployments: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config("../etc/passwd", deployments)
    assert "not valid" in err.value.message
