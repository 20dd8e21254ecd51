"""Naver Finance, kmon's primary quote source.

Three endpoints, each a pure ``parse_*`` function plus a ``fetch_*`` that does one
:func:`adapters.http.fetch`:

- ``polling.finance.naver.com/api/realtime?query=SERVICE_ITEM:…|SERVICE_INDEX:…``
  (:func:`parse_realtime`): many codes in one answer. Two envelopes exist. The older
  one has short keys, plain JSON numbers, UNSIGNED change and change % with the
  direction in ``rf``, and index prices ×100 with index volume in thousands of shares.
  The newer one (also the shape of ``m.stock.naver.com``) has numbers as strings with
  thousands separators, a ``compareToPreviousPrice.code`` direction and an ISO trade
  time per item.
- ``m.stock.naver.com/api/{stock|index}/{code}/basic`` (:func:`parse_mobile_basic`):
  one code, newer shape.
- ``fchart.stock.naver.com/sise.nhn`` (:func:`parse_fchart`): daily bars as XML whose
  prolog says EUC-KR whatever the bytes are.

Quotes come out in the units :class:`adapters.records.Quote` promises: index points
(not ×100), signed change, volume in shares, ``as_of`` in UTC.
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote as url_quote
from urllib.parse import urlencode

import aiohttp
from lxml import etree

from adapters.errors import ParseError
from adapters.http import HttpLimits, fetch
from adapters.jsonbody import load_json
from adapters.records import KST, DailyBar, Quote, Ticker
from adapters.text import one_line
from adapters.xmltext import DECODES_ANYTHING, header_charset, markup_text, xml_parser

__all__ = [
    "DEFAULT_LIMITS",
    "SOURCE",
    "SOURCE_MOBILE",
    "fetch_daily_bars",
    "fetch_mobile_basic",
    "fetch_realtime",
    "mobile_basic_url",
    "parse_fchart",
    "parse_mobile_basic",
    "parse_realtime",
    "realtime_url",
]

# Quote.source values; they match the provider names in the quote settings, so a
# stored quote says which endpoint it came from.
SOURCE = "naver"
SOURCE_MOBILE = "naver_mobile"

# HttpLimits is frozen, so one shared default is safe.
DEFAULT_LIMITS = HttpLimits()

_JSON_ACCEPT = "application/json, text/plain;q=0.9, */*;q=0.5"
_XML_ACCEPT = "application/xml, text/xml;q=0.9, */*;q=0.5"

# Codes go into a query where ":", "," and "|" are syntax, and into URL paths.
_CODE_RE = re.compile(r"^[A-Za-z0-9]{1,12}$")

# ------------------------------------------------------------------------ public API


def realtime_url(base_url: str, tickers: Sequence[Ticker]) -> str:
    """The polling URL asking for every ticker at once.

    Stocks go under ``SERVICE_ITEM``, indices under ``SERVICE_INDEX``:
    ``…?query=SERVICE_ITEM:035420,035720|SERVICE_INDEX:KOSPI`` (URL-encoded). Raises
    ValueError for no tickers or a code that is not 1–12 letters and digits.
    """
    stocks: list[str] = []
    indices: list[str] = []
    for ticker in tickers:
        code = _checked_code(ticker)
        group = indices if ticker.kind == "index" else stocks
        if code not in group:
            group.append(code)
    if not stocks and not indices:
        raise ValueError("realtime_url needs at least one ticker")
    parts = []
    if stocks:
        parts.append("SERVICE_ITEM:" + ",".join(stocks))
    if indices:
        parts.append("SERVICE_INDEX:" + ",".join(indices))
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}{urlencode({'query': '|'.join(parts)})}"


async def fetch_realtime(
    session: aiohttp.ClientSession,
    tickers: Sequence[Ticker],
    *,
    base_url: str = "https://polling.finance.naver.com/api/realtime",
    limits: HttpLimits = DEFAULT_LIMITS,
) -> list[Quote]:
    """Quotes for ``tickers`` from one polling request (the caller batches).

    Tickers the answer does not cover are simply absent from the result, so the
    caller can ask a fallback source for them. Raises the :mod:`adapters.errors`
    family: whatever :func:`adapters.http.fetch` raises, and :class:`ParseError` as
    :func:`parse_realtime` does.
    """
    if not tickers:
        return []
    resp = await fetch(session, realtime_url(base_url, tickers), limits=limits, accept=_JSON_ACCEPT)
    return parse_realtime(resp.body, content_type=resp.content_type, tickers=tickers)


def parse_realtime(
    body: bytes, *, content_type: str | None = None, tickers: Sequence[Ticker]
) -> list[Quote]:
    """Parse a polling answer (older or newer envelope) into quotes, in ``tickers`` order.

    Each item is matched to a requested ticker by its code (``cd``, ``itemCode``,
    ``reutersCode`` …); items for codes not asked for, and items without a price, are
    left out. Empty ``datas`` gives ``[]``: no data is not an error.

    Raises ``ParseError`` with key ``not_quotes`` for a body that is not a polling
    answer (an HTML error page served with 200, JSON of another shape) and
    ``source_error`` when ``resultCode`` is not ``success``.
    """
    data = _load_json(body, content_type)
    wanted = {t.code.upper(): t for t in tickers}
    found: dict[str, Quote] = {}
    if isinstance(data, dict) and ("resultCode" in data or "result" in data):
        items = _legacy_items(data)
        envelope_time = _envelope_time(data["result"].get("time")) if items else None
        for item, area in items:
            ticker = _match(item, wanted)
            if ticker is None or ticker.code in found:
                continue
            legacy = _legacy_quote(item, ticker, index=area == "SERVICE_INDEX", at=envelope_time)
            if legacy is not None:
                found[ticker.code] = legacy
    elif isinstance(data, dict) and "datas" in data:
        datas = data["datas"]
        if not isinstance(datas, list) or not all(isinstance(i, dict) for i in datas):
            raise ParseError("not_quotes", "polling answer: 'datas' is not a list of objects")
        envelope_time = _envelope_time(data.get("time"))
        for item in datas:
            ticker = _match(item, wanted)
            if ticker is None or ticker.code in found:
                continue
            modern = _modern_quote(item, ticker, source=SOURCE, fallback=envelope_time)
            if modern is not None:
                found[ticker.code] = modern
    else:
        raise ParseError("not_quotes", f"JSON {_shape(data)} is not a polling answer")
    # A ticker asked for twice is answered once.
    return [found.pop(t.code) for t in tickers if t.code in found]


def mobile_basic_url(base_url: str, ticker: Ticker) -> str:
    """``{base_url}/stock/{code}/basic``, or ``/index/{code}/basic`` for an index."""
    code = _checked_code(ticker)
    kind = "index" if ticker.kind == "index" else "stock"
    return f"{base_url.rstrip('/')}/{kind}/{url_quote(code, safe='')}/basic"


async def fetch_mobile_basic(
    session: aiohttp.ClientSession,
    ticker: Ticker,
    *,
    base_url: str = "https://m.stock.naver.com/api",
    limits: HttpLimits = DEFAULT_LIMITS,
) -> Quote:
    """The current quote of one ticker from ``m.stock.naver.com``.

    Raises what :func:`adapters.http.fetch` raises (an unknown code is ``http_404``
    or ``http_409`` there) and :class:`ParseError` as :func:`parse_mobile_basic` does.
    """
    resp = await fetch(
        session, mobile_basic_url(base_url, ticker), limits=limits, accept=_JSON_ACCEPT
    )
    return parse_mobile_basic(resp.body, ticker=ticker, content_type=resp.content_type)


def parse_mobile_basic(body: bytes, *, ticker: Ticker, content_type: str | None = None) -> Quote:
    """Parse ``m.stock.naver.com/api/{stock|index}/{code}/basic`` into a quote.

    The regular-session price (``closePrice``) is used; the after-hours
    ``overMarketPriceInfo`` block is ignored. Raises ``ParseError``: ``not_quotes`` for
    a body that is not such an answer or has no price or trade time, ``wrong_ticker``
    when it is about another code.
    """
    data = _load_json(body, content_type)
    if not isinstance(data, dict) or "closePrice" not in data:
        raise ParseError("not_quotes", f"JSON {_shape(data)} is not a basic quote")
    codes = _codes(data)
    if codes and ticker.code.upper() not in codes:
        raise ParseError("wrong_ticker", f"asked for {ticker.code}, got {'/'.join(sorted(codes))}")
    found = _modern_quote(data, ticker, source=SOURCE_MOBILE, fallback=None)
    if found is None:
        raise ParseError("not_quotes", f"{ticker.code}: basic quote has no usable price")
    return found


async def fetch_daily_bars(
    session: aiohttp.ClientSession,
    ticker: Ticker,
    *,
    count: int = 260,
    base_url: str = "https://fchart.stock.naver.com/sise.nhn",
    limits: HttpLimits = DEFAULT_LIMITS,
) -> list[DailyBar]:
    """The last ``count`` daily bars of ``ticker``, oldest first.

    Raises what :func:`adapters.http.fetch` raises and :class:`ParseError` as
    :func:`parse_fchart` does, plus ``wrong_ticker`` when the chart is of another
    symbol.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, not {count}")
    code = _checked_code(ticker)
    query = urlencode({"symbol": code, "timeframe": "day", "count": count, "requestType": 0})
    sep = "&" if "?" in base_url else "?"
    resp = await fetch(session, f"{base_url}{sep}{query}", limits=limits, accept=_XML_ACCEPT)
    symbol, bars = _parse_chart(resp.body, index=ticker.kind == "index", ticker=ticker.code)
    if symbol and symbol.upper() != ticker.code.upper():
        raise ParseError("wrong_ticker", f"asked for {ticker.code}, got a chart of {symbol}")
    return bars


