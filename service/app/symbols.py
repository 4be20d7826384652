"""Ticker symbols and report dates: the inputs every handler validates the same way."""

from __future__ import annotations

import re
from datetime import date

from pydantic import field_validator

from app.settings import TimezoneSettings

SYMBOL = re.compile(r"^[A-Z0-9.]{1,12}$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def normalise_symbol(raw: str) -> str:
    """Upper-case and strip one symbol; ValueError if it is not 1-12 of A-Z, 0-9 and '.'."""
    symbol = raw.strip().upper()
    if not SYMBOL.match(symbol):
        raise ValueError(f"invalid ticker symbol {raw!r}: expected 1-12 of A-Z, 0-9, '.'")
    return symbol


def parse_symbols(raw: str) -> list[str]:
    """Parse a comma list into unique normalised symbols, first occurrence order kept."""
    symbols: list[str] = []
    bad: list[str] = []
    for part in raw.split(","):
        if not part.strip():
            continue
        try:
            symbol = normalise_symbol(part)
        except ValueError:
            bad.append(part.strip())
            continue
        if symbol not in symbols:
            symbols.append(symbol)
    # One bad entry fails the whole list: dropping it silently would hide a typo for good.
    if bad:
        raise ValueError(f"invalid ticker symbol(s) {', '.join(map(repr, bad))}")
    if not symbols:
        raise ValueError("no ticker symbols given")
    return symbols


def parse_report_date(raw: object, default: date) -> date:
    """A YYYY-MM-DD string as a date, ``default`` when absent; ValueError otherwise."""
    if raw is None or raw == "":
        return default
    # date.fromisoformat alone would also accept '20261123' and week dates.
    if not isinstance(raw, str) or not ISO_DATE.match(raw):
        raise ValueError(f"invalid report date {raw!r}: expected YYYY-MM-DD")
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"invalid report date {raw!r}: no such day") from None


class TickerSymbolsSettings(TimezoneSettings):
    """TZ and TICKER_SYMBOLS (a comma list, every entry validated at cold start)."""

    ticker_symbols: str

    @field_validator("ticker_symbols")
    @classmethod
    def _valid_symbols(cls, value: str) -> str:
        parse_symbols(value)
        return value

    @property
    def symbols(self) -> list[str]:
        """The normalised, de-duplicated symbols."""
        return parse_symbols(self.ticker_symbols)
