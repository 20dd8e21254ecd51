"""The chart of a signal or a ticker, read from the store: what :mod:`monitor.chart`
is given to draw.

Window. A signal is drawn over its session (the KST trading day of its event time):
intraday quotes, starting from the previous close at the opening bell, so the line's
change is the day's change the alert names. A ticker's chart over a range is drawn
from quotes when the range spans at most :data:`INTRADAY_SESSIONS` sessions, from
daily closes otherwise. When quotes are wanted and fewer than two are stored, the
daily closes of the last :data:`FALLBACK_SESSIONS` sessions are drawn instead, and the
chart says so.

Events. A ``policy_move`` marks the news its rule counted, a ``disclosure_move`` the
filings its rule counted; any other kind marks the items linked to the signal, else
the signal's own time. Which kinds carry a chart is :data:`CHART_KINDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from monitor import market
from monitor.chart import Chart, ChartEvent, ChartSeries
from monitor.db.quotes import list_bars, list_quotes
from monitor.db.schema import SignalRow
from monitor.db.signals import get_signal
from monitor.rules.explanation import (
    DisclosureMoveExplanation,
    MatchedMove,
    MoveExplanation,
    PolicyMoveExplanation,
    parse,
)
from monitor.timefmt import KST

__all__ = [
    "CHART_KINDS",
    "DIGEST_SIZE",
    "FALLBACK_SESSIONS",
    "INDEX",
    "INTRADAY_SESSIONS",
    "ChartSize",
    "signal_chart",
    "ticker_chart",
]

# Kinds whose alerts carry a chart.
CHART_KINDS = frozenset({"move", "policy_move", "disclosure_move"})
INDEX = "KOSPI"
INTRADAY_SESSIONS = 2
FALLBACK_SESSIONS = 20
# A signal's news up to this many sessions before its move is drawn with it, after
# LEAD_SESSIONS of closes that show the price before the news.
EVENT_LOOKBACK = 20
LEAD_SESSIONS = 5
_QUOTES_MAX = 20_000  # quotes read for one line: a day of 10-second polls is 2,340


@dataclass(frozen=True)
class ChartSize:
    width: int
    height: int


ALERT_SIZE = ChartSize(800, 420)
DIGEST_SIZE = ChartSize(480, 260)


def _kst_day(value: datetime) -> date:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(KST).date()


def _session_of(at: datetime) -> market.Session:
    """The session of ``at``'s KST day, or the last one before it (a weekend alert)."""
    session = market.session_on(_kst_day(at))
    if session is not None:
        return session
    return market.previous_session(at)


async def _quote_line(
    session: AsyncSession, ticker: str, name: str, since: datetime, until: datetime
) -> ChartSeries:
    rows = await list_quotes(session, ticker=ticker, since=since, until=until, limit=_QUOTES_MAX)
    rows.reverse()  # stored newest first
    points: list[tuple[datetime, float]] = []
    if rows and rows[0].prev_close is not None:
        # The day's line starts from the previous close at the opening bell, so its
        # change over the window is the change the quote (and the alert) names.
        opens = _session_of(rows[0].as_of).opens_at
        if opens <= rows[0].as_of:
            points.append((opens, rows[0].prev_close))
    seen: set[datetime] = set()
    for row in rows:
        if row.as_of in seen:  # two providers answered for the same moment
            continue
        seen.add(row.as_of)
        points.append((row.as_of, row.price))
    return ChartSeries(ticker, name, tuple(points))


async def _bar_line(
    session: AsyncSession, ticker: str, name: str, since: date, last: date, until: datetime
) -> ChartSeries:
    rows = await list_bars(session, ticker=ticker, since=since, until=last + timedelta(days=1))
    points = [(datetime.combine(row.day, time(15, 30), KST), row.close) for row in rows]
    if not rows or rows[-1].day < last:
        # The session of an alert has no bar yet: its latest quote stands in.
        opens = _session_of(until - timedelta(microseconds=1)).opens_at
        quotes = await list_quotes(session, ticker=ticker, since=opens, until=until, limit=1)
        if quotes:
            points.append((quotes[0].as_of, quotes[0].price))
    return ChartSeries(ticker, name, tuple(points))


