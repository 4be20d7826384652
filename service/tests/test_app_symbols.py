"""Ticker symbol and report date parsing."""

from __future__ import annotations

from datetime import date

import pytest
from app.symbols import normalise_symbol, parse_report_date, parse_symbols


def test_normalise_upper_cases_and_strips() -> None:
    assert normalise_symbol("  ptt ") == "PTT"
    assert normalise_symbol("bbl.bk") == "BBL.BK"


@pytest.mark.parametrize("bad", ["", "   ", "P T T", "PTT;", "ABCDEFGHIJKLM", "ปตท", "PTT-R"])
def test_normalise_refuses(bad: object) -> None:
    with pytest.raises(ValueError):
        normalise_symbol(bad)


def test_parse_list_dedupes_in_first_seen_order_and_skips_blanks() -> None:
    assert parse_symbols("ptt, AOT ,, cpall,PTT ,aot,") == ["PTT", "AOT", "CPALL"]


def test_parse_list_fails_on_any_bad_entry_and_names_it() -> None:
    with pytest.raises(ValueError, match="'P T T'"):
        parse_symbols("PTT,P T T,AOT")


@pytest.mark.parametrize("empty", ["", " , ,"])
def test_parse_list_refuses_empty(empty: str) -> None:
    with pytest.raises(ValueError, match="no ticker symbols"):
        parse_symbols(empty)


def test_report_date_default_and_value() -> None:
    today = date(2026, 11, 23)
    assert parse_report_date(None, today) == today
    assert parse_report_date("", today) == today
    assert parse_report_date("2026-02-28", today) == date(2026, 2, 28)


@pytest.mark.parametrize("bad", ["20261123", "2026-W47", "2026-02-30", "23/11/2026", 20261123])
def test_report_date_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid report date"):
        parse_report_date(bad, date(2026, 11, 23))
