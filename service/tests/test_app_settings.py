"""Cold-start environment validation against the contract in deployments/service.toml."""

from __future__ import annotations

import pytest
from app.settings import load_settings
from service_contract import FULL_ENV, ImportModule, service_contract

FUNCTIONS = service_contract()["functions"]


def module_of(handler: str) -> str:
    return handler.rsplit(".", 1)[0]


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_settings_class_declares_exactly_the_required_env(
    function: str, handler_module: ImportModule
) -> None:
    spec = FUNCTIONS[function]
    module = handler_module(module_of(spec["handler"]).removeprefix("app."))
    declared = {name.upper() for name in type(module.SETTINGS).model_fields}
    assert declared == set(spec["required_env"])
    assert callable(getattr(module, spec["handler"].rsplit(".", 1)[1]))


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_cold_start_names_every_missing_variable(
    function: str, clean_env: pytest.MonkeyPatch, fresh_import: ImportModule
) -> None:
    spec = FUNCTIONS[function]
    with pytest.raises(RuntimeError) as raised:
        fresh_import(module_of(spec["handler"]))
    message = str(raised.value)
    assert message.startswith("missing required environment variables: ")
    listed = message.removeprefix("missing required environment variables: ").split(", ")
    assert sorted(listed) == sorted(spec["required_env"])
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_only_the_missing_ones_are_named(
    handler_module: ImportModule, full_env: pytest.MonkeyPatch
) -> None:
    settings_cls = type(handler_module("report_worker").SETTINGS)
    full_env.delenv("DB_HOST")
    full_env.delenv("DB_PASSWORD")
    with pytest.raises(
        RuntimeError,
        match=r"^missing required environment variables: "
        r"DB_HOST, DB_PASSWORD$",
    ):
        load_settings(settings_cls)


def test_empty_value_counts_as_missing(
    handler_module: ImportModule, full_env: pytest.MonkeyPatch
) -> None:
    settings_cls = type(handler_module("api").SETTINGS)
    full_env.setenv("DB_HOST", "")
    with pytest.raises(RuntimeError, match=r"missing required environment variables: DB_HOST$"):
        load_settings(settings_cls)


def test_invalid_values_are_named_without_their_values(
    handler_module: ImportModule, full_env: pytest.MonkeyPatch
) -> None:
    settings_cls = type(handler_module("precompute_controller").SETTINGS)
    full_env.delenv("DB_USER")
    full_env.setenv("DB_PORT", "not-a-port")
    full_env.setenv("TZ", "Mars/Olympus_Mons")
    full_env.setenv("CACHE_TABLE", "reports; DROP TABLE x")
    with pytest.raises(RuntimeError) as raised:
        load_settings(settings_cls)
    message = str(raised.value)
    assert "missing required environment variables: DB_USER;" in message
    for name in ("DB_PORT", "TZ", "CACHE_TABLE"):
        assert f"{name} (" in message
    for value in ("not-a-port", "Olympus", "DROP TABLE", FULL_ENV["DB_PASSWORD"]):
        assert value not in message


def test_secrets_are_not_rendered(handler_module: ImportModule) -> None:
    settings = handler_module("telegram").SETTINGS
    text = repr(settings) + str(settings) + settings.model_dump_json()
    assert "SECRET" not in text


def test_port_out_of_range_is_refused(
    handler_module: ImportModule, full_env: pytest.MonkeyPatch
) -> None:
    settings_cls = type(handler_module("query_tool").SETTINGS)
    full_env.setenv("DB_PORT", "70000")
    with pytest.raises(RuntimeError, match=r"invalid environment variables: DB_PORT \("):
        load_settings(settings_cls)


def test_timezone_drives_today(handler_module: ImportModule) -> None:
    settings = handler_module("ticker_fetcher").SETTINGS
    assert settings.now().utcoffset().total_seconds() == 7 * 3600


def test_glibc_colon_form_is_accepted(
    handler_module: ImportModule, full_env: pytest.MonkeyPatch
) -> None:
    settings_cls = type(handler_module("line_webhook").SETTINGS)
    full_env.setenv("TZ", ":Asia/Bangkok")
    assert load_settings(settings_cls).tz == "Asia/Bangkok"


def test_the_lambda_image_default_tz_is_refused(
    handler_module: ImportModule, full_env: pytest.MonkeyPatch
) -> None:
    # The official base image sets TZ=:/etc/localtime; a function that forgot TZ sees that.
    settings_cls = type(handler_module("line_webhook").SETTINGS)
    full_env.setenv("TZ", ":/etc/localtime")
    with pytest.raises(RuntimeError, match=r"^invalid environment variables: TZ \("):
        load_settings(settings_cls)
