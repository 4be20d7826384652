"""The per-environment credential settings: validated before anything runs (no stack)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gangway.config import AwsSpec, DeployConfig, RegistryAuthSpec, load_config
from gangway.errors import RegistryError
from tasks.registry import registry_credentials


def test_a_profile_and_a_role_are_exclusive() -> None:
    with pytest.raises(ValidationError, match="not both"):
        AwsSpec(profile="p", role_arn="arn:aws:iam::123456789012:role/r")
    with pytest.raises(ValidationError, match=r"need environment\.aws\.role_arn"):
        AwsSpec(external_id="x")
    with pytest.raises(ValidationError):
        AwsSpec(role_arn="not-an-arn")
    assert AwsSpec(role_arn="arn:aws:iam::123456789012:role/r", session_name="ci").role_arn


def test_registry_auth_reads_its_password_only_from_the_named_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValidationError):
        RegistryAuthSpec(username="u", password_env="not a name")
    for var in ("DB_PASSWORD", "TELEGRAM_TOKEN", "LINE_SECRET"):
        monkeypatch.setenv(f"GANGWAY_PROD_{var}", f"offline-{var.lower()}")
    config: DeployConfig = load_config("prod")
    auth = config.environment.registry_auth
    assert auth == RegistryAuthSpec(username="gangway", password_env="GANGWAY_REGISTRY_PASSWORD")
    monkeypatch.delenv("GANGWAY_REGISTRY_PASSWORD", raising=False)
    with pytest.raises(RegistryError) as err:
        registry_credentials(config)
    assert "GANGWAY_REGISTRY_PASSWORD" in err.value.expected
    monkeypatch.setenv("GANGWAY_REGISTRY_PASSWORD", "s3cret-value")
    credentials = registry_credentials(config)
    assert credentials is not None and "s3cret-value" not in repr(credentials)
    assert "s3cret-value" in config.secret_values()  # scrubbed from every output
