"""The outbox: delivery rows written with the signals, and what a channel shows.

:func:`enqueue` runs inside the transaction that stores new signals, so a signal and
its deliveries commit together or not at all: a crash can lose neither, and a
channel that is down never rolls back ingestion. What a route decides is decided
here, once, from the clock at commit time, and stored as data: ``due_at`` (the group
wait, the end of quiet hours, the digest time), ``held`` (why it waits) and the
status ``suppressed`` for repeats. The dispatcher then only sends what is due.

Order of decisions for one signal on one route:
1. the route's match (kind, severity, rule, tickers);
2. repeat suppression: the same rule and subject delivered by this route within
   ``suppress_repeats`` → ``suppressed`` (kept, for ``kmon alerts list``);
3. quiet hours (Korean time; critical signals bypass) → due when they end, ``quiet``;
4. otherwise the group wait: due with the route's open group on that channel, if one
   is waiting, else ``group_wait`` from now.
Then the daily digest, if it selects the signal, adds a row due at its next time.
A signal reaches a channel once: when two routes name the same channel the first
route in the settings wins (a sent row beats a suppressed one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from monitor.alerting import DIGEST_ROUTE, AlertSettings, Route, next_at
from monitor.alerts import PENDING, SUPPRESSED
from monitor.alerts.message import AlertSignal, MoveLine
from monitor.db.dialect import insert_new_rows
from monitor.db.schema import Base, Delivery, SignalRow
from monitor.rules.explanation import (
    ChangeMatch,
    DisclosureExplanation,
    DisclosureMoveExplanation,
    MatchedMove,
    MoveExplanation,
    NewsExplanation,
    PolicyMoveExplanation,
    QuoteFacts,
    SourceAuthExplanation,
    SourceStaleExplanation,
    parse,
)

# Why a pending row waits; quiet and digest rows go out as a digest message.
HELD_QUIET = "quiet"
HELD_DIGEST = "digest"
HELD_THROTTLE = "throttle"
DIGEST_HELD = frozenset({HELD_QUIET, HELD_DIGEST})

CRITICAL = "critical"
_DELIVERIES = Base.metadata.tables["deliveries"]
_KEYS = ("signal_id", "channel")


def signal_tickers(row: SignalRow) -> list[str]:
    """The tickers of a stored signal (the column is `` 035420 035720 ``)."""
    return row.tickers.split()


def signal_score(row: SignalRow) -> float | None:
    """The relevance score of a stored signal: None for kinds that are not scored (moves,
    source health); a news signal stored before scores counts as 0, so that a route with
    ``min_score`` does not take what it cannot judge."""
    score = row.explanation.get("score") if isinstance(row.explanation, dict) else None
    if isinstance(score, int | float) and not isinstance(score, bool):
        return score
    return 0.0 if row.kind == "news" else None


async def enqueue(
    session: AsyncSession,
    signals: Sequence[SignalRow],
    settings: AlertSettings,
    *,
    now: datetime,
) -> int:
    """Write the deliveries of newly stored ``signals``; return how many will be sent.

    Call it in the transaction that inserted the signals (they need their ids: flush
    first), with only the rows that are new, and call ``Dispatcher.wake()`` after the
    commit when the count is not zero. Suppressed rows are written but not counted.
    An existing (signal, channel) row is left alone (ON CONFLICT DO NOTHING), so a
    repeated call cannot send twice.
    """
    if not signals or not settings.enabled:
        return 0
    planned: dict[tuple[int, str], dict[str, Any]] = {}

    def put(row: dict[str, Any]) -> None:
        key = (row["signal_id"], row["channel"])
        old = planned.get(key)
        if old is None or (old["status"] == SUPPRESSED and row["status"] != SUPPRESSED):
            planned[key] = row

    def row(signal: SignalRow, route: str, channel: str, **fields: Any) -> dict[str, Any]:
        if signal.id is None:
            raise ValueError("enqueue() needs stored signals: flush the session first")
        return {
            "signal_id": signal.id,
            "route": route,
            "channel": channel,
            "status": fields.get("status", PENDING),
            "held": fields.get("held"),
            "due_at": fields["due_at"],
            "attempts": 0,
            "created_at": now,
        }

    for route in settings.routes:
        chosen = [
            s
            for s in signals
            if route.match.matches(
                s.kind, s.severity, s.rule_id, signal_tickers(s), signal_score(s)
            )
        ]
        if not chosen:
            continue
        repeats = await _recent_repeats(session, route, now)
        quiet_end = route.quiet_hours.end_after(now) if route.quiet_hours else None
        group_due = {c: await _group_due(session, route, c, now) for c in route.channels}
        for signal in chosen:
            subject = (signal.rule_id, signal.subject)
            if repeats is not None and subject in repeats:
                fields: dict[str, Any] = {"status": SUPPRESSED, "due_at": now}
            elif quiet_end is not None and signal.severity != CRITICAL:
                fields = {"held": HELD_QUIET, "due_at": quiet_end}
            else:
                fields = {}
            if repeats is not None:
                repeats.add(subject)
            for channel in route.channels:
                put(row(signal, route.name, channel, **{"due_at": group_due[channel], **fields}))

    digest = settings.digest
    if digest is not None:
        due = next_at(digest.at, now)
        for signal in signals:
            if digest.matches(signal.kind, signal.severity):
                put(row(signal, DIGEST_ROUTE, digest.channel, held=HELD_DIGEST, due_at=due))

    new = await insert_new_rows(
        session, _DELIVERIES, list(planned.values()), keys=_KEYS, returning=("id", "status")
    )
    return sum(1 for _, status in new if status != SUPPRESSED)


async def _recent_repeats(
    session: AsyncSession, route: Route, now: datetime
) -> set[tuple[str, str]] | None:
    """(rule, subject) pairs this route delivered (or tried to) within its window."""
    if route.suppress_repeats is None:
        return None
    since = now - timedelta(seconds=route.suppress_repeats)
    result = await session.execute(
        select(SignalRow.rule_id, SignalRow.subject)
        .join(Delivery, Delivery.signal_id == SignalRow.id)
        .where(
            Delivery.route == route.name,
            Delivery.status != SUPPRESSED,
            Delivery.created_at > since,
        )
        .distinct()
    )
    return {(rule_id, subject) for rule_id, subject in result.all()}


async def _group_due(session: AsyncSession, route: Route, channel: str, now: datetime) -> datetime:
    """When a new signal on (route, channel) goes out: with the group already waiting
    there, else ``group_wait`` from now. Joining the open group is what makes a burst
    one message: each signal's own wait would end at a different time."""
    if route.group_wait <= 0:
        return now
    latest = now + timedelta(seconds=route.group_wait)
    waiting = await session.scalar(
        select(func.min(Delivery.due_at)).where(
            Delivery.route == route.name,
            Delivery.channel == channel,
            Delivery.status == PENDING,
            Delivery.held.is_(None),
            Delivery.attempts == 0,
            Delivery.claimed_until.is_(None),
            Delivery.due_at > now,
        )
    )
    return min(waiting, latest) if waiting is not None else latest


