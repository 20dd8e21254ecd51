"""adapters.naver and adapters.yahoo on real captured answers (third-party data in
../shared, not in the repo). Every expectation below was read off the samples by hand."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from typing import Any

import pytest

from adapters.naver import parse_fchart, parse_mobile_basic, parse_realtime
from adapters.records import KST, DailyBar, Quote, Ticker
from adapters.yahoo import parse_chart
from tests import shared

SHARED = shared.SHARED / "fixtures"
NAVER_DIR = SHARED / "naver_finance"
YAHOO_DIR = SHARED / "yahoo"

shared.require(NAVER_DIR, YAHOO_DIR)


def naver(name: str) -> bytes:
    return (NAVER_DIR / name).read_bytes()


def yahoo(name: str) -> bytes:
    """The chart API body of a recorded exchange (the recording wraps it)."""
    recorded = json.loads((YAHOO_DIR / f"yahoo-finance2__chart-{name}.json").read_bytes())
    return json.dumps(recorded["response"]["bodyJson"]).encode()


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def ms(epoch_ms: int) -> datetime:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC)


# -- Naver polling -----------------------------------------------------------------


def test_legacy_stock_falling_gives_negative_change() -> None:
    (got,) = parse_realtime(
        naver("polling_realtime_legacy_SERVICE_ITEM_005930_2020-11-04_extracted.json"),
        tickers=[Ticker("005930")],
    )
    # nv 58500, sv 58800, cv 300 and cr 0.51 unsigned, rf "5": down.
    assert got == Quote(
        ticker="005930",
        as_of=ms(1604488004492),
        price=58_500,
        source="naver",
        prev_close=58_800,
        change=-300,
        change_pct=-0.51,
        open=58_900,
        high=59_000,
        low=57_800,
        volume=21_316_295,
        market_open=False,
    )
    assert got.as_of == utc(2020, 11, 4, 11, 6, 44, 492_000)  # 20:06 KST, 2020-11-04
    assert got.as_of.astimezone(KST).date() == date(2020, 11, 4)


def test_legacy_index_gives_points_not_hundredths() -> None:
    (got,) = parse_realtime(
        naver("polling_realtime_legacy_SERVICE_INDEX_KOSPI_2020-10-28_extracted.json"),
        tickers=[Ticker("KOSPI", kind="index")],
    )
    # nv 234526 = 2345.26 points; no rf, no previous close: cv 14.42 against cr 0.62 %
    # only fits a rise from 2330.84 (a fall from 2359.68 would be 0.61 %).
    assert got == Quote(
        ticker="KOSPI",
        as_of=ms(1603889630919),
        price=2345.26,
        source="naver",
        prev_close=2330.84,
        change=14.42,
        change_pct=0.62,
        open=None,
        high=2345.46,
        low=2316.47,
        volume=705_770_000,  # aq 705770 thousand shares
        market_open=False,
    )
    assert got.as_of == utc(2020, 10, 28, 12, 53, 50, 919_000)  # 21:53 KST, 2020-10-28


@pytest.mark.parametrize(
    ("name", "code", "expected"),
    [
        (
            "polling_realtime_marketindex_metals_GCcv1_2026-08-28_extracted.json",
            "GCcv1",
            dict(
                as_of=utc(2026, 8, 28, 16, 5, 51), price=4564.30, prev_close=4664.00,
                change=-99.70, change_pct=-2.14, open=4656.00, high=4688.00, low=4563.60,
                volume=182_463, currency="USD", market_open=True,
            ),
        ),
        (
            "polling_realtime_marketindex_energy_CLcv1_2026-08-28_extracted.json",
            "CLcv1",
            dict(
                as_of=utc(2026, 8, 28, 16, 5, 49), price=82.99, prev_close=83.53,
                change=-0.54, change_pct=-0.65, open=83.67, high=83.78, low=82.25,
                volume=97_815, currency="USD", market_open=True,
            ),
        ),
    ],
)  # fmt: skip
def test_newer_envelope_foreign_venue(name: str, code: str, expected: dict[str, Any]) -> None:
    (got,) = parse_realtime(naver(name), tickers=[Ticker(code)])
    # localTradedAt carries -05:00; the envelope's "time" (Seoul wall-clock, ten minutes
    # later: the delayTime) is only the fallback.
    assert got == Quote(ticker=code, source="naver", **expected)


# -- Naver mobile ------------------------------------------------------------------


def test_mobile_basic_matches_the_integration_answer() -> None:
    got = parse_mobile_basic(naver("m_stock_api_stock_000660_basic.json"), ticker=Ticker("000660"))
    assert got == Quote(
        ticker="000660",
        as_of=utc(2026, 10, 2, 11, 20, 22),  # 20:20:22 KST, after the after-hours session
        price=1_842_000,  # the regular close, not the after-hours overPrice 1,841,000
        source="naver_mobile",
        prev_close=1_833_000,
        change=9_000,
        change_pct=0.49,
        market_open=False,
    )
    integration = json.loads(naver("m_stock_api_stock_000660_integration.json"))
    last_close = next(i for i in integration["totalInfos"] if i["code"] == "lastClosePrice")
    assert float(last_close["value"].replace(",", "")) == got.prev_close
    today = integration["dealTrendInfos"][0]
    assert today["bizdate"] == "20261002"
    assert float(today["closePrice"].replace(",", "")) == got.price


# -- Naver fchart ------------------------------------------------------------------


def check_bars(bars: list[DailyBar], ticker: str) -> None:
    assert len(bars) == 30
    days = [b.day for b in bars]
    assert days == sorted(set(days))
    assert all(d.weekday() < 5 for d in days)
    for bar in bars:
        assert bar.ticker == ticker and bar.source == "naver"
        assert bar.open is not None and bar.high is not None and bar.low is not None
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high


def test_fchart_stock() -> None:
    bars = parse_fchart(naver("fchart_sise_005930_day_count30.xml"))
    check_bars(bars, "005930")
    assert bars[0] == DailyBar(
        "005930", date(2026, 8, 20), 257_000, 273_000, 252_500, 271_000, 26_095_919, "naver"
    )
    assert bars[-1] == DailyBar(
        "005930", date(2026, 10, 2), 273_500, 277_000, 271_500, 276_000, 11_408_387, "naver"
    )
    # Chuseok: nothing between 09-23 and 09-28.
    assert date(2026, 9, 24) not in {b.day for b in bars}
    # The same close as Samsung's row in the 000660 integration answer of that day.
    integration = json.loads(naver("m_stock_api_stock_000660_integration.json"))
    samsung = next(i for i in integration["industryCompareInfo"] if i["itemCode"] == "005930")
    assert float(samsung["closePrice"].replace(",", "")) == bars[-1].close


def test_fchart_index_decimals_and_thousands() -> None:
    bars = parse_fchart(naver("fchart_sise_KOSPI_index_day_count30.xml"))
    check_bars(bars, "KOSPI")
    by_day = {b.day: b for b in bars}
    assert by_day[date(2026, 8, 28)] == DailyBar(
        "KOSPI", date(2026, 8, 28), 6846.54, 6901.78, 6780.13, 6788.88, 292_615_000, "naver"
    )
    assert by_day[date(2026, 8, 26)].low == 6704.1  # precision 2, trailing zero dropped
    assert bars[-1].close == 7003.74


def test_fchart_sample_is_utf8_under_an_euc_kr_prolog() -> None:
    body = naver("fchart_sise_KOSPI_index_day_count30.xml")
    assert re.match(rb'<\?xml[^>]*encoding="EUC-KR"', body)
    body.decode("utf-8")  # the trap: the prolog lies about this copy
    assert parse_fchart(body.decode("utf-8").encode("cp949")) == parse_fchart(body)


# -- Yahoo -------------------------------------------------------------------------

AAPL = Ticker("AAPL")
AAPL_AS_OF = utc(2025, 2, 19, 21, 0, 1)  # meta is as of the recording, not the range


def test_yahoo_daily_one_bar_far_from_the_quote_day() -> None:
    quote, bars = parse_chart(yahoo("AAPL-2020-01-01-to-2020-01-03"), ticker=AAPL)
    assert bars == [
        DailyBar("AAPL", date(2020, 1, 2), 74.06, 75.15, 73.7975, 75.0875, 135_480_400, "yahoo")
    ]
    # chartPreviousClose (73.412, from 2019) against a 2025 price would be a +233 %
    # "change": there is no previous close to be had from this answer.
    assert quote == Quote(
        ticker="AAPL",
        as_of=AAPL_AS_OF,
        price=244.87,
        source="yahoo",
        high=246.01,
        low=243.16,
        volume=32_129_951,
        currency="USD",
        market_open=False,
    )


def test_yahoo_daily_fifty_bars_across_dst_and_a_split() -> None:
    quote, bars = parse_chart(yahoo("AAPL-2020-08-31-to-2020-11-07"), ticker=AAPL)
    assert len(bars) == 49
    assert [b.day for b in bars] == sorted({b.day for b in bars})
    assert (bars[0].day, bars[0].close) == (date(2020, 8, 31), 129.04)  # split day, 4:1
    assert (bars[-1].day, bars[-1].close) == (date(2020, 11, 6), 118.69)
    # 2020-11-02 opened at 14:30 UTC (EST) and 2020-10-30 at 13:30 UTC (EDT): both
    # fall on their own New York date.
    assert {date(2020, 10, 30), date(2020, 11, 2)} <= {b.day for b in bars}
    assert quote is not None and quote.prev_close is None


def test_yahoo_minute_weekend_is_no_data_with_a_real_previous_close() -> None:
    quote, bars = parse_chart(
        yahoo("AAPL-2025-02-01-to-2025-02-02-includePrePost-false-interval-1m"), ticker=AAPL
    )
    assert bars == []
    assert quote is not None
    # previousClose 244.47, not chartPreviousClose 236.
    assert (quote.prev_close, quote.change, quote.change_pct) == (244.47, 0.4, 0.1636)
    assert quote.as_of == AAPL_AS_OF


def test_yahoo_asian_exchange_offset_and_stale_instrument() -> None:
    quote, bars = parse_chart(yahoo("WSKT.JK-2020-01-01-to-2020-01-03"), ticker=Ticker("WSKT"))
    # 1577930400 is 02:00 UTC, 09:00 in Jakarta (+07:00) on 2020-01-02.
    assert bars == [DailyBar("WSKT", date(2020, 1, 2), 1485, 1515, 1480, 1505, 23_547_100, "yahoo")]
    assert quote is not None
    assert (quote.price, quote.currency, quote.as_of) == (202, "IDR", utc(2024, 7, 23, 20))
    # chartPreviousClose 1485 is from 2019: no -86 % "change".
    assert (quote.prev_close, quote.change, quote.change_pct) == (None, None, None)


def test_yahoo_quote_arrays_without_timestamps_are_no_bars() -> None:
    quote, bars = parse_chart(yahoo("notimestamp-quotes-length.fake"), ticker=AAPL)
    assert bars == []
    assert quote is not None and quote.price == 244.87
