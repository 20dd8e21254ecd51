"""Yahoo Finance's chart API, kmon's fallback quote and daily-bar source.

``query1.finance.yahoo.com/v8/finance/chart/{symbol}?interval=1d&range=5d`` answers
``{"chart": {"result": [{"meta", "timestamp", "indicators"}], "error": null}}``. The
quote comes from ``meta``, the bars from ``timestamp[]`` and ``indicators.quote[0]``.

Two traps shape :func:`parse_chart`:

- ``meta.chartPreviousClose`` is the close before the *first bar of the range*, not
  the previous trading day's close (a 5-day range gives the close of six sessions
  ago). The previous close is ``meta.previousClose`` when sent, else the close of
  the bar before the quote's own trading day, else chartPreviousClose only when the
  quote's day is the range's single bar.
- ``meta`` is always current while the bars follow the requested range (and an
  instrument that stopped trading keeps a months-old ``regularMarketTime``): bars
  only inform the quote (previous close, open) when the range holds the quote's own
  trading day.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import urlencode

import aiohttp

from adapters.errors import ParseError, PermanentError
from adapters.http import HttpLimits, fetch
from adapters.jsonbody import load_json
from adapters.records import DailyBar, Quote, Ticker
from adapters.text import one_line

__all__ = ["DEFAULT_LIMITS", "SOURCE", "chart_url", "fetch_chart", "parse_chart", "yahoo_symbol"]

SOURCE = "yahoo"
# HttpLimits is frozen, so one shared default is safe.
DEFAULT_LIMITS = HttpLimits()

_ACCEPT = "application/json, */*;q=0.5"
# Seoul; used when an answer carries no gmtoffset (every symbol kmon asks is KRX).
_KRX_GMTOFFSET = 9 * 3600
_INDEX_SYMBOLS = {
    "KOSPI": "^KS11",
    "KOSDAQ": "^KQ11",
    "KPI200": "^KS200",  # Naver's code for the KOSPI 200
    "KOSPI200": "^KS200",
}
_MARKET_SUFFIX = {"KOSPI": ".KS", "KOSDAQ": ".KQ"}


# ------------------------------------------------------------------------ public API


def yahoo_symbol(ticker: Ticker) -> str:
    """Yahoo's symbol: ``035420.KS`` (KOSPI), ``…KQ`` (KOSDAQ), ``^KS11``/``^KQ11`` (indices).

    Raises ValueError for an index or a market Yahoo's KRX symbols do not cover.
    """
    code = ticker.code.strip().upper()
    if ticker.kind == "index":
        symbol = _INDEX_SYMBOLS.get(code)
        if symbol is None:
            raise ValueError(f"no Yahoo symbol known for the index {ticker.code!r}")
        return symbol
    suffix = _MARKET_SUFFIX.get(ticker.market.strip().upper())
    if suffix is None or not code.isalnum():
        raise ValueError(f"no Yahoo symbol for {ticker.code!r} on {ticker.market!r}")
    return code + suffix


def chart_url(base_url: str, symbol: str, *, range_: str = "5d", interval: str = "1d") -> str:
    """``{base_url}/{symbol}?interval=…&range=…`` with the symbol URL-encoded (``^``)."""
    query = urlencode({"interval": interval, "range": range_})
    return f"{base_url.rstrip('/')}/{url_quote(symbol, safe='')}?{query}"


async def fetch_chart(
    session: aiohttp.ClientSession,
    ticker: Ticker,
    *,
    range_: str = "5d",
    interval: str = "1d",
    base_url: str = "https://query1.finance.yahoo.com/v8/finance/chart",
    limits: HttpLimits = DEFAULT_LIMITS,
) -> tuple[Quote | None, list[DailyBar]]:
    """The current quote and the daily bars of ``range_`` for one ticker.

    Raises the :mod:`adapters.errors` family: what :func:`adapters.http.fetch` raises,
    except that Yahoo's 404 (its answer for an unknown symbol) becomes
    ``PermanentError("not_found")``; ``PermanentError("no_symbol")`` for a ticker with
    no Yahoo symbol; :class:`ParseError` as :func:`parse_chart` does, and
    ``wrong_ticker`` when the answer is about another symbol.
    """
    try:
        symbol = yahoo_symbol(ticker)
    except ValueError as exc:
        raise PermanentError("no_symbol", str(exc)) from exc
    url = chart_url(base_url, symbol, range_=range_, interval=interval)
    try:
        resp = await fetch(session, url, limits=limits, accept=_ACCEPT)
    except PermanentError as exc:
        if exc.http_status == 404:
            raise PermanentError(
                "not_found", f"{symbol}: unknown to Yahoo ({exc})", http_status=404
            ) from exc
        raise
    answered, quote, bars = _parse(resp.body, ticker)
    if answered and answered.upper() != symbol.upper():
        raise ParseError("wrong_ticker", f"asked for {symbol}, got {answered}")
    return quote, bars


def parse_chart(body: bytes, *, ticker: Ticker) -> tuple[Quote | None, list[DailyBar]]:
    """Parse a chart answer into (quote, daily bars oldest first) for ``ticker``.

    The quote is None when ``meta`` has no price or time. An answer with no
    ``timestamp`` (``"quote": [{}]``) is no data, not an error: no bars. Bars with a
    null close are skipped; each bar's day is its open time in the exchange's
    ``gmtoffset``.

    Raises ``PermanentError("not_found")`` when ``chart.error`` says the symbol is
    unknown, ``ParseError("chart_error")`` for any other ``chart.error`` and
    ``ParseError("not_chart")`` for a body that is not a chart answer.
    """
    _, quote, bars = _parse(body, ticker)
    return quote, bars


# ------------------------------------------------------------------------- parsing


def _parse(body: bytes, ticker: Ticker) -> tuple[str | None, Quote | None, list[DailyBar]]:
    result = _result(_load(body))
    meta = result.get("meta")
    if not isinstance(meta, dict):
        raise ParseError("not_chart", "chart result without meta")
    offset = _int(meta.get("gmtoffset"))
    if offset is None:
        offset = _int(_path(meta, "currentTradingPeriod", "regular", "gmtoffset"))
    zone = timezone(timedelta(seconds=offset if offset is not None else _KRX_GMTOFFSET))
    raw_bars = _bars(result, ticker.code, zone)
    symbol = meta.get("symbol") if isinstance(meta.get("symbol"), str) else None
    return symbol, _quote(meta, ticker.code, zone, raw_bars), [b for b, _ in raw_bars]


def _load(body: bytes) -> Any:
    # A consent or error page is served with 200.
    text = body.decode("utf-8", errors="replace")
    return load_json(text, error_key="not_chart", expected="a chart")


def _result(data: Any) -> Mapping[str, Any]:
    chart = data.get("chart") if isinstance(data, dict) else None
    if not isinstance(chart, dict):
        raise ParseError("not_chart", "JSON without a 'chart' object")
    error = chart.get("error")
    if error:
        code = str(error.get("code") or "") if isinstance(error, dict) else str(error)
        description = str(error.get("description") or "") if isinstance(error, dict) else ""
        # One line, bounded: it ends up in logs and the sources table.
        message = one_line(f"{code}: {description}", 160).strip(": ")
        if code.strip().lower() == "not found":
            raise PermanentError("not_found", message)
        raise ParseError("chart_error", message)
    results = chart.get("result")
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        raise ParseError("not_chart", "chart without a result")
    return results[0]


def _bars(
    result: Mapping[str, Any], ticker: str, zone: timezone
) -> list[tuple[DailyBar, datetime]]:
    """Bars by trading day (the later of two for one day wins), each with its open time."""
    stamps = result.get("timestamp")
    if stamps is None:
        return []  # no data for the range: "quote": [{}]
    quotes = _path(result, "indicators", "quote")
    series = quotes[0] if isinstance(quotes, list) and quotes else {}
    if not isinstance(stamps, list) or not isinstance(series, dict):
        raise ParseError("not_chart", "timestamp or indicators.quote of the wrong type")
    n = len(stamps)
    columns: dict[str, Sequence[Any]] = {}
    for name in ("open", "high", "low", "close", "volume"):
        column = series.get(name)
        if column is None:
            column = [None] * n
        if not isinstance(column, list) or len(column) != n:
            # Misaligned arrays cannot be matched to their timestamps.
            raise ParseError("not_chart", f"indicators.quote[0].{name} does not match timestamp")
        columns[name] = column
    by_day: dict[date, tuple[DailyBar, datetime]] = {}
    for i, stamp in enumerate(stamps):
        close = _price(columns["close"][i])
        seconds = _int(stamp)
        if close is None or seconds is None:
            continue  # a null bar (a holiday row or a halt)
        opened = datetime.fromtimestamp(seconds, UTC)
        day = opened.astimezone(zone).date()
        volume = _num(columns["volume"][i])
        # Yahoo sometimes sends the live day twice (its open and the last trade):
        # the later row is the fresher one.
        by_day[day] = (
            DailyBar(
                ticker=ticker,
                day=day,
                open=_price(columns["open"][i]),
                high=_price(columns["high"][i]),
                low=_price(columns["low"][i]),
                close=close,
                volume=round(volume) if volume is not None else None,
                source=SOURCE,
            ),
            opened,
        )
    return [by_day[d] for d in sorted(by_day)]


def _quote(
    meta: Mapping[str, Any],
    ticker: str,
    zone: timezone,
    bars: Sequence[tuple[DailyBar, datetime]],
) -> Quote | None:
    price = _num(meta.get("regularMarketPrice"))
    seconds = _int(meta.get("regularMarketTime"))
    if price is None or seconds is None:
        return None
    as_of = datetime.fromtimestamp(seconds, UTC)
    today = as_of.astimezone(zone).date()
    same_day = [bar for bar, _ in bars if bar.day == today]
    prev = _num(meta.get("previousClose"))
    if prev is None:
        earlier = [bar for bar, _ in bars if bar.day < today]
        if same_day and earlier:
            prev = earlier[-1].close
        elif same_day and len(bars) == 1:
            # The range holds only the quote's day: the close before it is the one
            # before the range.
            prev = _num(meta.get("chartPreviousClose"))
        # Otherwise the bars are not around the quote's day (a historical range, a
        # stale instrument): any close there would give a fictitious change.
    if prev is not None and prev <= 0:
        prev = None
    change = pct = None
    if prev is not None:
        change = round(price - prev, 6)
        pct = round(change / prev * 100, 4)
    volume = _num(meta.get("regularMarketVolume"))
    currency = meta.get("currency")
    return Quote(
        ticker=ticker,
        as_of=as_of,
        price=price,
        source=SOURCE,
        prev_close=prev,
        change=change,
        change_pct=pct,
        open=same_day[-1].open if same_day else None,
        high=_num(meta.get("regularMarketDayHigh")),
        low=_num(meta.get("regularMarketDayLow")),
        volume=round(volume) if volume is not None else None,
        currency=currency.upper() if isinstance(currency, str) and currency else "KRW",
        market_open=_market_open(meta, seconds),
    )


def _market_open(meta: Mapping[str, Any], seconds: int) -> bool | None:
    # currentTradingPeriod is today's session (or the next one once today's is over):
    # the last trade falls inside it only while the session runs.
    start = _int(_path(meta, "currentTradingPeriod", "regular", "start"))
    end = _int(_path(meta, "currentTradingPeriod", "regular", "end"))
    if start is None or end is None:
        return None
    return start <= seconds < end


# --------------------------------------------------------------------------- values


def _path(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _num(value)
    return int(number) if number is not None else None


def _price(value: Any) -> float | None:
    """An indicator value, without the noise of Yahoo's single-precision storage.

    The arrays hold float32 values printed as doubles (2970.85 arrives as
    2970.85009765625). A value that is exactly a float32 is replaced by the shortest
    decimal that rounds to the same float32; any other value is kept as sent.
    """
    number = _num(value)
    if number is None:
        return None
    try:
        single = struct.unpack("<f", struct.pack("<f", number))[0]
    except OverflowError:
        return number
    # JSON prints 15–17 digits, so the double read back may differ from the float32
    # in its last bits; a float64 value proper is ~1e-8 away from any float32.
    if abs(single - number) > abs(number) * 1e-12:
        return number
    for digits in range(1, 10):
        text = f"{number:.{digits}g}"
        if struct.unpack("<f", struct.pack("<f", float(text)))[0] == single:
            return float(text)
    return number
