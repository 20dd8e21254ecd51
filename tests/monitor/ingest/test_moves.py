"""The bar-figure cache of MoveFactsReader: bounded by count and by day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.records import Quote
from monitor.ingest.moves import MoveFactsReader

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # 10:00 KST, a Monday
DAY = date(2026, 3, 2)


def quote(ticker: str, when: datetime) -> Quote:
    return Quote(ticker=ticker, as_of=when, price=100.0, source="naver", change_pct=1.0)


async def test_the_cache_holds_at_most_its_bound_the_least_recently_used_leaving(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    reader = MoveFactsReader(cache_max=3)
    async with sessionmaker() as session:
        for n in range(5):
            await reader.move_facts(session, [quote(f"00{n}000", T0 + timedelta(minutes=n))])
        assert len(reader) == 3
        assert [f"00{n}000" for n in range(5) if (f"00{n}000", DAY) in reader] == [
            "002000",
            "003000",
            "004000",
        ]
        # A hit counts as a use: 002000 stays when the next one comes in.
        await reader.move_facts(session, [quote("002000", T0 + timedelta(minutes=9))])
        await reader.move_facts(session, [quote("009000", T0 + timedelta(minutes=10))])
    assert {k for k in ("002000", "003000", "004000", "009000") if (k, DAY) in reader} == {
        "002000",
        "004000",
        "009000",
    }


async def test_a_new_day_forgets_the_figures_of_days_before_the_one_before(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    reader = MoveFactsReader()
    async with sessionmaker() as session:
        await reader.move_facts(session, [quote("005930", T0), quote("035420", T0)])
        await reader.move_facts(session, [quote("005930", T0 + timedelta(days=1))])
        assert len(reader) == 3  # the day before is kept for a late quote
        await reader.move_facts(session, [quote("000660", T0 + timedelta(days=2))])
    assert ("005930", DAY) not in reader and ("035420", DAY) not in reader
    assert ("005930", DAY + timedelta(days=1)) in reader
    assert ("000660", DAY + timedelta(days=2)) in reader
    assert len(reader) == 2


def test_refuses_an_empty_cache() -> None:
    with pytest.raises(ValueError):
        MoveFactsReader(cache_max=0)
