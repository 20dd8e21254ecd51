"""adapters.yahoo on the project's own fixtures (tests/fixtures/quotes), parsed directly
and served by the local test server."""

from __future__ import annotations

import json
import struct
from datetime import date
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest

from adapters.errors import AuthError, ParseError, PermanentError, TransientError
from adapters.records import DailyBar, Quote, Ticker
from adapters.yahoo import _price, chart_url, fetch_chart, parse_chart, yahoo_symbol
from tests.adapters.quote_support import KAKAO, KOSPI, LIMITS, NAVER, fixture, kst
from tests.servers import FakeSource

pytest_plugins = ["tests.servers"]


def fixture_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture(name))
    return data


def f32(value: float) -> float:
    single: float = struct.unpack("<f", struct.pack("<f", value))[0]
    return single


# -- symbols -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ticker", "symbol"),
    [
        (NAVER, "035420.KS"),
        (Ticker("035720", market="KOSDAQ"), "035720.KQ"),
        (Ticker("0001a0"), "0001A0.KS"),
        (KOSPI, "^KS11"),
        (Ticker("KOSDAQ", kind="index", market="KOSDAQ"), "^KQ11"),
        (Ticker("KOSDAQ", kind="index"), "^KQ11"),
        (Ticker("KPI200", kind="index"), "^KS200"),
    ],
)
def test_yahoo_symbol(ticker: Ticker, symbol: str) -> None:
    assert yahoo_symbol(ticker) == symbol


@pytest.mark.parametrize(
    "ticker",
    [Ticker("KRX300X", kind="index"), Ticker("035420", market="NYSE"), Ticker("03/420")],
)
def test_yahoo_symbol_unknown(ticker: Ticker) -> None:
    with pytest.raises(ValueError):
        yahoo_symbol(ticker)


def test_chart_url_encodes_the_caret() -> None:
    assert chart_url("https://h/v8/finance/chart/", "^KS11", range_="1y") == (
        "https://h/v8/finance/chart/%5EKS11?interval=1d&range=1y"
    )


# -- parse_chart -------------------------------------------------------------------


def test_live_stock_previous_close_is_the_last_bar_before_today() -> None:
    quote, bars = parse_chart(fixture("yahoo_chart_035420_KS.json"), ticker=NAVER)
    # chartPreviousClose (209,500) is the close before the 5-day range, not yesterday's.
    assert quote == Quote(
        ticker="035420",
        as_of=kst(2025, 6, 17, 11, 0, 7),
        price=219_000,
        source="yahoo",
        prev_close=216_500,
        change=2_500,
        change_pct=1.1547,
        open=217_000,
        high=220_500,
        low=216_000,
        volume=612_345,
        currency="KRW",
        market_open=True,
    )
    # The null bar of 06-11 is skipped; 06-17 came twice and the later row wins.
    assert bars == [
        DailyBar("035420", date(2025, 6, 12), 211_000, 213_000, 210_500, 212_000, 700_000, "yahoo"),
        DailyBar("035420", date(2025, 6, 13), 212_500, 215_500, 212_000, 214_500, 650_000, "yahoo"),
        DailyBar("035420", date(2025, 6, 16), 214_000, 217_500, 213_500, 216_500, 800_000, "yahoo"),
        DailyBar("035420", date(2025, 6, 17), 217_000, 220_500, 216_000, 219_000, 612_345, "yahoo"),
    ]


def test_index_after_close_single_bar_float32_values_cleaned() -> None:
    quote, bars = parse_chart(fixture("yahoo_chart_KS11.json"), ticker=KOSPI)
    assert quote is not None
    # A one-day range: the close before the range is yesterday's close.
    assert (quote.price, quote.prev_close, quote.change, quote.change_pct) == (
        2950.2,
        2946.66,
        3.54,
        0.1201,
    )
    # regularMarketTime is 15:30:00, the end of the session: closed.
    assert quote.market_open is False
    assert quote.as_of == kst(2025, 6, 17, 15, 30)
    assert bars == [
        DailyBar("KOSPI", date(2025, 6, 17), 2946.66, 2955.1, 2915.4, 2950.2, 398_765_000, "yahoo")
    ]


def test_no_data_gives_the_meta_quote_and_no_bars() -> None:
    quote, bars = parse_chart(fixture("yahoo_chart_nodata.json"), ticker=NAVER)
    assert bars == []
    assert quote is not None
    assert (quote.price, quote.prev_close, quote.change, quote.change_pct) == (
        214_500,
        212_000,
        2_500,
        1.1792,
    )
    assert quote.market_open is False  # Sunday: the period is Monday's session


def test_no_data_and_no_price_is_nothing() -> None:
    data = fixture_json("yahoo_chart_nodata.json")
    del data["chart"]["result"][0]["meta"]["regularMarketPrice"]
    assert parse_chart(json.dumps(data).encode(), ticker=NAVER) == (None, [])


def test_bars_that_are_not_around_the_quote_day_do_not_give_a_previous_close() -> None:
    data = fixture_json("yahoo_chart_035420_KS.json")
    meta = data["chart"]["result"][0]["meta"]
    meta["regularMarketTime"] += 30 * 86400  # a quote a month after the bars
    quote, bars = parse_chart(json.dumps(data).encode(), ticker=NAVER)
    assert quote is not None and len(bars) == 4
    assert (quote.prev_close, quote.change, quote.change_pct, quote.open) == (None,) * 4


