"""Shared test data for the service's tests: the deployment contract and a valid environment."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SERVICE_TOML = REPO / "deployments" / "service.toml"

# What the fresh_import and handler_module fixtures return.
ImportModule = Callable[[str], ModuleType]

# Values are fake but valid; the secrets are recognisable so tests can prove they never leak.
FULL_ENV = {
    "TZ": "Asia/Bangkok",
    "DB_HOST": "db.invalid",
    "DB_PORT": "3306",
    "DB_NAME": "daily_report",
    "DB_USER": "reporter",
    "DB_PASSWORD": "pw-SECRET-value",
    "CACHE_TABLE": "precomputed_reports",
    "REPORT_BUCKET": "reports-bucket",
    "TELEGRAM_BOT_TOKEN": "123456:tg-SECRET-token",
    "LINE_CHANNEL_SECRET": "line-secret",
    "TICKER_SYMBOLS": "ptt, AOT ,CPALL,ptt",
}


def service_contract() -> dict[str, Any]:
    """deployments/service.toml, parsed."""
    return tomllib.loads(SERVICE_TOML.read_text())
