"""Request parsing of the API, report worker and schedulers (paths that touch no boundary)."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest
from service_contract import ImportModule

TODAY = date(2026, 11, 23)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (None, "'symbol' is required"),
        ({"date": "2026-11-23"}, "'symbol' is required"),
        ({"symbol": "P T T"}, "invalid ticker symbol"),
        ({"symbol": "PTT", "date": "2026-11-31"}, "invalid report date"),
    ],
)
def test_api_bad_input_is_400(
    handler_module: ImportModule, params: dict[str, str] | None, message: str
) -> None:
    api = handler_module("api")
    answer = api.handler({"httpMethod": "GET", "queryStringParameters": params}, None)
    assert answer["statusCode"] == 400
    assert message in json.loads(answer["body"])["error"]


def test_api_parses_and_defaults_the_date(handler_module: ImportModule) -> None:
    api = handler_module("api")
    event = {"queryStringParameters": {"symbol": " ptt "}}
    assert api.parse_request(event, TODAY) == ("PTT", TODAY)
    event = {"queryStringParameters": {"symbol": "AOT", "date": "2026-01-02"}}
    assert api.parse_request(event, TODAY) == ("AOT", date(2026, 1, 2))


def test_api_refuses_writes(handler_module: ImportModule) -> None:
    api = handler_module("api")
    event = {"requestContext": {"http": {"method": "POST"}}, "queryStringParameters": {}}
    assert api.handler(event, None)["statusCode"] == 405


def test_worker_event_defaults(handler_module: ImportModule) -> None:
    worker = handler_module("report_worker")
    symbol, report_date, correlation_id = worker.parse_event({"symbol": "ptt"}, TODAY)
    assert (symbol, report_date) == ("PTT", TODAY)
    assert len(correlation_id) == 32 and int(correlation_id, 16) >= 0
    assert worker.parse_event(
        {"symbol": "PTT", "report_date": "2026-11-20", "correlation_id": "run-1"}, TODAY
    ) == ("PTT", date(2026, 11, 20), "run-1")


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"symbol": 5},
        {"symbol": "PTT", "report_date": "tomorrow"},
        {"symbol": "PTT", "correlation_id": "../../etc"},
        {"symbol": "PTT", "correlation_id": 12},
    ],
)
def test_worker_refuses_bad_events(handler_module: ImportModule, event: dict[str, object]) -> None:
    worker = handler_module("report_worker")
    with pytest.raises(ValueError):
        worker.parse_event(event, TODAY)


def test_worker_key_and_report_carry_the_correlation_id(handler_module: ImportModule) -> None:
    worker = handler_module("report_worker")
    assert worker.pdf_key(TODAY, "PTT", "abc") == "reports/2026-11-23/PTT/abc.pdf"
    report = worker.build_report("PTT", TODAY, "abc", datetime(2026, 11, 23, 8, 0))
    assert report["correlation_id"] == "abc"
    assert json.loads(json.dumps(report)) == report
    assert any("abc" in line for line in worker.report_lines(report))


def test_ticker_fetcher_normalises(handler_module: ImportModule) -> None:
    result = handler_module("ticker_fetcher").handler({}, None)
    assert result["symbols"] == ["PTT", "AOT", "CPALL"]
    assert datetime.fromisoformat(result["as_of"]).utcoffset().total_seconds() == 7 * 3600


def test_precompute_split_keeps_configured_order(handler_module: ImportModule) -> None:
    controller = handler_module("precompute_controller")
    assert controller.SETTINGS.symbols == ["PTT", "AOT", "CPALL"]
    assert controller.split_by_presence(["PTT", "AOT", "CPALL"], {"CPALL", "PTT", "XYZ"}) == (
        ["AOT"],
        ["PTT", "CPALL"],
    )


def test_query_tool_refuses_a_bad_date_before_connecting(handler_module: ImportModule) -> None:
    with pytest.raises(ValueError, match="invalid report date"):
        handler_module("query_tool").handler({"report_date": "yesterday"}, None)