def test_bar_day_is_the_exchange_date_of_the_open() -> None:
    data = fixture_json("yahoo_chart_KS11.json")
    # 00:30 KST on 06-18 is still 06-17 in UTC: the day must come from gmtoffset.
    data["chart"]["result"][0]["timestamp"] = [int(kst(2025, 6, 18, 0, 30).timestamp())]
    _, (bar,) = parse_chart(json.dumps(data).encode(), ticker=KOSPI)
    assert bar.day == date(2025, 6, 18)


def chart_error(code: str, description: str) -> bytes:
    return json.dumps(
        {"chart": {"result": None, "error": {"code": code, "description": description}}}
    ).encode()


def test_unknown_symbol_is_permanent_not_found() -> None:
    with pytest.raises(PermanentError) as info:
        parse_chart(fixture("yahoo_chart_notfound.json"), ticker=NAVER)
    assert info.value.key == "not_found"
    assert "delisted" in str(info.value)


def broken_arrays() -> bytes:
    data = fixture_json("yahoo_chart_035420_KS.json")
    data["chart"]["result"][0]["indicators"]["quote"][0]["close"].pop()
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (chart_error("Bad Request", "Invalid input - interval=7m is not supported"), "chart_error"),
        (b"<!doctype html><html><body>consent</body></html>", "not_chart"),
        (b"", "not_chart"),
        (b"not json", "not_chart"),
        (b'{"finance": {"result": null}}', "not_chart"),
        (b'{"chart": {"result": [], "error": null}}', "not_chart"),
        (b'{"chart": {"result": [{"timestamp": []}], "error": null}}', "not_chart"),
        (broken_arrays(), "not_chart"),
    ],
    ids=["error", "html", "empty", "text", "other", "no_result", "no_meta", "misaligned"],
)
def test_bodies_that_are_not_charts(body: bytes, key: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_chart(body, ticker=NAVER)
    assert info.value.key == key


@pytest.mark.parametrize(
    ("value", "clean"),
    [
        (f32(2950.2), 2950.2),
        (f32(75.0875), 75.0875),
        (75.0875015258789, 75.0875),  # the float32 as JSON prints it
        (244.87, 244.87),  # a double proper is kept
        (12_345_678.0, 12_345_678.0),
        (219_000, 219_000.0),
        (None, None),
        (True, None),
        (float("nan"), None),
    ],
)
def test_indicator_values_lose_float32_noise_only(value: Any, clean: float | None) -> None:
    assert _price(value) == clean


# -- fetch_chart over a real socket ------------------------------------------------


async def test_fetch_chart_stock(http_server: FakeSource, session: aiohttp.ClientSession) -> None:
    http_server.serve("/chart/035420.KS", fixture("yahoo_chart_035420_KS.json"))
    quote, bars = await fetch_chart(
        session, NAVER, base_url=http_server.url("/chart"), limits=LIMITS
    )
    assert quote is not None and quote.price == 219_000 and len(bars) == 4
    (request,) = http_server.requests_to("/chart/035420.KS")
    assert parse_qs(request.query_string) == {"interval": ["1d"], "range": ["5d"]}


async def test_fetch_chart_index_symbol_with_caret(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve("/chart/^KS11", fixture("yahoo_chart_KS11.json"))
    quote, _ = await fetch_chart(
        session, KOSPI, range_="1d", base_url=http_server.url("/chart"), limits=LIMITS
    )
    assert quote is not None and quote.price == 2950.2


async def test_fetch_chart_404_is_not_found(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.fail("/chart/035720.KS", 404, body=fixture("yahoo_chart_notfound.json"))
    with pytest.raises(PermanentError) as info:
        await fetch_chart(session, KAKAO, base_url=http_server.url("/chart"), limits=LIMITS)
    assert (info.value.key, info.value.http_status) == ("not_found", 404)


@pytest.mark.parametrize(
    ("status", "headers", "error", "key"),
    [
        (429, {"Retry-After": "60"}, TransientError, "http_429"),
        (401, {}, AuthError, "http_401"),
        (500, {}, TransientError, "http_500"),
    ],
)
async def test_fetch_chart_http_errors_keep_the_family(
    http_server: FakeSource,
    session: aiohttp.ClientSession,
    status: int,
    headers: dict[str, str],
    error: type[Exception],
    key: str,
) -> None:
    http_server.fail("/chart/035420.KS", status, headers=headers)
    with pytest.raises(error) as info:
        await fetch_chart(session, NAVER, base_url=http_server.url("/chart"), limits=LIMITS)
    assert getattr(info.value, "key", None) == key
    if status == 429:
        assert isinstance(info.value, TransientError) and info.value.retry_after == 60


async def test_fetch_chart_of_another_symbol(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve("/chart/035720.KS", fixture("yahoo_chart_035420_KS.json"))
    with pytest.raises(ParseError) as info:
        await fetch_chart(session, KAKAO, base_url=http_server.url("/chart"), limits=LIMITS)
    assert info.value.key == "wrong_ticker"


async def test_fetch_chart_without_a_symbol_asks_nothing(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(PermanentError) as info:
        await fetch_chart(
            session, Ticker("KRX300X", kind="index"), base_url=http_server.url("/chart")
        )
    assert info.value.key == "no_symbol"
    assert http_server.requests == []