def parse_fchart(body: bytes) -> list[DailyBar]:
    """Parse fchart's ``<chartdata>`` XML into daily bars, oldest first.

    The ticker is the ``symbol`` attribute. A symbol that is not a six-character stock
    code (``KOSPI``, ``KPI200`` …) is an index: its volume is in thousands of shares
    and is multiplied out. Bars without a close are skipped.

    Raises ``ParseError("not_bars")`` for a body that is no chart (an HTML page,
    broken XML, no ``<chartdata>``, a timeframe other than ``day``, a garbled item).
    """
    _, bars = _parse_chart(body, index=None, ticker=None)
    return bars


# -------------------------------------------------------------------------- decoding


def _load_json(body: bytes, content_type: str | None) -> Any:
    # Naver answers an overload or a bad query with an HTML page and status 200.
    text = _decode_json_text(body, content_type)
    return load_json(text, error_key="not_quotes", expected="quotes")


def _decode_json_text(body: bytes, content_type: str | None) -> str:
    """Valid UTF-8 first; then the declared charset; then cp949 (old clients' EUC-KR)."""
    if body.startswith(codecs.BOM_UTF8):
        body = body[len(codecs.BOM_UTF8) :]
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    candidates: list[str] = []
    declared = header_charset(content_type)
    # A Latin-1 label decodes any bytes into mojibake: it proves nothing.
    if declared and declared != "utf-8" and declared not in DECODES_ANYTHING:
        candidates.append(declared)
    candidates.append("cp949")
    for encoding in candidates:
        try:
            return body.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    # Only names are non-ASCII and no number depends on them: read on regardless.
    return body.decode("cp949", errors="replace")


