"""Fixtures for the service's pure-logic tests: a complete handler environment, fresh imports."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from types import ModuleType

import pytest
from service_contract import FULL_ENV


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No handler variable set (the host may have TZ and friends)."""
    for name in FULL_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def full_env(clean_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Every handler variable set to a valid value."""
    for name, value in FULL_ENV.items():
        clean_env.setenv(name, value)
    return clean_env


@pytest.fixture
def fresh_import(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], ModuleType]:
    """Import a module anew (a cold start) under the current environment."""

    def _import(name: str) -> ModuleType:
        monkeypatch.delitem(sys.modules, name, raising=False)
        return importlib.import_module(name)

    return _import


@pytest.fixture
def handler_module(
    full_env: pytest.MonkeyPatch, fresh_import: Callable[[str], ModuleType]
) -> Callable[[str], ModuleType]:
    """Import ``app.<name>`` cold, with the full environment."""
    return lambda name: fresh_import(f"app.{name}")
