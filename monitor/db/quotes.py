"""Repository functions for quotes and daily bars (take a session, never commit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.records import DailyBar, Quote
from monitor.db.dialect import BATCH, insert_for, insert_new_rows
from monitor.db.repo import SourceSpec, sync_kind
from monitor.db.schema import DailyBarRow, QuoteRow
from monitor.rules import evaluate
from monitor.rules.evaluate import BarStats

# The kind of the ``sources`` rows that keep each quote provider's health.
SOURCE_KIND = "quotes"

_QUOTES = QuoteRow.metadata.tables["quotes"]

QUOTE_COLUMNS = (
    "ticker", "as_of", "source", "price", "prev_close", "change", "change_pct",
    "open", "high", "low", "volume", "currency", "market_open",
)  # fmt: skip


async def insert_quotes(
    session: AsyncSession, quotes: Sequence[Quote], *, fetched_at: datetime
) -> list[Quote]:
    """Store quotes not seen yet (unique on ticker, as-of, source); return the new ones."""
    given = {(q.ticker, q.as_of, q.source): q for q in quotes}
    rows = [
        {**{name: getattr(q, name) for name in QUOTE_COLUMNS}, "fetched_at": fetched_at}
        for q in given.values()
    ]
    new = await insert_new_rows(
        session,
        _QUOTES,
        rows,
        keys=("ticker", "as_of", "source"),
        returning=("id", "ticker", "as_of", "source"),
    )
    return [given[(ticker, as_of, source)] for _, ticker, as_of, source in new]


async def upsert_bars(
    session: AsyncSession, bars: Sequence[DailyBar], *, fetched_at: datetime
) -> int:
    """Insert or refresh daily bars (the day's last answer wins); return how many."""
    if not bars:
        return 0
    rows: dict[tuple[str, date], dict[str, Any]] = {
        (b.ticker, b.day): {
            "ticker": b.ticker,
            "day": b.day,
            "open": b.open,
            "high": b.high,
            "low": b.low,
            "close": b.close,
            "volume": b.volume,
            "source": b.source,
            "fetched_at": fetched_at,
        }
        for b in bars
    }
    values = list(rows.values())
    for start in range(0, len(values), BATCH):
        stmt = insert_for(session)(DailyBarRow).values(values[start : start + BATCH])
        stmt = stmt.on_conflict_do_update(
            index_elements=["ticker", "day"],
            set_={
                col: stmt.excluded[col]
                for col in ("open", "high", "low", "close", "volume", "source", "fetched_at")
            },
        )
        await session.execute(stmt)
    return len(values)


async def latest_quotes(session: AsyncSession) -> list[QuoteRow]:
    """The newest stored quote of each ticker (by exchange time)."""
    newest = (
        select(QuoteRow.ticker, func.max(QuoteRow.as_of).label("as_of"))
        .group_by(QuoteRow.ticker)
        .subquery()
    )
    query = (
        select(QuoteRow)
        .join(newest, (QuoteRow.ticker == newest.c.ticker) & (QuoteRow.as_of == newest.c.as_of))
        .order_by(QuoteRow.ticker, QuoteRow.id.desc())
    )
    seen: dict[str, QuoteRow] = {}
    for row in (await session.scalars(query)).all():
        seen.setdefault(row.ticker, row)  # two sources at the same instant: the newer row
    return list(seen.values())


async def latest_price(session: AsyncSession, ticker: str) -> float | None:
    """The newest stored price of ``ticker`` (one index lookup, whatever the history)."""
    return await session.scalar(
        select(QuoteRow.price)
        .where(QuoteRow.ticker == ticker)
        .order_by(QuoteRow.as_of.desc(), QuoteRow.id.desc())
        .limit(1)
    )


async def list_quotes(
    session: AsyncSession,
    *,
    ticker: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[QuoteRow]:
    query = select(QuoteRow)
    if ticker:
        query = query.where(QuoteRow.ticker == ticker)
    if since:
        query = query.where(QuoteRow.as_of >= since)
    if until:
        query = query.where(QuoteRow.as_of < until)
    query = query.order_by(QuoteRow.as_of.desc(), QuoteRow.id.desc()).limit(limit)
    return list((await session.scalars(query)).all())


async def bar_stats(session: AsyncSession, ticker: str, *, before: date) -> BarStats:
    """Previous close, 52-week range and 20-day average volume from bars before ``before``
    (see :func:`monitor.rules.evaluate.bar_stats`)."""
    rows = await session.scalars(
        select(DailyBarRow)
        .where(DailyBarRow.ticker == ticker, DailyBarRow.day >= before - timedelta(days=366))
        .order_by(DailyBarRow.day)
    )
    last = await session.scalar(
        select(func.max(DailyBarRow.day)).where(DailyBarRow.ticker == ticker)
    )
    bars = [bar_of(row) for row in rows]
    stats = evaluate.bar_stats(ticker, bars, before=before)
    # The newest bar at all, also when it is older than the year read.
    return replace(stats, last_bar_day=last)


def bar_of(row: DailyBarRow) -> DailyBar:
    return DailyBar(
        ticker=row.ticker,
        day=row.day,
        open=row.open,
        high=row.high,
        low=row.low,
        close=row.close,
        volume=row.volume,
        source=row.source,
    )


async def sync_quote_sources(
    session: AsyncSession, providers: dict[str, str], *, interval: float, now: datetime
) -> None:
    """Keep one ``sources`` row per quote provider (name → base URL) for its health.

    Providers no longer configured are disabled; their history stays.
    """
    specs = [SourceSpec(name, url, interval) for name, url in providers.items()]
    await sync_kind(session, SOURCE_KIND, specs, now=now)


async def change_at(
    session: AsyncSession, ticker: str, *, start: datetime, as_of: datetime
) -> float | None:
    """The change (%) of the newest quote of ``ticker`` in ``[start, as_of]``."""
    row = (
        await session.execute(
            select(QuoteRow.change_pct, QuoteRow.price, QuoteRow.prev_close)
            .where(QuoteRow.ticker == ticker, QuoteRow.as_of >= start, QuoteRow.as_of <= as_of)
            .order_by(QuoteRow.as_of.desc(), QuoteRow.id.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        return None
    pct, price, prev = row
    if pct is not None:
        return float(pct)
    return (price - prev) / prev * 100 if prev else None


async def store_bars(
    session: AsyncSession, bars: Sequence[DailyBar], *, fetched_at: datetime
) -> tuple[int, int]:
    """Store the bars not stored yet and correct those that differ; leave the same ones
    alone. Return (new, corrected): storing the same bars again is (0, 0)."""
    if not bars:
        return 0, 0
    given = {(b.ticker, b.day): b for b in bars}
    tickers = sorted({t for t, _ in given})
    days = [d for _, d in given]
    stored: dict[tuple[str, date], DailyBar] = {}
    rows = await session.scalars(
        select(DailyBarRow).where(
            DailyBarRow.ticker.in_(tickers),
            DailyBarRow.day >= min(days),
            DailyBarRow.day <= max(days),
        )
    )
    for row in rows:
        stored[(row.ticker, row.day)] = bar_of(row)
    new = [b for key, b in given.items() if key not in stored]
    changed = [b for key, b in given.items() if key in stored and stored[key] != b]
    await upsert_bars(session, [*new, *changed], fetched_at=fetched_at)
    return len(new), len(changed)


async def list_bars(
    session: AsyncSession, *, ticker: str, since: date, until: date | None = None
) -> list[DailyBarRow]:
    """One ticker's stored daily bars from ``since`` (before ``until``), oldest first."""
    query = select(DailyBarRow).where(DailyBarRow.ticker == ticker, DailyBarRow.day >= since)
    if until is not None:
        query = query.where(DailyBarRow.day < until)
    return list((await session.scalars(query.order_by(DailyBarRow.day))).all())
