"""Daily bars as closing quotes, for a replay of sessions with no stored quote."""

from __future__ import annotations

from datetime import UTC, date, datetime

from adapters.records import DailyBar
from monitor.ingest.replay import closing_quotes
from monitor.timefmt import KST


def bar(day: date, close: float) -> DailyBar:
    return DailyBar("035420", day, close - 1000, close + 2000, close - 3000, close, 1000, "naver")


def test_a_bar_is_its_sessions_closing_quote_against_the_bar_before() -> None:
    bars = [bar(date(2025, 6, 17), 220_000), bar(date(2025, 6, 18), 243_500)]
    since = datetime(2025, 6, 18, tzinfo=KST)
    (quote,) = closing_quotes(bars, since=since, until=None)
    assert quote.as_of == datetime(2025, 6, 18, 15, 30, tzinfo=KST).astimezone(UTC)
    assert (quote.price, quote.prev_close, quote.change, quote.change_pct) == (
        243_500,
        220_000,
        23_500,
        10.68,
    )
    assert (quote.high, quote.low, quote.volume, quote.source) == (
        245_500,
        240_500,
        1000,
        "naver-bar",
    )
    assert quote.market_open is False


def test_a_gap_in_the_bars_measures_no_change() -> None:
    # 06-18 is missing: 06-19 is not compared with 06-17.
    bars = [bar(date(2025, 6, 17), 220_000), bar(date(2025, 6, 19), 252_000)]
    (quote,) = closing_quotes(bars, since=datetime(2025, 6, 19, tzinfo=KST), until=None)
    assert (quote.prev_close, quote.change_pct) == (None, None)


def test_only_the_sessions_closed_in_the_range() -> None:
    bars = [bar(date(2025, 6, d), 200_000 + d) for d in (16, 17, 18, 19)]
    got = closing_quotes(
        bars,
        since=datetime(2025, 6, 17, 15, 30, tzinfo=KST),
        until=datetime(2025, 6, 19, 15, 30, tzinfo=KST),
    )
    assert [q.as_of.astimezone(KST).date().day for q in got] == [17, 18]
