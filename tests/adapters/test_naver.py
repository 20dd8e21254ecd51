"""adapters.naver on the project's own fixtures (tests/fixtures/quotes), parsed directly
and served by the local test server."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest

from adapters.errors import ParseError, PermanentError, TransientError
from adapters.naver import (
    fetch_daily_bars,
    fetch_mobile_basic,
    fetch_realtime,
    mobile_basic_url,
    parse_fchart,
    parse_mobile_basic,
    parse_realtime,
    realtime_url,
)
from adapters.records import DailyBar, Quote, Ticker
from tests.adapters.quote_support import KAKAO, KOSPI, LIMITS, NAVER, fixture, kst
from tests.servers import FakeSource

pytest_plugins = ["tests.servers"]

ALL = [NAVER, KAKAO, KOSPI]


def quote(ticker: str, as_of: datetime, price: float, **fields: Any) -> Quote:
    return Quote(ticker=ticker, as_of=as_of, price=price, source="naver", **fields)


def envelope(*items: dict[str, Any], area: str = "SERVICE_ITEM") -> bytes:
    body = {"resultCode": "success", "result": {"areas": [{"name": area, "datas": list(items)}]}}
    body["result"]["time"] = 1750125600000  # type: ignore[index]
    return json.dumps(body).encode()


# -- realtime_url ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tickers", "query"),
    [
        (ALL, "SERVICE_ITEM:035420,035720|SERVICE_INDEX:KOSPI"),
        ([NAVER], "SERVICE_ITEM:035420"),
        ([KOSPI], "SERVICE_INDEX:KOSPI"),
        ([KOSPI, NAVER, NAVER], "SERVICE_ITEM:035420|SERVICE_INDEX:KOSPI"),
        ([Ticker("KOSDAQ", kind="index"), KOSPI], "SERVICE_INDEX:KOSDAQ,KOSPI"),
    ],
)
def test_realtime_url_groups_codes_in_one_query(tickers: list[Ticker], query: str) -> None:
    url = realtime_url("https://polling.finance.naver.com/api/realtime", tickers)
    base, _, qs = url.partition("?")
    assert base == "https://polling.finance.naver.com/api/realtime"
    assert parse_qs(qs) == {"query": [query]}


def test_realtime_url_is_url_encoded() -> None:
    assert realtime_url("https://h/api/realtime", ALL) == (
        "https://h/api/realtime?query=SERVICE_ITEM%3A035420%2C035720%7CSERVICE_INDEX%3AKOSPI"
    )
    assert realtime_url("https://h/r?x=1", [NAVER]) == "https://h/r?x=1&query=SERVICE_ITEM%3A035420"


@pytest.mark.parametrize("tickers", [[], [Ticker("0354|20")], [Ticker("KOSPI,X", kind="index")]])
def test_realtime_url_refuses_no_ticker_or_a_code_that_breaks_the_query(
    tickers: list[Ticker],
) -> None:
    with pytest.raises(ValueError):
        realtime_url("https://h/api/realtime", tickers)


# -- parse_realtime: older envelope ------------------------------------------------

OPEN_AT = kst(2025, 6, 17, 11, 0)
OPEN_QUOTES = [
    quote(
        "035420", OPEN_AT, 219_000, prev_close=216_500, change=2_500, change_pct=1.15,
        open=217_000, high=220_500, low=216_000, volume=612_345, market_open=True,
    ),
    quote(
        "035720", OPEN_AT, 51_800, prev_close=52_400, change=-600, change_pct=-1.15,
        open=52_300, high=52_600, low=51_500, volume=1_203_456, market_open=True,
    ),
    # Index points, not ×100; volume in shares, not thousands. The item has no rf:
    # only "down" makes 25.34 points agree with 0.86 %.
    quote(
        "KOSPI", OPEN_AT, 2921.32, prev_close=2946.66, change=-25.34, change_pct=-0.86,
        open=None, high=2948.10, low=2918.00, volume=201_234_000, market_open=True,
    ),
]  # fmt: skip


def test_open_market_gives_signed_quotes_in_the_instruments_units() -> None:
    assert parse_realtime(fixture("naver_realtime_open.json"), tickers=ALL) == OPEN_QUOTES


def test_quotes_come_in_the_order_asked_and_only_for_codes_asked() -> None:
    body = fixture("naver_realtime_open.json")
    assert parse_realtime(body, tickers=[KOSPI, NAVER]) == [OPEN_QUOTES[2], OPEN_QUOTES[0]]
    assert parse_realtime(body, tickers=[Ticker("005930")]) == []
    assert parse_realtime(body, tickers=[NAVER, NAVER]) == [OPEN_QUOTES[0]]


def test_closed_market_flat_lower_limit_and_index_with_direction() -> None:
    at = kst(2025, 6, 10, 16, 10)
    assert parse_realtime(fixture("naver_realtime_closed.json"), tickers=ALL) == [
        quote(
            "035420", at, 214_500, prev_close=214_500, change=0.0, change_pct=0.0,
            open=214_000, high=216_000, low=213_000, volume=456_789, market_open=False,
        ),
        quote(
            "035720", at, 35_000, prev_close=50_000, change=-15_000, change_pct=-30.0,
            open=45_000, high=45_500, low=35_000, volume=9_876_543, market_open=False,
        ),
        quote(
            "KOSPI", at, 2894.62, prev_close=2920.03, change=-25.41, change_pct=-0.87,
            open=2915.00, high=2921.00, low=2880.70, volume=512_345_000, market_open=False,
        ),
    ]  # fmt: skip


def test_june_2025_episode_fixture() -> None:
    at = datetime(2025, 6, 18, 1, 30, tzinfo=UTC)  # 10:30 KST
    naver, kakao, kospi = parse_realtime(fixture("naver_realtime_2025-06-18.json"), tickers=ALL)
    assert (naver.price, naver.prev_close, naver.change, naver.change_pct) == (
        253_550,
        220_000,
        33_550,
        15.25,
    )
    assert (kakao.price, kakao.prev_close, kakao.change, kakao.change_pct) == (
        55_100,
        51_800,
        3_300,
        6.37,
    )
    assert (kospi.price, kospi.prev_close, kospi.change, kospi.change_pct) == (
        2970.85,
        2950.20,
        20.65,
        0.70,
    )
    for q in (naver, kakao, kospi):
        assert q.as_of == at
        assert q.market_open is True
        # The percentages are what the numbers say, not just what the source typed.
        assert q.prev_close and q.change is not None and q.change_pct is not None
        assert round(q.change / q.prev_close * 100, 2) == q.change_pct


@pytest.mark.parametrize(
    ("rf", "change", "pct"),
    [("1", 30_000, 30.0), ("2", 30_000, 30.0), ("3", 0.0, 0.0), ("4", -30_000, -30.0),
     ("5", -30_000, -30.0)],
)  # fmt: skip
def test_rf_gives_the_sign_of_unsigned_change(rf: str, change: float, pct: float) -> None:
    item = {"cd": "035420", "nv": 130_000, "cv": 30_000, "cr": 30.0, "rf": rf}
    (got,) = parse_realtime(envelope(item), tickers=[NAVER])
    assert (got.change, got.change_pct) == (change, pct)


def test_index_without_rf_whose_direction_cannot_be_told_has_no_change() -> None:
    # 5.34 points is 0.18 % both from 2935.66 up and from 2946.34 down.
    item = {"cd": "KOSPI", "nv": 294_100, "cv": 534, "cr": 0.18}
    (got,) = parse_realtime(envelope(item, area="SERVICE_INDEX"), tickers=[KOSPI])
    assert got.price == 2941.0
    assert (got.prev_close, got.change, got.change_pct) == (None, None, None)


def test_previous_close_gives_the_direction_when_rf_is_missing() -> None:
    item = {"cd": "035420", "nv": 210_000, "sv": 216_500, "cv": 6_500, "cr": 3.0}
    (got,) = parse_realtime(envelope(item), tickers=[NAVER])
    assert (got.change, got.change_pct) == (-6_500, -3.0)


def test_items_without_a_price_are_left_out() -> None:
    items = ({"cd": "035420", "nv": None, "cv": 0}, {"cd": "035720", "nv": 51_800, "rf": "3"})
    assert [q.ticker for q in parse_realtime(envelope(*items), tickers=ALL)] == ["035720"]


def test_empty_datas_is_no_data_not_an_error() -> None:
    assert parse_realtime(fixture("naver_realtime_empty.json"), tickers=ALL) == []


# -- parse_realtime: newer envelope ------------------------------------------------


def test_newer_envelope_strings_separators_and_trade_times() -> None:
    got = parse_realtime(fixture("naver_realtime_new.json"), tickers=ALL)
    assert got == [
        quote(
            "035420", kst(2025, 6, 17, 11, 0, 5), 219_000, prev_close=216_500, change=2_500,
            change_pct=1.15, open=217_000, high=220_500, low=216_000, volume=612_345,
            market_open=True,
        ),
        # No localTradedAt: the envelope's "20250617110007", Seoul time.
        quote(
            "035720", kst(2025, 6, 17, 11, 0, 7), 51_800, prev_close=52_400, change=-600,
            change_pct=-1.15, open=52_300, high=52_600, low=51_500, volume=1_203_456,
            market_open=True,
        ),
        quote(
            "KOSPI", kst(2025, 6, 17, 11, 0, 4), 2921.32, prev_close=2946.66, change=-25.34,
            change_pct=-0.86, open=2946.10, high=2948.10, low=2918.00, volume=201_234_000,
            market_open=True,
        ),
    ]  # fmt: skip


def test_newer_envelope_unsigned_numbers_take_the_direction_code() -> None:
    item = {
        "itemCode": "035420",
        "closePrice": "210,000",
        "compareToPreviousClosePrice": "6,500",
        "fluctuationsRatio": "3.00",
        "compareToPreviousPrice": {"code": "5", "name": "FALLING"},
        "localTradedAt": "2025-06-17T11:00:00+09:00",
    }
    body = json.dumps({"pollingInterval": 7000, "datas": [item], "time": "20250617110001"})
    (got,) = parse_realtime(body.encode(), tickers=[NAVER])
    assert (got.change, got.change_pct, got.prev_close) == (-6_500, -3.0, 216_500)


# -- parse_realtime: encodings and errors ------------------------------------------


@pytest.mark.parametrize("content_type", [None, "application/json;charset=EUC-KR", "text/plain"])
def test_euc_kr_body_parses_like_utf8(content_type: str | None) -> None:
    body = fixture("naver_realtime_open_euckr.json")
    with pytest.raises(UnicodeDecodeError):
        body.decode("utf-8")  # the fixture really is cp949 bytes
    assert parse_realtime(body, content_type=content_type, tickers=ALL) == OPEN_QUOTES


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (fixture("naver_error_page.html"), "not_quotes"),
        (b"", "not_quotes"),
        (b"   \n", "not_quotes"),
        (b"[]", "not_quotes"),
        (b'{"message": "bad query"}', "not_quotes"),
        (b'{"resultCode": "success", "result": {}}', "not_quotes"),
        (b'{"resultCode": "success", "result": {"areas": [{"datas": {}}]}}', "not_quotes"),
        (b'{"pollingInterval": 7000, "datas": {"a": 1}}', "not_quotes"),
        (b'{"resultCode": "success", "result": {"areas": [', "not_quotes"),
        (b"[" * 100_000, "not_quotes"),
        (fixture("naver_realtime_fail.json"), "source_error"),
    ],
    ids=[
        "html",
        "empty",
        "blank",
        "list",
        "other_json",
        "no_areas",
        "datas_not_list",
        "new_datas_not_list",
        "truncated",
        "deep",
        "result_code",
    ],
)
def test_bodies_that_are_not_quotes(body: bytes, key: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_realtime(body, tickers=ALL)
    assert info.value.key == key
    assert "\n" not in str(info.value)


def test_items_without_any_time_are_a_parse_error() -> None:
    area = {"name": "SERVICE_ITEM", "datas": [{"cd": "035420", "nv": 1}]}
    body = json.dumps({"resultCode": "success", "result": {"areas": [area]}}).encode()
    with pytest.raises(ParseError) as info:
        parse_realtime(body, tickers=ALL)
    assert info.value.key == "not_quotes"


# -- fetch_realtime over a real socket ---------------------------------------------


async def test_fetch_realtime_asks_once_for_every_ticker(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve("/api/realtime", fixture("naver_realtime_open.json"))
    got = await fetch_realtime(
        session, ALL, base_url=http_server.url("/api/realtime"), limits=LIMITS
    )
    assert got == OPEN_QUOTES
    (request,) = http_server.requests_to("/api/realtime")
    assert parse_qs(request.query_string) == {
        "query": ["SERVICE_ITEM:035420,035720|SERVICE_INDEX:KOSPI"]
    }
    assert "application/json" in request.headers["Accept"]


async def test_fetch_realtime_decodes_euc_kr(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve(
        "/api/realtime",
        fixture("naver_realtime_open_euckr.json"),
        headers={"Content-Type": "text/plain;charset=EUC-KR"},
    )
    got = await fetch_realtime(
        session, ALL, base_url=http_server.url("/api/realtime"), limits=LIMITS
    )
    assert got == OPEN_QUOTES


@pytest.mark.parametrize(
    ("name", "expected"),
    [("naver_realtime_closed.json", 3), ("naver_realtime_empty.json", 0)],
)
async def test_fetch_realtime_closed_and_empty(
    http_server: FakeSource, session: aiohttp.ClientSession, name: str, expected: int
) -> None:
    http_server.serve("/api/realtime", fixture(name))
    got = await fetch_realtime(
        session, ALL, base_url=http_server.url("/api/realtime"), limits=LIMITS
    )
    assert len(got) == expected
    assert all(q.market_open is False for q in got)


async def test_fetch_realtime_html_page_with_status_200(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve(
        "/api/realtime",
        fixture("naver_error_page.html"),
        headers={"Content-Type": "text/html;charset=EUC-KR"},
    )
    with pytest.raises(ParseError) as info:
        await fetch_realtime(session, ALL, base_url=http_server.url("/api/realtime"), limits=LIMITS)
    assert info.value.key == "not_quotes"


async def test_fetch_realtime_429_carries_retry_after(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.fail("/api/realtime", 429, headers={"Retry-After": "30"})
    with pytest.raises(TransientError) as info:
        await fetch_realtime(session, ALL, base_url=http_server.url("/api/realtime"), limits=LIMITS)
    assert (info.value.key, info.value.http_status, info.value.retry_after) == ("http_429", 429, 30)


async def test_fetch_realtime_of_nothing_asks_nothing(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    assert await fetch_realtime(session, [], base_url=http_server.url("/api/realtime")) == []
    assert http_server.requests == []


# -- mobile basic ------------------------------------------------------------------


def test_mobile_basic_stock_uses_the_regular_price_not_after_hours() -> None:
    got = parse_mobile_basic(fixture("naver_mobile_basic_035420.json"), ticker=NAVER)
    assert got == Quote(
        ticker="035420",
        as_of=kst(2025, 6, 17, 20, 5, 12),
        price=220_000,
        source="naver_mobile",
        prev_close=216_500,
        change=3_500,
        change_pct=1.62,
        market_open=False,
    )


def test_mobile_basic_index_volume_in_thousands_is_multiplied_out() -> None:
    got = parse_mobile_basic(fixture("naver_mobile_basic_KOSPI.json"), ticker=KOSPI)
    assert got == Quote(
        ticker="KOSPI",
        as_of=kst(2025, 6, 17, 15, 30),
        price=2950.20,
        source="naver_mobile",
        prev_close=2946.66,
        change=3.54,
        change_pct=0.12,
        open=2946.66,
        high=2955.10,
        low=2915.40,
        volume=398_765_000,
        market_open=False,
    )


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (fixture("naver_mobile_basic_035420.json"), "wrong_ticker"),
        (fixture("naver_error_page.html"), "not_quotes"),
        (b'{"code": "StockConflict", "message": "not found"}', "not_quotes"),
        (b'{"itemCode": "035720", "closePrice": "-"}', "not_quotes"),
        (b'{"itemCode": "035720", "closePrice": "51,800"}', "not_quotes"),  # no time
    ],
)
def test_mobile_basic_errors(body: bytes, key: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_mobile_basic(body, ticker=KAKAO)
    assert info.value.key == key


def test_mobile_basic_url() -> None:
    assert mobile_basic_url("https://m.stock.naver.com/api/", NAVER) == (
        "https://m.stock.naver.com/api/stock/035420/basic"
    )
    assert mobile_basic_url("https://m.stock.naver.com/api", KOSPI) == (
        "https://m.stock.naver.com/api/index/KOSPI/basic"
    )


async def test_fetch_mobile_basic_stock_and_index(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve("/api/stock/035420/basic", fixture("naver_mobile_basic_035420.json"))
    http_server.serve("/api/index/KOSPI/basic", fixture("naver_mobile_basic_KOSPI.json"))
    base = http_server.url("/api")
    stock = await fetch_mobile_basic(session, NAVER, base_url=base, limits=LIMITS)
    index = await fetch_mobile_basic(session, KOSPI, base_url=base, limits=LIMITS)
    assert (stock.price, index.price) == (220_000, 2950.20)


async def test_fetch_mobile_basic_unknown_code(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(PermanentError) as info:
        await fetch_mobile_basic(session, KAKAO, base_url=http_server.url("/api"), limits=LIMITS)
    assert info.value.key == "http_404"


# -- fchart daily bars -------------------------------------------------------------

KAKAO_BARS = [
    DailyBar("035720", date(2025, 6, 11), 50_800, 51_500, 50_600, 51_200, 2_345_678, "naver"),
    DailyBar("035720", date(2025, 6, 12), 51_200, 52_000, 51_000, 51_900, 2_567_890, "naver"),
    DailyBar("035720", date(2025, 6, 13), 51_900, 52_400, 51_700, 52_200, 1_987_654, "naver"),
    DailyBar("035720", date(2025, 6, 16), 52_200, 52_600, 52_000, 52_400, 1_765_432, "naver"),
    DailyBar("035720", date(2025, 6, 17), 52_300, 52_600, 51_500, 51_800, 2_456_789, "naver"),
]


def test_fchart_euc_kr_bytes_under_euc_kr_prolog() -> None:
    assert parse_fchart(fixture("naver_fchart_035720_euckr.xml")) == KAKAO_BARS


def test_fchart_index_utf8_under_euc_kr_prolog_volume_in_thousands() -> None:
    bars = parse_fchart(fixture("naver_fchart_KOSPI.xml"))
    assert [b.day for b in bars] == [
        date(2025, 6, 11),
        date(2025, 6, 12),
        date(2025, 6, 13),
        date(2025, 6, 16),
        date(2025, 6, 17),
    ]
    assert bars[-1] == DailyBar(
        "KOSPI", date(2025, 6, 17), 2946.66, 2955.1, 2915.4, 2950.2, 398_765_000, "naver"
    )


def chart(*rows: str, timeframe: str = "day", symbol: str = "035720") -> bytes:
    items = "".join(f'<item data="{r}" />' for r in rows)
    return (
        f'<?xml version="1.0" encoding="EUC-KR" ?><protocol><chartdata symbol="{symbol}" '
        f'name="x" count="{len(rows)}" timeframe="{timeframe}" precision="0">{items}'
        "</chartdata></protocol>"
    ).encode()


def test_fchart_nulls_and_order() -> None:
    body = chart(
        "20250617|null|null|null|51800|null",
        "20250616|52200|52600|52000|52400|1765432",
        "20250613|52000|52400|51700|null|0",
    )
    assert parse_fchart(body) == [
        DailyBar("035720", date(2025, 6, 16), 52_200, 52_600, 52_000, 52_400, 1_765_432, "naver"),
        DailyBar("035720", date(2025, 6, 17), None, None, None, 51_800, None, "naver"),
    ]


def test_fchart_without_items_is_no_data() -> None:
    assert parse_fchart(chart()) == []


@pytest.mark.parametrize(
    "body",
    [
        fixture("naver_error_page.html"),
        b"",
        b"{}",
        b"<protocol></protocol>",
        b"<protocol><chartdata symbol='035720'><item data='2025",
        chart("202506171530|null|null|null|51800|1200", timeframe="minute"),
        chart("20250617|52300|52600"),
        chart("2025-06-17|52300|52600|51500|51800|2456789"),
        chart("20250231|52300|52600|51500|51800|2456789"),
        chart("20250617|52300|52600|51500|1e9|2456789"),
        chart("20250617|52300|52600|51500|51800|many"),
    ],
    ids=[
        "html",
        "empty",
        "json",
        "no_chartdata",
        "broken",
        "minute",
        "short_item",
        "iso_date",
        "no_such_day",
        "exponent",
        "bad_volume",
    ],
)
def test_fchart_bodies_that_are_not_daily_bars(body: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_fchart(body)
    assert info.value.key == "not_bars"


def test_fchart_entities_are_never_expanded() -> None:
    body = (
        b'<?xml version="1.0"?><!DOCTYPE protocol [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
        b'<protocol><chartdata symbol="035720" timeframe="day">'
        b'<item data="20250617|1|1|1|&x;|1"/></chartdata></protocol>'
    )
    with pytest.raises(ParseError) as info:
        parse_fchart(body)
    assert info.value.key == "not_bars"


async def test_fetch_daily_bars(http_server: FakeSource, session: aiohttp.ClientSession) -> None:
    http_server.serve("/sise.nhn", fixture("naver_fchart_035720_euckr.xml"))
    got = await fetch_daily_bars(
        session, KAKAO, count=5, base_url=http_server.url("/sise.nhn"), limits=LIMITS
    )
    assert got == KAKAO_BARS
    (request,) = http_server.requests_to("/sise.nhn")
    assert parse_qs(request.query_string) == {
        "symbol": ["035720"],
        "timeframe": ["day"],
        "count": ["5"],
        "requestType": ["0"],
    }


async def test_fetch_daily_bars_of_another_symbol(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve("/sise.nhn", fixture("naver_fchart_035720_euckr.xml"))
    with pytest.raises(ParseError) as info:
        await fetch_daily_bars(session, NAVER, base_url=http_server.url("/sise.nhn"), limits=LIMITS)
    assert info.value.key == "wrong_ticker"


async def test_fetch_daily_bars_index_is_multiplied_by_kind(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve("/sise.nhn", chart("20250617|1|2|1|2|300", symbol="KOSPI"))
    (bar,) = await fetch_daily_bars(
        session, KOSPI, base_url=http_server.url("/sise.nhn"), limits=LIMITS
    )
    assert (bar.ticker, bar.volume) == ("KOSPI", 300_000)


async def test_fetch_daily_bars_needs_a_positive_count(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError):
        await fetch_daily_bars(session, KAKAO, count=0, base_url="http://127.0.0.1:9/sise.nhn")