def _shape(data: Any) -> str:
    if isinstance(data, dict):
        keys = ", ".join(sorted(str(k) for k in data)[:5])
        return f"object {{{keys}}}"
    return type(data).__name__


# --------------------------------------------------------------------------- numbers

_NUMBER_RE = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$")
# Unit suffixes of the newer formats: "292,615천주" is thousands of shares,
# "21,637,450백만" millions of won. Longest first so "천주" is not read as "주".
_UNITS = (("천주", 1_000.0), ("백만", 1_000_000.0), ("천", 1_000.0), ("주", 1.0), ("원", 1.0))


def _num(value: Any) -> float | None:
    """A number from JSON: int/float, or a string with separators, sign, unit or %.

    None for what carries no number (null, "", "-", "N/A").
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    if not isinstance(value, str):
        return None
    text = value.strip().replace(",", "").removesuffix("%").strip()
    scale = 1.0
    for suffix, factor in _UNITS:
        if text.endswith(suffix):
            text, scale = text[: -len(suffix)].strip(), factor
            break
    if not _NUMBER_RE.match(text):
        return None
    return float(text) * scale


def _field(item: Mapping[str, Any], name: str) -> float | None:
    """``name``, preferring its ``…Raw`` twin (no separators) when that reads."""
    raw = _num(item.get(name + "Raw"))
    return raw if raw is not None else _num(item.get(name))


def _direction(value: Any) -> int | None:
    """+1 up, -1 down, 0 flat, None unknown: from "2"/"5"/"3"… or {"code": …, "name": …}."""
    name = None
    if isinstance(value, Mapping):
        name = value.get("name")
        value = value.get("code")
    code = str(value).strip() if isinstance(value, str | int) else ""
    if code in ("1", "2"):  # upper limit, up
        return 1
    if code in ("4", "5"):  # lower limit, down
        return -1
    if code == "3":
        return 0
    names = {"UPPER_LIMIT": 1, "RISING": 1, "LOWER_LIMIT": -1, "FALLING": -1, "UNCHANGED": 0}
    return names.get(str(name).upper()) if isinstance(name, str) else None


def _signed(value: float | None, direction: int | None) -> float | None:
    if value is None or direction is None:
        return value
    if direction == 0 or value == 0:
        return 0.0
    return math.copysign(abs(value), direction)


def _infer_direction(price: float, change: float, pct: float | None) -> int | None:
    """Which sign makes the unsigned ``change`` agree with the unsigned ``pct``.

    The older envelope's index items come without ``rf``. ``pct`` is
    ``change / prev_close`` rounded to 2 decimals and prev_close is ``price - change``
    when up, ``price + change`` when down; unless the move is tiny only one of the
    two rounds to the given percentage.
    """
    if pct is None or change <= 0:
        return None
    matches = []
    for direction, prev in ((1, price - change), (-1, price + change)):
        if prev > 0 and abs(round(change / prev * 100, 2) - abs(pct)) < 0.0051:
            matches.append(direction)
    return matches[0] if len(matches) == 1 else None


def _market_open(status: Any) -> bool | None:
    if not isinstance(status, str):
        return None
    return {"OPEN": True, "CLOSE": False}.get(status.strip().upper())


# ----------------------------------------------------------------------------- times

_COMPACT_TIME_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$")


def _envelope_time(value: Any) -> datetime | None:
    """The envelope's ``time``: epoch milliseconds, or ``YYYYMMDDHHMMSS`` in Seoul."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        text = value.strip()
        if m := _COMPACT_TIME_RE.match(text):
            year, month, day, hour, minute, second = (int(g) for g in m.groups())
            try:
                local = datetime(year, month, day, hour, minute, second, tzinfo=KST)
            except ValueError:
                return None
            return local.astimezone(UTC)
        if text.isdigit():
            return _envelope_time(int(text))
    return None


