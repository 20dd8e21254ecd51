"""Backfill: the daily bars of a past range, whatever today is, for replaying the past.

The chart sources are the ones the daemon refreshes its bars from, in the same order
(Naver's fchart, else Yahoo's chart), asked for enough history to reach back to the
range's first day; what they answer outside the range is dropped, and so is a bar of a
session still trading (its figures are not the day's yet).

All or nothing: when a ticker gets no answer from any source, nothing is stored and
each failure is named, so a backfill never leaves some tickers filled and others not
without saying so. Storing is idempotent: a bar already stored as given is left alone
(:func:`monitor.db.quotes.store_bars`), so running a backfill again stores nothing new.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date, timedelta

import structlog

from adapters import naver, yahoo
from adapters.errors import FetchError
from adapters.records import DailyBar, Ticker
from monitor import market
from monitor.config import QuoteSettings, TickerConfig
from monitor.db import quotes as quotes_repo
from monitor.ingest.context import PollContext
from monitor.ingest.quotes import late_open_days, to_ticker
from monitor.timefmt import KST

log = structlog.get_logger("kmon.backfill")

# Naver's chart answers the last ``count`` bars; a calendar day per bar is more than
# enough (there are fewer trading days), capped where Naver's history ends anyway.
MAX_COUNT = 10_000
# Yahoo's chart takes fixed ranges: the shortest that reaches back far enough.
YAHOO_RANGES = (("3mo", 85), ("6mo", 175), ("1y", 360), ("2y", 725), ("5y", 1820), ("10y", 3645))


@dataclass
class TickerBackfill:
    """One ticker's part: the bars in the range, which source gave them, or why none."""

    ticker: str
    bars: list[DailyBar] = field(default_factory=list)
    source: str | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class Backfill:
    """What a backfill did: per ticker, and what was stored (nothing if any failed)."""

    since: date
    until: date
    tickers: list[TickerBackfill] = field(default_factory=list)
    new: int = 0
    corrected: int = 0

    @property
    def failed(self) -> list[TickerBackfill]:
        return [t for t in self.tickers if t.source is None]


def yahoo_range(days: int) -> str:
    """The shortest Yahoo chart range covering ``days`` calendar days back from today."""
    return next((name for name, span in YAHOO_RANGES if span >= days), "max")


async def _fetch(
    ctx: PollContext, cfg: QuoteSettings, ticker: Ticker, *, days: int
) -> tuple[list[DailyBar], str | None, list[str]]:
    """The bars of the last ``days`` calendar days from the first source that answers."""
    errors: list[str] = []
    try:
        bars = await naver.fetch_daily_bars(
            ctx.http,
            ticker,
            count=min(max(days, 1), MAX_COUNT),
            base_url=cfg.naver_chart_url,
            limits=ctx.limits,
        )
        return bars, "naver", errors
    except FetchError as exc:
        errors.append(f"naver chart: {exc.key}: {exc}")
    try:
        _, bars = await yahoo.fetch_chart(
            ctx.http, ticker, range_=yahoo_range(days), base_url=cfg.yahoo_chart_url,
            limits=ctx.limits,
        )  # fmt: skip
        return bars, "yahoo", errors
    except FetchError as exc:
        errors.append(f"yahoo chart: {exc.key}: {exc}")
    return [], None, errors


async def backfill_bars(
    ctx: PollContext,
    cfg: QuoteSettings,
    *,
    since: date,
    until: date | None = None,
    tickers: list[TickerConfig] | None = None,
) -> Backfill:
    """Fetch and store the daily bars of ``tickers`` (default: every followed one) from
    ``since`` up to, not including, ``until`` (default: the last closed session)."""
    now = ctx.clock()
    closed = market.last_closed_session(now, late_open_days=late_open_days(cfg)).day
    last = closed if until is None else min(closed, until - timedelta(days=1))
    result = Backfill(since=since, until=last + timedelta(days=1))
    chosen = tickers if tickers is not None else cfg.tickers
    days = (now.astimezone(KST).date() - since).days + 1

    async def one(t: TickerConfig) -> TickerBackfill:
        bars, source, errors = await _fetch(ctx, cfg, to_ticker(t), days=days)
        kept = [b for b in bars if since <= b.day <= last]
        return TickerBackfill(t.code, kept, source, errors)

    result.tickers = list(await asyncio.gather(*(one(t) for t in chosen)))
    for t in result.tickers:
        log.info(
            "backfill",
            ticker=t.ticker,
            source=t.source,
            bars=len(t.bars),
            errors=t.errors or None,
        )
    if result.failed:
        return result  # nothing stored: see the module's docstring
    async with ctx.sessionmaker.begin() as session:
        result.new, result.corrected = await quotes_repo.store_bars(
            session, [b for t in result.tickers for b in t.bars], fetched_at=now
        )
    ctx.bars.changed()
    return result
