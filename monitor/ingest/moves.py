"""What a new quote is compared with, read from the database: the KOSPI's change at
that moment and the ticker's daily-bar figures (cached per ticker and day)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from adapters.records import Quote
from monitor.db import quotes as quotes_repo
from monitor.rules.engine import INDEX
from monitor.rules.evaluate import BarStats, MoveFacts, stats_from_bars, trading_day_of
from monitor.timefmt import KST

# Bar figures kept at most; the cache is cleared past it (a day has a few hundred).
CACHE_MAX = 10_000


class MoveFactsReader:
    """Builds :class:`MoveFacts` for new quotes; bar figures are read once per day."""

    def __init__(self) -> None:
        self._bars: dict[tuple[str, date], BarStats] = {}
        self._generation = 0

    def changed(self) -> None:
        """Forget cached bar figures (call after daily bars are refreshed)."""
        self._generation += 1
        self._bars.clear()

    async def _bar_stats(self, session: AsyncSession, ticker: str, day: date) -> BarStats:
        key = (ticker, day)
        stats = self._bars.get(key)
        if stats is None:
            if len(self._bars) > CACHE_MAX:
                self._bars.clear()
            generation = self._generation
            stats = await quotes_repo.bar_stats(session, ticker, before=day)
            # Bars refreshed while this was read: use it once, do not keep it.
            if generation == self._generation:
                self._bars[key] = stats
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