# --- what a channel shows ------------------------------------------------------------


def _str(value: str | None) -> str | None:
    return value if value and value.strip() else None


def _display(ticker: str, names: Mapping[str, str]) -> tuple[str, str | None]:
    name = names.get(ticker)
    return (f"{name} {ticker}" if name and name != ticker else ticker), name


def _move_title(label: str, pct: float | None, change: ChangeMatch | None) -> str:
    if pct is None:
        return label
    title = f"{label} {pct:+.2f}%"
    if change is not None:
        index, index_pct = _str(change.relative_to), change.index_change_pct
        if index is not None and index_pct is not None:
            title += f" ({index} {index_pct:+.2f}%)"
    return title


def _move_why(matched: MatchedMove) -> str:
    parts = []
    change = matched.change
    if change is not None and change.threshold_pct is not None:
        against = _str(change.relative_to)
        parts.append(
            f"moved {change.direction or 'either'} at least {change.threshold_pct:g}%"
            + (f" more than the {against}" if against else "")
        )
    if (extreme := matched.new_extreme) is not None:
        parts.append(f"new {extreme.weeks}-week {extreme.side}")
    volume = matched.volume
    if volume is not None and volume.volume is not None and volume.avg_volume:
        parts.append(
            f"volume {volume.volume / volume.avg_volume:.1f}× the {volume.days}-day average"
        )
    return "; ".join(parts)


