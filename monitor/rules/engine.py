"""The rules at work: tag what a poll stores, evaluate what a quote cycle stores.

:class:`RulesEngine` is called by the poll pipeline and the quote cycle inside the
transaction that stores their rows, so an item and the signal it raises (and, through
the listeners, the alert deliveries of that signal) are committed together or not at
all. Only new rows are evaluated: a re-poll of the same feed, or the same quote
again, evaluates nothing, and the signals' unique dedup key covers the rest (a
restart, a second process, a syndicated copy of a story already signalled).

What the engine keeps in memory is a cache, never the truth: the story clusters of
the last two days (rebuilt from the stored news signals after a restart, so a copy
arriving after a restart joins its story) and each ticker's daily-bar figures for the
day.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.records import Quote
from monitor.db import quotes as quotes_repo
from monitor.db import signals as signals_repo
from monitor.db.quotes import BarStats
from monitor.db.schema import SignalRow
from monitor.rules.cluster import StoryClusters
from monitor.rules.evaluate import (
    KRX,
    Calendar,
    MoveFacts,
    MoveStats,
    NewsFacts,
    Signal,
    evaluate_quote,
    evaluate_source_health,
    news_facts,
    news_window,
    trading_day_of,
)
from monitor.rules.match import tag
from monitor.rules.model import JoinedRule, Ruleset
from monitor.timefmt import KST

log = structlog.get_logger("kmon.rules")

# The index a move "relative to the KOSPI" is measured against.
INDEX = "KOSPI"


class SignalListener(Protocol):
    """Called in the storing transaction with the signals just stored (the outbox)."""

    def __call__(
        self, session: AsyncSession, rows: Sequence[SignalRow], *, now: datetime
    ) -> Awaitable[Any]: ...


def stats_from_bars(bars: BarStats | None, quote: Quote) -> MoveStats | None:
    """The figures a quote is compared with: the 52-week range up to and including the
    quote's session (the bars before it and the quote's own high and low)."""
    if bars is None:
        return None
    day_high = quote.high if quote.high is not None else quote.price
    day_low = quote.low if quote.low is not None else quote.price
    return MoveStats(
        high=max(bars.high_52w, day_high) if bars.high_52w is not None else None,
        low=min(bars.low_52w, day_low) if bars.low_52w is not None else None,
        avg_volume=bars.avg_volume_20d,
    )


def facts_of(row: SignalRow) -> NewsFacts:
    """A stored news signal as the facts a joined rule reads."""
    exp: Mapping[str, Any] = row.explanation
    rules = exp.get("rules") or [{"rule_id": row.rule_id}]
    return NewsFacts(
        item_id=str(exp.get("item_id", "")),
        title=str(exp.get("title", row.headline)),
        event_time=row.event_time,
        cluster=str(exp.get("cluster", "")),
        rule_ids=tuple(str(r["rule_id"]) for r in rules),
        entities=frozenset(exp.get("entities") or ()),
        tickers=frozenset(exp.get("tickers") or ()),
        sectors=frozenset(exp.get("sectors") or ()),
        signals=(),
    )


def earliest_window_start(ruleset: Ruleset, now: datetime, calendar: Calendar = KRX) -> datetime:
    """The start of the widest joined-rule window for a quote at ``now``."""
    days = max(
        (r.window.trading_days_before for r in ruleset.rules.values() if isinstance(r, JoinedRule)),
        default=0,
    )
    start, _, _ = news_window(now, days, True, calendar)
    return start


class RulesEngine:
    """Evaluates rules on what the daemon stores, and stores the signals.

    ``listeners`` run in the same transaction with the newly stored signals (the
    alert outbox writes its deliveries there); ``after_commit`` hooks run once the
    caller has committed (the alert dispatcher is woken).
    """

    def __init__(
        self,
        ruleset: Ruleset,
        *,
        calendar: Calendar = KRX,
        listeners: Sequence[SignalListener] = (),
        after_commit: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.ruleset = ruleset
        self.calendar = calendar
        self.clusters = StoryClusters()
        self.listeners = list(listeners)
        self.after_commit = list(after_commit)
        self._warm = False
        self._pruned_at: datetime | None = None
        self._bars: dict[tuple[str, date], BarStats] = {}
        self._bars_generation = 0

    # --- news ------------------------------------------------------------------------

    async def _warm_up(self, session: AsyncSession, now: datetime) -> None:
        """Put back the story clusters of the window: every stored copy of each story
        (a later retitle may resemble a copy more than the first headline)."""
        copies = await signals_repo.recent_story_copies(session, since=now - self.clusters.window)
        for title, published_at, cluster in copies:
            self.clusters.add(title, published_at, cluster)
        self._warm = True
        self._pruned_at = now
        log.info("clusters_restored", copies=len(copies), stories=len({c for *_, c in copies}))

    async def on_items(
        self,
        session: AsyncSession,
        source: str,
        items: Sequence[tuple[int, Mapping[str, Any]]],
        *,
        now: datetime,
    ) -> list[SignalRow]:
        """Tag newly stored items ``(id, values)`` of ``source``; store their signals."""
        if not items:
            return []
        if not self._warm:
            await self._warm_up(session, now)
        elif self._pruned_at is None or now - self._pruned_at > timedelta(hours=1):
            self.clusters.prune(now)
            self._pruned_at = now
        signals: list[Signal] = []
        links: list[tuple[str, int]] = []
        for item_id, values in items:
            title, published = values["title"], values["published_at"]
            tagging = tag(
                title, values["summary"], self.ruleset, source=source, language=values["language"]
            )
            if not tagging.news_rules_fired:
                continue  # most items: no clustering, no signal
            cluster = self.clusters.assign(title, published)
            facts = news_facts(
                str(item_id),
                title,
                published,
                cluster,
                tagging,
                self.ruleset,
                extra={"url": values.get("url"), "source": source},
            )
            signals.extend(facts.signals)
            links.extend((s.dedup_key, item_id) for s in facts.signals)
        if not signals:
            return []
        stored = await self._store(session, signals, now)
        # Every copy is linked to its story's signal, the first and the later ones.
        ids = {row.dedup_key: row.id for row in stored}
        known = {key for key, _ in links if key not in ids}
        ids.update(await signals_repo.ids_by_key(session, known))
        await signals_repo.link_items(
            session, [(ids[key], item) for key, item in links if key in ids], now=now
        )
        return stored

    # --- quotes ----------------------------------------------------------------------

    async def _bar_stats(self, session: AsyncSession, ticker: str, day: date) -> BarStats:
        key = (ticker, day)
        stats = self._bars.get(key)
        if stats is None:
            if len(self._bars) > 10_000:
                self._bars.clear()
            generation = self._bars_generation
            stats = await quotes_repo.bar_stats(session, ticker, before=day)
            # Bars refreshed while this was read: use it once, do not keep it.
            if generation == self._bars_generation:
                self._bars[key] = stats
        return stats

    def bars_changed(self) -> None:
        """Forget cached bar figures (call after daily bars are refreshed)."""
        self._bars_generation += 1
        self._bars.clear()

    async def _index_change(
        self, session: AsyncSession, batch: Mapping[str, Quote], quote: Quote
    ) -> float | None:
        index = batch.get(INDEX)
        if index is not None and trading_day_of(index.as_of) == trading_day_of(quote.as_of):
            return index.change_pct
        day = trading_day_of(quote.as_of)
        start = datetime.combine(day, datetime.min.time(), KST).astimezone(UTC)
        return await quotes_repo.change_at(session, INDEX, start=start, as_of=quote.as_of)

    async def on_quotes(
        self, session: AsyncSession, quotes: Sequence[Quote], *, now: datetime
    ) -> list[SignalRow]:
        """Evaluate move and joined rules on newly stored quotes; store their signals."""
        movers = [q for q in quotes if q.ticker != INDEX]
        if not movers:
            return []
        batch = {q.ticker: q for q in quotes}
        since = earliest_window_start(self.ruleset, min(q.as_of for q in movers), self.calendar)
        news = [facts_of(row) for row in await signals_repo.recent_news(session, since=since)]
        signals: list[Signal] = []
        for quote in movers:
            day = trading_day_of(quote.as_of)
            bars = await self._bar_stats(session, quote.ticker, day)
            move = MoveFacts(
                quote,
                await self._index_change(session, batch, quote),
                stats_from_bars(bars, quote),
            )
            signals.extend(evaluate_quote(move, news, self.ruleset, self.calendar))
        return await self._store(session, signals, now)

    # --- sources ---------------------------------------------------------------------

    async def on_source_failure(
        self,
        session: AsyncSession,
        *,
        source: str,
        interval: float,
        last_success_at: datetime | None,
        failures: int,
        error: str,
        now: datetime,
    ) -> list[SignalRow]:
        """After a failed poll: a ``source_stale`` signal once the source has been
        silent for long enough (once per outage)."""
        signals = evaluate_source_health(
            source,
            interval=interval,
            last_success_at=last_success_at,
            failures=failures,
            last_error=error,
            now=now,
            ruleset=self.ruleset,
        )
        return await self._store(session, signals, now)

    # --- storing ---------------------------------------------------------------------

    async def _store(
        self, session: AsyncSession, signals: Sequence[Signal], now: datetime
    ) -> list[SignalRow]:
        if not signals:
            return []
        started = time.perf_counter()
        stored = await signals_repo.store_signals(session, signals, now=now)
        for listener in self.listeners:
            await listener(session, stored, now=now)
        for row in stored:
            log.info(
                "signal",
                id=row.id,
                kind=row.kind,
                rule=row.rule_id,
                severity=row.severity,
                subject=row.subject,
                headline=row.headline[:200],
                store_ms=round((time.perf_counter() - started) * 1000, 1),
            )
        return stored

    def committed(self, stored: Sequence[SignalRow]) -> None:
        """Call after the transaction that stored ``stored`` has committed."""
        if stored:
            for hook in self.after_commit:
                hook()
