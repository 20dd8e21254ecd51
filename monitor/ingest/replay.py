"""Replay: run a ruleset over stored items and quotes, store nothing, say what would fire.

The point is tuning: a user edits a rules file and asks what it would have said over
the last month before switching it on. The replay judges with the live engine
(:class:`monitor.rules.engine.RulesEngine`): items in the order they were published, each
tagged and clustered; quotes in exchange-time order, each compared with the KOSPI's change
at that time, the daily bars before its session and the news so far. A conclusion is
counted once per dedup key, as the database would store it.

Where a ticker has no stored quote on a trading day but a daily bar (a backfilled past,
``kmon quotes backfill``), the bar stands in as that session's closing quote
(:func:`closing_quote`): its close against the previous bar's close, stamped at the
close; the KOSPI's own bar gives the index's change that day.

Not replayed: ``source_health`` rules. Poll failures are not kept as history, only
each source's current state, so there is nothing to replay them over.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.records import DailyBar, Quote
from monitor.db import repo
from monitor.db.quotes import QUOTE_COLUMNS, bar_of
from monitor.db.schema import DailyBarRow, Item, QuoteRow, Source
from monitor.market import Session
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
    not_claimed,
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
    bar_quotes: int = 0
    not_replayed: list[str] = field(default_factory=list)
    not_claimed: list[tuple[str, date, str]] = field(default_factory=list)


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
    unclaimed: set[tuple[str, date, str]] = set()
    horizon = timedelta(days=2 * _window_days(ruleset) + 7)

    def judge(quote: Quote) -> None:
        day = trading_day_of(quote.as_of)
        if quote.ticker == INDEX:
            index_change[day] = change_pct(quote)
            return
        key = (quote.ticker, day)
        if key not in stats:
            stats[key] = bar_stats(quote.ticker, bars.get(quote.ticker, []), before=day)
        # Only the news that can be in a window: after the horizon, not after the quote.
        recent = news[bisect_left(times, quote.as_of - horizon) : bisect_right(times, quote.as_of)]
        move = MoveFacts(quote, index_change.get(day), stats_from_bars(stats[key], quote))
        keep(evaluate_quote(move, recent, ruleset, calendar))
        for note in not_claimed(move, ruleset):
            if (quote.ticker, day, note) not in unclaimed:
                unclaimed.add((quote.ticker, day, note))
                result.not_claimed.append((quote.ticker, day, note))

    # The sessions with stored quotes, per ticker: the others get their bar's close.
    quoted: set[tuple[str, date]] = set()
    spans = select(QuoteRow.ticker, QuoteRow.as_of).where(QuoteRow.as_of >= since)
    if until is not None:
        spans = spans.where(QuoteRow.as_of < until)
    for ticker, as_of in (await session.execute(spans)).all():
        quoted.add((ticker, trading_day_of(as_of)))
    closing = sorted(
        (
            q
            for ticker, series in bars.items()
            for q in closing_quotes(series, since=since, until=until, calendar=calendar)
            if (ticker, trading_day_of(q.as_of)) not in quoted
        ),
        key=_order,
    )
    result.bar_quotes = len(closing)
    pending = iter(closing)
    waiting = next(pending, None)

    quotes = select(QuoteRow).where(QuoteRow.as_of >= since)
    if until is not None:
        quotes = quotes.where(QuoteRow.as_of < until)
    quotes = quotes.order_by(QuoteRow.as_of, QuoteRow.ticker != INDEX, QuoteRow.id)
    async for row in await session.stream_scalars(quotes.execution_options(yield_per=PAGE)):
        result.quotes += 1
        quote = Quote(**{name: getattr(row, name) for name in QUOTE_COLUMNS})
        # The two streams merged in the same order; a stored quote first on a tie.
        while waiting is not None and _order(waiting) < _order(quote):
            judge(waiting)
            waiting = next(pending, None)
        judge(quote)
    while waiting is not None:
        judge(waiting)
        waiting = next(pending, None)
    result.signals.sort(key=lambda s: (s.event_time, s.kind, s.subject))
    return result


def _order(quote: Quote) -> tuple[datetime, bool]:
    return quote.as_of, quote.ticker != INDEX


# The source a closing quote made of a daily bar names: the bar's source, so marked.
BAR_SOURCE_SUFFIX = "-bar"


def closing_quote(bar: DailyBar, previous: DailyBar | None, session: Session) -> Quote:
    """``bar`` as its session's closing quote: the close against ``previous`` (the bar
    of the trading day before; None when that bar is missing, and then no change),
    stamped at the close."""
    prev = previous.close if previous is not None else None
    return Quote(
        ticker=bar.ticker,
        as_of=session.closes_at.astimezone(UTC),
        price=bar.close,
        source=bar.source + BAR_SOURCE_SUFFIX,
        prev_close=prev,
        change=round(bar.close - prev, 2) if prev else None,
        # Rounded as the quote pages round it.
        change_pct=round((bar.close / prev - 1) * 100, 2) if prev else None,
        open=bar.open,
        high=bar.high,
        low=bar.low,
        volume=bar.volume,
        market_open=False,
    )


def closing_quotes(
    bars: list[DailyBar], *, since: datetime, until: datetime | None, calendar: Calendar = KRX
) -> list[Quote]:
    """The closing quotes of one ticker's ``bars`` (oldest first) whose session closed
    in ``[since, until)``."""
    out = []
    for i, bar in enumerate(bars):
        session = calendar.session_on(bar.day)
        if session is None or session.closes_at < since:
            continue
        if until is not None and session.closes_at >= until:
            continue
        previous = bars[i - 1] if i > 0 else None
        if previous is not None and calendar.trading_days_before(bar.day, 1) != [previous.day]:
            previous = None  # a gap in the bars: no change to measure
        out.append(closing_quote(bar, previous, session))
    return out


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