def _move_line(quote: QuoteFacts | None, ticker: str, name: str | None) -> MoveLine:
    def _float(value: float | None) -> float | None:
        return float(value) if value is not None else None

    return MoveLine(
        ticker=ticker,
        name=name,
        price=_float(quote.price) if quote else None,
        change_pct=_float(quote.change_pct) if quote else None,
    )


def alert_signal(row: SignalRow, names: Mapping[str, str] | None = None) -> AlertSignal:
    """A stored signal as a channel shows it, from its explanation (read with
    :func:`monitor.rules.explanation.parse`); a missing or odd key costs detail, never
    an error.

    ``names`` maps tickers to display names (``{"035420": "NAVER"}``, from the quote
    settings); without one the ticker stands alone.
    """
    names = names or {}
    common: dict[str, Any] = {
        "id": row.id,
        "kind": row.kind,
        "rule_id": row.rule_id,
        "severity": row.severity,
        "subject": row.subject,
        "event_time": row.event_time,
    }
    exp = parse(row.kind, row.explanation)
    match exp:
        case NewsExplanation():
            return AlertSignal(
                **common,
                title=_str(exp.title) or row.headline,
                url=_str(exp.url),
                source=_str(exp.source),
                terms=tuple(exp.terms()),
                why=_str(exp.why) or "",
                story=_str(exp.cluster),
            )
        case PolicyMoveExplanation():
            quote = exp.move
            ticker = (_str(quote.ticker) if quote else None) or row.subject
            label, name = _display(ticker, names)
            pct = quote.change_pct if quote else None
            lead = exp.lead(row.rule_id)
            matched = lead.matched if lead else MatchedMove()
            first = lead.news[0] if lead and lead.news else None
            title = _move_title(label, pct, matched.change) + " after policy news"
            headline = _str(first.title) if first else None
            why = f"after: {headline}" if headline else _move_why(matched)
            if headline and lead and len(lead.news) > 1:
                why += f" (and {len(lead.news) - 1} more)"
            return AlertSignal(
                **common,
                title=title if quote else row.headline,
                move=_move_line(quote, ticker, name),
                why=why,
                story=_str(first.cluster) if first else None,
            )
        case MoveExplanation():
            quote = exp.quote
            ticker = (_str(quote.ticker) if quote else None) or row.subject
            label, name = _display(ticker, names)
            pct = quote.change_pct if quote else None
            return AlertSignal(
                **common,
                title=_move_title(label, pct, exp.matched.change) if quote else row.headline,
                source=_str(quote.source) if quote else None,
                move=_move_line(quote, ticker, name),
                why=_move_why(exp.matched),
            )
        case DisclosureExplanation():
            label, _ = _display(exp.stock_code or row.subject, names)
            return AlertSignal(
                **common,
                title=f"{label}: {exp.report_nm}" if exp.report_nm else row.headline,
                url=_str(exp.url),
                source="OpenDART",
                why=exp.rules[0].why if exp.rules else "",
            )
        case DisclosureMoveExplanation():
            quote = exp.move
            ticker = (_str(quote.ticker) if quote else None) or row.subject
            label, name = _display(ticker, names)
            pct = quote.change_pct if quote else None
            lead_move = exp.lead(row.rule_id)
            matched = lead_move.matched if lead_move else MatchedMove()
            filing = lead_move.filings[0] if lead_move and lead_move.filings else None
            title = _move_title(label, pct, matched.change) + " after a filing"
            return AlertSignal(
                **common,
                title=title if quote else row.headline,
                url=_str(filing.url) if filing else None,
                move=_move_line(quote, ticker, name),
                why=f"after: {filing.report_nm} ({filing.rcept_no})"
                if filing
                else _move_why(matched),
            )
        case SourceStaleExplanation() | SourceAuthExplanation():
            source = _str(exp.source) or row.subject
            missed = exp.missed_intervals if isinstance(exp, SourceStaleExplanation) else None
            fallback = f"{source} has not answered for {missed} polling intervals"
            return AlertSignal(
                **common,
                title=row.headline or fallback,
                source=source,
                why=_str(exp.last_error) or "",
            )
    return AlertSignal(**common, title=row.headline)