async def ticker_chart(
    session: AsyncSession,
    ticker: str,
    *,
    since: datetime,
    until: datetime,
    vs: str | None = INDEX,
    names: Mapping[str, str] | None = None,
    events: tuple[ChartEvent, ...] = (),
    title: str | None = None,
    size: ChartSize = ALERT_SIZE,
    move: tuple[float, float | None] | None = None,
) -> Chart:
    """``ticker`` (and ``vs`` beside it, unless None or the ticker itself) from
    ``since`` to ``until``."""
    names = names or {}
    name = names.get(ticker, ticker)
    lines = [ticker] + ([vs] if vs and vs != ticker else [])
    first, last = _kst_day(since), _kst_day(until - timedelta(microseconds=1))
    sessions = market.trading_days_between(first, max(first, last))
    intraday = len(sessions) <= INTRADAY_SESSIONS
    missing: list[str] = []
    series: list[ChartSeries] = []
    if intraday:
        series = [await _quote_line(session, t, names.get(t, t), since, until) for t in lines]
        if len(series[0].points) < 2:
            intraday = False
            missing.append(f"{name}: 시세 없음, 일봉으로 표시")
            days = market.trading_days_before(last + timedelta(days=1), FALLBACK_SESSIONS)
            first, last = days[0], last
    if not intraday:
        series = [await _bar_line(session, t, names.get(t, t), first, last, until) for t in lines]
    for line in series:
        if not line.points:
            missing.append(f"{line.name}: {'시세' if intraday else '일봉'} 없음")
    shown_since = series[0].points[0][0] if intraday and series[0].points else since
    period = (
        f"{_kst_day(shown_since):%Y-%m-%d}"
        if len(sessions) <= 1
        else f"{first:%Y-%m-%d} ~ {last:%Y-%m-%d}"
    )
    heading = title or f"{name} ({ticker}) · {period}"
    return Chart(
        title=heading,
        series=series[0],
        index=series[1] if len(series) > 1 else None,
        events=events,
        intraday=intraday,
        missing=tuple(missing),
        move=move,
        width=size.width,
        height=size.height,
    )


def _events_of(row: SignalRow, linked: list[tuple[datetime, str]]) -> tuple[ChartEvent, ...]:
    exp = parse(row.kind, row.explanation) if row.explanation else None
    if isinstance(exp, PolicyMoveExplanation) and (lead := exp.lead(row.rule_id)) is not None:
        news = [ChartEvent(n.event_time, n.title) for n in lead.news if n.event_time is not None]
        if news:
            return tuple(news)
    if isinstance(exp, DisclosureMoveExplanation) and (counted := exp.lead(row.rule_id)):
        filings = [
            ChartEvent(f.event_time, f.report_nm or f.corp_name)
            for f in counted.filings
            if f.event_time is not None
        ]
        if filings:
            return tuple(filings)
    if linked:
        return tuple(ChartEvent(at, title) for at, title in linked)
    return (ChartEvent(row.event_time, row.headline),)


def _move_of(row: SignalRow) -> tuple[float, float | None] | None:
    """The change % and points beyond the index the signal's rule measured."""
    exp = parse(row.kind, row.explanation) if row.explanation else None
    if isinstance(exp, PolicyMoveExplanation | DisclosureMoveExplanation):
        quote = exp.move
        lead = exp.lead(row.rule_id)
        matched = lead.matched if lead else MatchedMove()
    elif isinstance(exp, MoveExplanation):
        quote, matched = exp.quote, exp.matched
    else:
        return None
    if quote is None or quote.change_pct is None:
        return None
    change = matched.change
    beyond = change.excess_pct if change is not None and change.relative_to else None
    return quote.change_pct, beyond


async def signal_chart(
    session: AsyncSession,
    signal_id: int,
    *,
    names: Mapping[str, str] | None = None,
    size: ChartSize = ALERT_SIZE,
) -> Chart | None:
    """The chart of signal ``signal_id`` over its session; None when there is no such
    signal or its kind has no chart (:data:`CHART_KINDS`)."""
    found = await get_signal(session, signal_id)
    if found is None:
        return None
    row, items = found
    if row.kind not in CHART_KINDS:
        return None
    ticker = row.subject
    day = _session_of(row.event_time)
    events = _events_of(row, [(item.published_at, item.title) for item in items])
    name = (names or {}).get(ticker, ticker)
    since = day.opens_at
    earliest = min((e.at for e in events), default=since)
    if earliest < since:
        # The news came sessions before the move: daily closes from a few sessions
        # before it (at most EVENT_LOOKBACK back), so both are on the chart.
        first = max(
            _kst_day(earliest),
            market.trading_days_before(day.day, EVENT_LOOKBACK)[0],
        )
        lead = market.trading_days_before(first, LEAD_SESSIONS)[0]
        since = datetime.combine(lead, time(9, 0), KST)
    return await ticker_chart(
        session,
        ticker,
        since=since,
        until=max(day.closes_at, row.event_time),
        names=names,
        events=events,
        title=f"{name} ({ticker}) · {day.day:%Y-%m-%d} · {row.rule_id}",
        size=size,
        move=_move_of(row),
    )
