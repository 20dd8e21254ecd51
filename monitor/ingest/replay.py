"""Replay: run a ruleset over stored items and quotes, store nothing, say what would fire.

The point is tuning: a user edits a rules file and asks what it would have said over
the last month before switching it on. The replay judges with the live engine
(:class:`monitor.rules.engine.RulesEngine`): items in the order they were published, each
tagged and clustered; quotes in exchange-time order, each compared with the KOSPI's change
at that time, the daily bars before its session and the news so far. A conclusion is
counted once per dedup key, as the database would store it.

Not replayed: ``source_health`` rules. Poll failures are not kept as history, only
each source's current state, so there is nothing to replay them over.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.records import DailyBar, Quote
from monitor.db import repo
from monitor.db.quotes import QUOTE_COLUMNS, bar_of
from monitor.db.schema import DailyBarRow, Item, QuoteRow, Source
from monitor.rules.engine import INDEX, RulesEngine
from monitor.rules.evaluate import (
    KRX,
    BarStats,
    Calendar,
    MoveFacts,
    NewsFacts,
    Signal,
    bar_stats,
    change_pct,
    evaluate_quote,
    stats_from_bars,
    trading_day_of,
)
from monitor.rules.explanation import NewsExplanation, PolicyMoveExplanation
from monitor.rules.model import JoinedRule, Ruleset, SourceHealthRule

# Rows read per round trip: a month of items is read in pages, not held as ORM rows.
PAGE = 2000


@dataclass
class ReplayResult:
    """What the replay would have stored, and how often each rule fired.

    ``hits``: per rule id, the signals in which the rule fired (a news signal lists
    every news rule that fired on the story; a policy move every joined rule that
    held), so a rule that only ever fires alongside a more severe one still counts.
    """

    signals: list[Signal] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)
    items: int = 0
    quotes: int = 0
    not_replayed: list[str] = field(default_factory=list)


def rules_in(signal: Signal) -> list[str]:
    """The rule ids that fired in ``signal`` (the lead and the others it lists)."""
    exp = signal.explanation
    listed = exp.rules if isinstance(exp, NewsExplanation | PolicyMoveExplanation) else ()
    return [r.rule_id for r in listed] or [signal.rule_id]


def _window_days(ruleset: Ruleset) -> int:
    days = [
        r.window.trading_days_before for r in ruleset.rules.values() if isinstance(r, JoinedRule)
    ]
    return max(days, default=0)


async def replay(
    session: AsyncSession,
    ruleset: Ruleset,
    *,
    since: datetime,
    until: datetime | None = None,
    calendar: Calendar = KRX,
) -> ReplayResult:
    """Evaluate ``ruleset`` over what is stored from ``since`` (to ``until``)."""
    result = ReplayResult(
        hits={rule_id: 0 for rule_id in ruleset.rules},
        not_replayed=[r.id for r in ruleset.rules.values() if isinstance(r, SourceHealthRule)],
    )
    seen: set[str] = set()

    def keep(signals: list[Signal]) -> None:
        for signal in signals:
            if signal.dedup_key in seen:
                continue
            seen.add(signal.dedup_key)
            result.signals.append(signal)
            for rule_id in rules_in(signal):
                result.hits[rule_id] = result.hits.get(rule_id, 0) + 1

    # News: a joined rule looks back a few trading days, so news from before
    # ``since`` is read too (for the quotes' windows), but its signals are not counted.
    # Items are judged as the live engine judges them, one at a time in publication
    # order, and a story's facts are its first copy's (the stored signal).
    lookback = since - timedelta(days=2 * _window_days(ruleset) + 7)
    engine = RulesEngine(ruleset, calendar=calendar)
    engine.restored = True
    news: list[NewsFacts] = []
    stories: set[str] = set()
    query = (
        select(Item)
        .add_columns(Source.name)
        .join(Source, Source.id == Item.source_id)
        .where(Item.published_at >= lookback)
        .order_by(Item.published_at, Item.id)
    )
    if until is not None:
        query = query.where(Item.published_at < until)
    stream = await session.stream(query.execution_options(yield_per=PAGE))
    async for row, source in stream:
        item = repo.stored_item(row, source)
        judged = engine.judge_items([item], now=item.published_at)
        counted = item.published_at >= since
        result.items += counted
        for facts in judged.facts:
            if facts.cluster not in stories:
                stories.add(facts.cluster)
                news.append(facts)
            if counted:
                keep(list(facts.signals))
    times = [n.event_time for n in news]

    # Quotes, the index first at a given instant so that the stocks see its change.
    # The daily bars are read up front: a streamed query leaves no room for others.
    bars = await _load_bars(session, since - timedelta(days=366), until)
    index_change: dict[date, float | None] = {}
    stats: dict[tuple[str, date], BarStats] = {}
    quotes = select(QuoteRow).where(QuoteRow.as_of >= since)
    if until is not None:
        quotes = quotes.where(QuoteRow.as_of < until)
    quotes = quotes.order_by(QuoteRow.as_of, QuoteRow.ticker != INDEX, QuoteRow.id)
    horizon = timedelta(days=2 * _window_days(ruleset) + 7)
    async for row in await session.stream_scalars(quotes.execution_options(yield_per=PAGE)):
        result.quotes += 1
        quote = Quote(**{name: getattr(row, name) for name in QUOTE_COLUMNS})
        day = trading_day_of(quote.as_of)
        if quote.ticker == INDEX:
            index_change[day] = change_pct(quote)
            continue
        key = (quote.ticker, day)
        if key not in stats:
            stats[key] = bar_stats(quote.ticker, bars.get(quote.ticker, []), before=day)
        # Only the news that can be in a window: after the horizon, not after the quote.
        recent = news[bisect_left(times, quote.as_of - horizon) : bisect_right(times, quote.as_of)]
        move = MoveFacts(quote, index_change.get(day), stats_from_bars(stats[key], quote))
        keep(evaluate_quote(move, recent, ruleset, calendar))
    result.signals.sort(key=lambda s: (s.event_time, s.kind, s.subject))
    return result


async def _load_bars(
    session: AsyncSession, start: datetime, until: datetime | None
) -> dict[str, list[DailyBar]]:
    """Every ticker's daily bars of the replayed span, oldest first."""
    query = select(DailyBarRow).where(DailyBarRow.day >= start.date())
    if until is not None:
        query = query.where(DailyBarRow.day <= until.date())
    bars: dict[str, list[DailyBar]] = {}
    for row in await session.scalars(query.order_by(DailyBarRow.ticker, DailyBarRow.day)):
        bars.setdefault(row.ticker, []).append(bar_of(row))
    return bars


def hit_table(result: ReplayResult, ruleset: Ruleset) -> list[Mapping[str, object]]:
    """One row per rule of the ruleset: its kind, severity and hits."""
    return [
        {
            "rule": rule.id,
            "kind": rule.kind,
            "severity": rule.severity,
            "hits": "not replayed"
            if rule.id in result.not_replayed
            else result.hits.get(rule.id, 0),
        }
        for rule in ruleset.rules.values()
    ]
