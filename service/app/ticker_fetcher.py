"""Ticker fetcher (scheduled): the normalised symbol list from TICKER_SYMBOLS.

Returns ``{"symbols": [...], "as_of": "<now in TZ, ISO 8601>"}``.
"""

from __future__ import annotations

from typing import Any

from app.logs import get_logger
from app.settings import load_settings
from app.symbols import TickerSymbolsSettings

log = get_logger(__name__)


class TickerFetcherSettings(TickerSymbolsSettings):
    """TZ and TICKER_SYMBOLS."""


SETTINGS = load_settings(TickerFetcherSettings)


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Return the configured symbols and the time they were read."""
    symbols = SETTINGS.symbols
    as_of = SETTINGS.now().isoformat()
    log.info("tickers fetched count=%d symbols=%s as_of=%s", len(symbols), ",".join(symbols), as_of)
    return {"symbols": symbols, "as_of": as_of}
