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
            if route.match.matches(s.kind, s.severity, s.rule_id, signal_tickers(s))
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


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _display(ticker: str, names: Mapping[str, str]) -> tuple[str, str | None]:
    name = names.get(ticker)
    return (f"{name} {ticker}" if name and name != ticker else ticker), name


def _move_title(label: str, pct: float | None, change: dict[str, Any]) -> str:
    if pct is None:
        return label
    title = f"{label} {pct:+.2f}%"
    index, index_pct = _str(change.get("relative_to")), _float(change.get("index_change_pct"))
    if index is not None and index_pct is not None:
        title += f" ({index} {index_pct:+.2f}%)"
    return title


def _move_why(matched: dict[str, Any]) -> str:
    parts = []
    change = _dict(matched.get("change"))
    if (threshold := _float(change.get("threshold_pct"))) is not None:
        against = _str(change.get("relative_to"))
        parts.append(
            f"moved {change.get('direction') or 'either'} at least {threshold:g}%"
            + (f" more than the {against}" if against else "")
        )
    extreme = _dict(matched.get("new_extreme"))
    if extreme:
        parts.append(f"new {extreme.get('weeks', 52)}-week {extreme.get('side', 'high')}")
    volume = _dict(matched.get("volume"))
    shares, average = _float(volume.get("volume")), _float(volume.get("avg_volume"))
    if shares is not None and average:
        parts.append(f"volume {shares / average:.1f}× the {volume.get('days', 20)}-day average")
    return "; ".join(parts)


def _move_line(quote: dict[str, Any], ticker: str, name: str | None) -> MoveLine:
    return MoveLine(
        ticker=ticker,
        name=name,
        price=_float(quote.get("price")),
        change_pct=_float(quote.get("change_pct")),
    )


def alert_signal(row: SignalRow, names: Mapping[str, str] | None = None) -> AlertSignal:
    """A stored signal as a channel shows it, from its explanation (see
    :mod:`monitor.rules.evaluate`); a missing or odd key costs detail, never an error.

    ``names`` maps tickers to display names (``{"035420": "NAVER"}``, from the quote
    settings); without one the ticker stands alone.
    """
    names = names or {}
    explanation = _dict(row.explanation)
    common: dict[str, Any] = {
        "id": row.id,
        "kind": row.kind,
        "rule_id": row.rule_id,
        "severity": row.severity,
        "subject": row.subject,
        "event_time": row.event_time,
    }
    if row.kind == "news":
        terms: dict[str, None] = {}
        for hits in _dict(explanation.get("themes")).values():
            for hit in _list(hits):
                if surface := _str(_dict(hit).get("surface")):
                    terms[surface] = None
        return AlertSignal(
            **common,
            title=_str(explanation.get("title")) or row.headline,
            url=_str(explanation.get("url")),
            source=_str(explanation.get("source")),
            terms=tuple(terms),
            why=_str(explanation.get("why")) or "",
            story=_str(explanation.get("cluster")),
        )
    if row.kind in ("move", "policy_move"):
        policy = row.kind == "policy_move"
        quote = _dict(explanation.get("move" if policy else "quote"))
        ticker = _str(quote.get("ticker")) or row.subject
        label, name = _display(ticker, names)
        pct = _float(quote.get("change_pct"))
        if policy:
            rules = [_dict(r) for r in _list(explanation.get("rules"))]
            lead = next((r for r in rules if r.get("rule_id") == row.rule_id), None)
            lead = lead or (rules[0] if rules else {})
            matched = _dict(lead.get("matched"))
            news = [_dict(n) for n in _list(lead.get("news"))]
            first = news[0] if news else {}
            title = _move_title(label, pct, _dict(matched.get("change"))) + " after policy news"
            headline = _str(first.get("title"))
            why = f"after: {headline}" if headline else _move_why(matched)
            if headline and len(news) > 1:
                why += f" (and {len(news) - 1} more)"
            return AlertSignal(
                **common,
                title=title if quote else row.headline,
                url=_str(first.get("url")),
                source=_str(first.get("source")),
                move=_move_line(quote, ticker, name),
                why=why,
                story=_str(first.get("cluster")),
            )
        matched = _dict(explanation.get("matched"))
        return AlertSignal(
            **common,
            title=_move_title(label, pct, _dict(matched.get("change"))) if quote else row.headline,
            source=_str(quote.get("source")),
            move=_move_line(quote, ticker, name),
            why=_move_why(matched),
        )
    if row.kind in ("source_stale", "source_auth"):
        source = _str(explanation.get("source")) or row.subject
        missed = explanation.get("missed_intervals")
        fallback = f"{source} has not answered for {missed} polling intervals"
        return AlertSignal(
            **common,
            title=row.headline or fallback,
            source=source,
            why=_str(explanation.get("last_error")) or "",
        )
    return AlertSignal(**common, title=row.headline)
