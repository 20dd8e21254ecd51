"""What a new quote is compared with, read from the database: the KOSPI's change at
that moment and the ticker's daily-bar figures (cached per ticker and day)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from adapters.records import Quote
from monitor.db import quotes as quotes_repo
from monitor.rules.engine import INDEX
from monitor.rules.evaluate import BarStats, MoveFacts, stats_from_bars, trading_day_of
from monitor.timefmt import KST

# Bar figures kept at most (a day has a few hundred: one per ticker followed).
CACHE_MAX = 10_000


class MoveFactsReader:
    """Builds :class:`MoveFacts` for new quotes; bar figures are read once per day.

    The cache holds at most ``cache_max`` figures, the least recently used leaving
    first, and only those of the latest trading day seen and the one before it (a
    late quote of the day before): a day's figures are of no use on the next.
    """

    def __init__(self, cache_max: int = CACHE_MAX) -> None:
        if cache_max < 1:
            raise ValueError(f"need cache_max >= 1, got {cache_max}")
        self.cache_max = cache_max
        self._bars: OrderedDict[tuple[str, date], BarStats] = OrderedDict()
        self._latest: date | None = None
        self._generation = 0

    def __len__(self) -> int:
        return len(self._bars)

    def __contains__(self, key: object) -> bool:
        """Whether the figures of ``(ticker, day)`` are cached."""
        return key in self._bars

    def changed(self) -> None:
        """Forget cached bar figures (call after daily bars are refreshed)."""
        self._generation += 1
        self._bars.clear()

    def _keep(self, key: tuple[str, date], stats: BarStats) -> None:
        day = key[1]
        if self._latest is None or day > self._latest:
            self._latest = day
            # Days before the one before it go (a few hundred entries, once a day).
            stale = [k for k in self._bars if k[1] < day - timedelta(days=1)]
            for old in stale:
                del self._bars[old]
        self._bars[key] = stats
        while len(self._bars) > self.cache_max:
            self._bars.popitem(last=False)

    async def _bar_stats(self, session: AsyncSession, ticker: str, day: date) -> BarStats:
        key = (ticker, day)
        stats = self._bars.get(key)
        if stats is not None:
            self._bars.move_to_end(key)
            return stats
        generation = self._generation
        stats = await quotes_repo.bar_stats(session, ticker, before=day)
        # Bars refreshed while this was read: use it once, do not keep it.
        if generation == self._generation:
            self._keep(key, stats)
        return stats

    async def _index_change(
        self, session: AsyncSession, batch: Mapping[str, Quote], quote: Quote
    ) -> float | None:
        day = trading_day_of(quote.as_of)
        index = batch.get(INDEX)
        if index is not None and trading_day_of(index.as_of) == day:
            return index.change_pct
        start = datetime.combine(day, datetime.min.time(), KST).astimezone(UTC)
        return await quotes_repo.change_at(session, INDEX, start=start, as_of=quote.as_of)

    async def move_facts(self, session: AsyncSession, quotes: Sequence[Quote]) -> list[MoveFacts]:
        """The facts of each new stock quote (the index is what they are compared with)."""
        batch = {q.ticker: q for q in quotes}
        facts = []
        for quote in quotes:
            if quote.ticker == INDEX:
                continue
            bars = await self._bar_stats(session, quote.ticker, trading_day_of(quote.as_of))
            kospi = await self._index_change(session, batch, quote)
            facts.append(MoveFacts(quote, kospi, stats_from_bars(bars, quote)))
        return facts
