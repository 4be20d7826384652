"""The pipeline → MySQL boundary: alembic on the real MariaDB, columns read back."""

from __future__ import annotations

import pytest
from alembic import command

from gangway.config import DeployConfig
from gangway.errors import DatabaseError
from tasks import schema

pytestmark = pytest.mark.stack


def test_migrations_run_in_order_and_columns_are_real(dev_config: DeployConfig) -> None:
    with schema.engine(dev_config).begin() as conn:
        command.downgrade(schema.alembic_config(dev_config, conn), "base")
    assert schema.current_revision(dev_config) is None
    assert schema.columns(dev_config, "precomputed_reports") == {}

    assert schema.upgrade(dev_config, "0001") == "0001"
    first = schema.columns(dev_config, "precomputed_reports")
    assert {"symbol", "report_date", "report_json", "created_at", "updated_at"} <= set(first)
    # The silent-data-loss incident: the code wrote pdf_s3_key before this column existed.
    assert "pdf_s3_key" not in first

    head = schema.head_revision(dev_config)
    assert schema.upgrade(dev_config) == head == "0002"
    after = schema.columns(dev_config, "precomputed_reports")
    assert after["pdf_s3_key"].nullable is True
    assert after["pdf_s3_key"].data_type == "varchar"
    assert after["symbol"].nullable is False


def test_unreachable_database_is_a_bounded_clear_error(dev_config: DeployConfig) -> None:
    env = dev_config.environment
    closed = env.model_copy(update={"database": env.database.model_copy(update={"port": 1})})
    config = dev_config.model_copy(update={"environment": closed})
    with pytest.raises(DatabaseError) as err:
        schema.current_revision(config)
    text = str(err.value)
    assert "127.0.0.1:1" in text and "start MySQL" in text
    assert dev_config.db_password.get_secret_value() not in text