def _iso_time(value: Any) -> datetime | None:
    """``localTradedAt``: ISO-8601 with its offset; a missing offset means Seoul."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=KST)
    return when.astimezone(UTC)


# -------------------------------------------------------------------------- matching

_CODE_KEYS = ("cd", "itemCode", "reutersCode", "symbolCode", "code", "symbol")


def _codes(item: Mapping[str, Any]) -> set[str]:
    return {v.strip().upper() for k in _CODE_KEYS if isinstance(v := item.get(k), str) and v}


def _match(item: Mapping[str, Any], wanted: Mapping[str, Ticker]) -> Ticker | None:
    for key in _CODE_KEYS:
        value = item.get(key)
        if isinstance(value, str) and (ticker := wanted.get(value.strip().upper())):
            return ticker
    return None


def _checked_code(ticker: Ticker) -> str:
    if not _CODE_RE.match(ticker.code):
        raise ValueError(f"not a Naver code: {ticker.code!r}")
    return ticker.code


# ------------------------------------------------------------------ older envelope


def _legacy_items(data: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], str]]:
    code = data.get("resultCode")
    if code is not None and code != "success":
        message = data.get("message") or data.get("resultMessage") or ""
        reason = one_line(str(message), 80)  # it is logged
        raise ParseError("source_error", f"resultCode {code!r} {reason}".strip())
    result = data.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("areas"), list):
        raise ParseError("not_quotes", "polling answer without result.areas")
    items: list[tuple[Mapping[str, Any], str]] = []
    for area in result["areas"]:
        if not isinstance(area, dict):
            raise ParseError("not_quotes", "polling answer: an area is not an object")
        datas = area.get("datas")
        if datas is None:
            continue
        if not isinstance(datas, list) or not all(isinstance(i, dict) for i in datas):
            raise ParseError("not_quotes", "polling answer: 'datas' is not a list of objects")
        name = str(area.get("name") or "")
        items.extend((item, name) for item in datas)
    return items


def _legacy_quote(
    item: Mapping[str, Any], ticker: Ticker, *, index: bool, at: datetime | None
) -> Quote | None:
    # SERVICE_INDEX sends index points ×100 as integers and volume in thousands.
    scale = 100.0 if index else 1.0

    def price_field(*keys: str) -> float | None:
        for key in keys:
            if (value := _num(item.get(key))) is not None:
                return value / scale
        return None

    price = price_field("nv")
    if price is None:
        return None
    if at is None:
        raise ParseError("not_quotes", "polling answer without a usable 'time'")
    prev = price_field("sv", "pcv")
    if prev is not None and prev <= 0:
        prev = None  # 0 stands for "none" (a first trading day), not a price
    change = price_field("cv")
    pct = _num(item.get("cr"))
    direction = _direction(item.get("rf"))
    if direction is None:
        if prev is not None:
            direction = (price > prev) - (price < prev)
        elif change is not None and change < 0:
            direction = -1
        elif change == 0:
            direction = 0
        elif change is not None:
            direction = _infer_direction(price, change, pct)
    if direction is None:
        # Unsigned numbers with no way to tell up from down: report none rather than
        # a guess.
        change = pct = None
    else:
        change, pct = _signed(change, direction), _signed(pct, direction)
    volume = _num(item.get("aq"))
    return _quote(
        ticker,
        source=SOURCE,
        as_of=at,
        price=price,
        prev=prev,
        change=change,
        pct=pct,
        open_=price_field("ov"),
        high=price_field("hv"),
        low=price_field("lv"),
        volume=volume * 1000 if volume is not None and index else volume,
        market_open=_market_open(item.get("ms")),
        currency="KRW",
    )


# ---------------------------------------------------------------- newer envelope


def _modern_quote(
    item: Mapping[str, Any],
    ticker: Ticker,
    *,
    source: str,
    fallback: datetime | None,
) -> Quote | None:
    price = _field(item, "closePrice")
    if price is None:
        return None
    # The item's own trade time beats the envelope's poll time.
    as_of = _iso_time(item.get("localTradedAt")) or fallback
    if as_of is None:
        raise ParseError("not_quotes", f"{ticker.code}: quote without a trade time")
    change = _field(item, "compareToPreviousClosePrice")
    if change is None:
        change = _field(item, "fluctuations")  # market-index items name it so
    direction = _direction(item.get("compareToPreviousPrice") or item.get("fluctuationsType"))
    # These formats sometimes sign the numbers and sometimes not ("9,000" rising,
    # "-101,000" falling): the direction code, when present, decides.
    change = _signed(change, direction)
    pct = _signed(_field(item, "fluctuationsRatio"), direction)
    if direction is None and change is not None and pct is not None and change * pct < 0:
        change = pct = None  # contradictory signs and no code to settle them
    return _quote(
        ticker,
        source=source,
        as_of=as_of,
        price=price,
        prev=None,
        change=change,
        pct=pct,
        open_=_field(item, "openPrice"),
        high=_field(item, "highPrice"),
        low=_field(item, "lowPrice"),
        volume=_field(item, "accumulatedTradingVolume"),
        market_open=_market_open(item.get("marketStatus")),
        currency=_currency(item),
    )


def _currency(item: Mapping[str, Any]) -> str:
    kind = item.get("currencyType")
    if isinstance(kind, Mapping) and isinstance(code := kind.get("code"), str) and code:
        return code.upper()
    # Market-index items carry only a unit such as "USD/OZS".
    unit = item.get("unit")
    if isinstance(unit, str) and re.match(r"^[A-Z]{3}(?:/|$)", unit):
        return unit[:3]
    return "KRW"


# ----------------------------------------------------------------------- assembling


def _quote(
    ticker: Ticker,
    *,
    source: str,
    as_of: datetime,
    price: float,
    prev: float | None,
    change: float | None,
    pct: float | None,
    open_: float | None,
    high: float | None,
    low: float | None,
    volume: float | None,
    market_open: bool | None,
    currency: str,
) -> Quote:
    """Fill in what follows from the rest: prev from change, change from prev, pct."""
    if prev is None and change is not None:
        prev = _round(price - change)
    if change is None and prev is not None:
        change = _round(price - prev)
    if pct is None and change is not None and prev:
        pct = round(change / prev * 100, 2)
    return Quote(
        ticker=ticker.code,
        as_of=as_of,
        price=price,
        source=source,
        prev_close=prev,
        change=change,
        change_pct=pct,
        open=open_,
        high=high,
        low=low,
        volume=round(volume) if volume is not None else None,
        currency=currency,
        market_open=market_open,
    )


def _round(value: float) -> float:
    # Prices have at most two decimals (index points); this drops float noise such
    # as 2345.26 - 14.42 = 2330.8399999999997.
    return round(value, 4) + 0.0  # + 0.0 turns -0.0 into 0.0


# --------------------------------------------------------------------------- fchart

_BAR_DATE_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")


def _is_index_symbol(symbol: str) -> bool:
    # Stock codes are six characters starting with a digit ("005930", "0001A0");
    # index symbols are names ("KOSPI", "KOSDAQ", "KPI200").
    return not (len(symbol) == 6 and symbol[:1].isdigit())


def _chartdata(body: bytes) -> Any:
    # The prolog says EUC-KR but copies are UTF-8: valid UTF-8 is tried first. No
    # DTD, no entities; the bytes handed to lxml are UTF-8 whatever the prolog said.
    text, _ = markup_text(body, None, error_key="not_bars")
    try:
        root = etree.fromstring(text.encode("utf-8"), xml_parser())
    except (etree.LxmlError, ValueError) as exc:
        raise ParseError("not_bars", f"not well-formed XML ({type(exc).__name__})") from exc
    if not isinstance(root.tag, str):
        raise ParseError("not_bars", "no root element")
    if root.tag.lower() in ("html", "head", "body"):
        raise ParseError("not_bars", "an HTML page, not a chart")
    chart = root if root.tag == "chartdata" else root.find(".//chartdata")
    if chart is None:
        raise ParseError("not_bars", f"<{root.tag}> without <chartdata>")
    return chart


def _parse_chart(
    body: bytes, *, index: bool | None, ticker: str | None
) -> tuple[str, list[DailyBar]]:
    chart = _chartdata(body)
    timeframe = (chart.get("timeframe") or "day").strip().lower()
    if timeframe != "day":
        raise ParseError("not_bars", f"timeframe {timeframe!r}, not day")
    symbol = (chart.get("symbol") or "").strip()
    if index is None:
        index = _is_index_symbol(symbol)
    precision_text = (chart.get("precision") or "").strip()
    precision = int(precision_text) if precision_text.isdigit() else None
    name = ticker or symbol
    by_day: dict[date, DailyBar] = {}
    for item in chart.iter("item"):
        bar = _bar(item.get("data") or "", name, index=index, precision=precision)
        if bar is not None:
            by_day[bar.day] = bar  # a repeated day: the later line wins
    return symbol, [by_day[d] for d in sorted(by_day)]


def _bar(data: str, ticker: str, *, index: bool, precision: int | None) -> DailyBar | None:
    fields = [f.strip() for f in data.split("|")]
    if len(fields) != 6:
        raise ParseError("not_bars", f"item {data[:40]!r} does not have 6 fields")
    m = _BAR_DATE_RE.match(fields[0])
    if m is None:
        raise ParseError("not_bars", f"item date {fields[0][:20]!r} is not YYYYMMDD")
    try:
        day = date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError as exc:
        raise ParseError("not_bars", f"item date {fields[0]!r} does not exist") from exc

    def value(text: str) -> float | None:
        if text.lower() in ("", "null", "-"):
            return None
        if not _NUMBER_RE.match(text):
            raise ParseError("not_bars", f"item value {text[:20]!r} is not a number")
        number = float(text)
        return round(number, precision) if precision is not None else number

    open_, high, low, close = (value(f) for f in fields[1:5])
    if close is None:
        return None
    volume = _num(fields[5])  # not rounded to the price precision
    if fields[5].lower() not in ("", "null", "-") and volume is None:
        raise ParseError("not_bars", f"item volume {fields[5][:20]!r} is not a number")
    if volume is not None and index:
        volume *= 1000  # index volume is in thousands of shares
    return DailyBar(
        ticker=ticker,
        day=day,
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=round(volume) if volume is not None else None,
        source=SOURCE,
    )
