"""Repository functions for signals (take a session, never commit).

A signal is stored once: ``dedup_key`` is unique and the insert is
``ON CONFLICT DO NOTHING``, so a re-poll, a restart or two processes evaluating the
same facts cannot store one conclusion twice. The items behind a news signal are
linked in ``signal_items``: the copy that raised it, and later copies of the story.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from monitor.db.dialect import BATCH, insert_for, insert_new_rows
from monitor.db.schema import Base, Item, SignalItem, SignalRow, Source
from monitor.rules.evaluate import DisclosureFacts, NewsFacts, Signal
from monitor.rules.explanation import (
    DisclosureExplanation,
    DisclosureMoveExplanation,
    MoveExplanation,
    NewsExplanation,
    PolicyMoveExplanation,
    SourceAuthExplanation,
    SourceStaleExplanation,
    parse,
    to_json,
)
from monitor.stored import StoryCopy

_SIGNALS = Base.metadata.tables["signals"]
_LINKS = Base.metadata.tables["signal_items"]


def tickers_column(tickers: Iterable[str]) -> str:
    """`` a b `` — a space at each end so ``LIKE '% a %'`` finds any one of them."""
    joined = " ".join(sorted(set(tickers)))
    return f" {joined} " if joined else ""


def signal_tickers(signal: Signal) -> list[str]:
    """The tickers a signal concerns: a move's or a filing's ticker, a news item's
    resolved tickers."""
    if signal.kind in ("move", "policy_move", "disclosure", "disclosure_move"):
        return [signal.subject]
    exp = signal.explanation
    return list(exp.tickers) if isinstance(exp, NewsExplanation) else []


def headline(signal: Signal) -> str:
    """The one line a listing shows: the news title, or what moved and by how much."""
    exp = signal.explanation
    match exp:
        case NewsExplanation():
            return exp.title
        case MoveExplanation() | PolicyMoveExplanation():
            quote = exp.quote if isinstance(exp, MoveExplanation) else exp.move
            pct = quote.change_pct if quote else None
            change = f" {pct:+.2f}%" if pct is not None else ""
            price = quote.price if quote else None
            shown = f"{price:,.2f}".rstrip("0").rstrip(".") if isinstance(price, float) else price
            line = f"{signal.subject}{change} at {shown}"
            if isinstance(exp, PolicyMoveExplanation):
                titles = [n.title for r in exp.rules for n in r.news]
                if titles:
                    line += f" after: {titles[0]}"
            return line
        case DisclosureExplanation():
            return f"[{exp.corp_name}] {exp.report_nm}"
        case DisclosureMoveExplanation():
            quote = exp.move
            pct = quote.change_pct if quote else None
            change = f" {pct:+.2f}%" if pct is not None else ""
            filings = [f for r in exp.rules for f in r.filings]
            after = f" after: [{filings[0].corp_name}] {filings[0].report_nm}" if filings else ""
            return f"{signal.subject}{change}{after}"
        case SourceAuthExplanation():
            return f"source {exp.source} refuses our credentials: {exp.last_error}"
        case SourceStaleExplanation():
            since = exp.since.isoformat() if exp.since else None
            return f"source {exp.source} has had no successful poll since {since}"
    return signal.rule_id


def _row(signal: Signal, now: datetime) -> dict[str, Any]:
    return {
        "kind": signal.kind,
        "rule_id": signal.rule_id,
        "severity": signal.severity,
        "subject": signal.subject[:64],
        "tickers": tickers_column(signal_tickers(signal))[:255],
        "headline": headline(signal),
        "event_time": signal.event_time,
        "created_at": now,
        "dedup_key": signal.dedup_key,
        "explanation": to_json(signal.explanation),
    }


async def store_signals(
    session: AsyncSession, signals: Sequence[Signal], *, now: datetime
) -> list[SignalRow]:
    """Insert the signals whose dedup key is new; return the new rows only.

    Signals of one call with the same key are stored once (the first wins). The rows
    returned are built from what was inserted (not read back): they are not attached
    to the session.
    """
    first: dict[str, dict[str, Any]] = {}
    for signal in signals:
        if signal.dedup_key not in first:
            first[signal.dedup_key] = _row(signal, now)
    # In key order: two polls storing the same stories at once (syndicated copies in
    # two feeds) each wait on the other's uncommitted key, and on PostgreSQL taking
    # them in different orders deadlocks (seen on the feed farm). One order, no cycle.
    rows = [first[key] for key in sorted(first)]
    new = await insert_new_rows(
        session, _SIGNALS, rows, keys=("dedup_key",), returning=("id", "dedup_key")
    )
    return sorted(
        (SignalRow(id=row_id, **first[key]) for row_id, key in new), key=lambda row: row.id
    )


async def prefer_official(session: AsyncSession, signals: Sequence[Signal]) -> list[int]:
    """Make the official copy the headline of its story: for each news signal of a
    government source whose story is stored with a copy of another source, the stored
    row takes this copy's headline and explanation (same key, same story, same
    deliveries). Returns the ids of the rows changed."""
    official = {
        s.dedup_key: s
        for s in signals
        if isinstance(s.explanation, NewsExplanation) and s.explanation.source_type == "government"
    }
    if not official:
        return []
    rows = await session.scalars(select(SignalRow).where(SignalRow.dedup_key.in_(sorted(official))))
    changed = []
    for row in rows.all():
        stored = parse("news", row.explanation)
        if stored.source_type == "government":
            continue  # the first official copy stays the headline
        signal = official[row.dedup_key]
        row.headline = headline(signal)
        row.explanation = to_json(signal.explanation)
        changed.append(row.id)
    await session.flush()
    return changed


async def ids_by_key(session: AsyncSession, keys: Iterable[str]) -> dict[str, int]:
    """Signal ids of the given dedup keys (stored ones only)."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    result = await session.execute(
        select(SignalRow.dedup_key, SignalRow.id).where(SignalRow.dedup_key.in_(wanted))
    )
    return {key: sid for key, sid in result.all()}


async def link_items(
    session: AsyncSession, links: Iterable[tuple[int, int]], *, now: datetime
) -> None:
    """Attach items to signals: (signal id, item id) pairs, each stored once."""
    rows = [
        {"signal_id": sid, "item_id": iid, "attached_at": now} for sid, iid in sorted(set(links))
    ]
    if not rows:
        return
    insert = insert_for(session)
    stmt = insert(_LINKS).on_conflict_do_nothing(index_elements=["signal_id", "item_id"])
    for start in range(0, len(rows), BATCH):
        await session.execute(stmt, rows[start : start + BATCH])


def news_facts_of(row: SignalRow) -> NewsFacts:
    """A stored news signal as the facts a joined rule reads."""
    exp = parse("news", row.explanation)
    return NewsFacts(
        item_id=exp.item_id,
        title=exp.title or row.headline,
        event_time=row.event_time,
        cluster=exp.cluster,
        rule_ids=tuple(r.rule_id for r in exp.rules if r.rule_id) or (row.rule_id,),
        entities=frozenset(exp.entities),
        tickers=frozenset(exp.tickers),
        sectors=frozenset(exp.sectors),
        signals=(),
    )


async def recent_news(session: AsyncSession, *, since: datetime) -> list[NewsFacts]:
    """The facts of the news signals with an event time after ``since``, oldest first."""
    query = (
        select(SignalRow)
        .where(SignalRow.kind == "news", SignalRow.event_time > since)
        .order_by(SignalRow.event_time, SignalRow.id)
    )
    return [news_facts_of(row) for row in (await session.scalars(query)).all()]


async def recent_disclosures(session: AsyncSession, *, since: datetime) -> list[DisclosureFacts]:
    """The facts of the disclosure signals with an event time after ``since``, oldest
    first."""
    query = (
        select(SignalRow)
        .where(SignalRow.kind == "disclosure", SignalRow.event_time > since)
        .order_by(SignalRow.event_time, SignalRow.id)
    )
    facts = []
    for row in (await session.scalars(query)).all():
        exp = parse("disclosure", row.explanation)
        facts.append(
            DisclosureFacts(
                item_id=exp.item_id,
                rcept_no=exp.rcept_no,
                corp_name=exp.corp_name,
                stock_code=exp.stock_code or row.subject,
                report_nm=exp.report_nm,
                event_time=row.event_time,
                url=exp.url,
                rule_ids=tuple(r.rule_id for r in exp.rules) or (row.rule_id,),
            )
        )
    return facts


async def recent_story_copies(
    session: AsyncSession, *, since: datetime, limit: int | None = None
) -> list[StoryCopy]:
    """Every item linked to a news signal whose event time is after ``since``, oldest
    first, with its story cluster; with ``limit``, only the newest ``limit`` of them
    (what the story window holds at most)."""
    query = (
        select(Item.title, Item.published_at, SignalRow.explanation)
        .join(SignalItem, SignalItem.item_id == Item.id)
        .join(SignalRow, SignalRow.id == SignalItem.signal_id)
        .where(SignalRow.kind == "news", SignalRow.event_time > since)
    )
    if limit is None:
        rows = (await session.execute(query.order_by(Item.published_at, Item.id))).all()
    else:
        newest = query.order_by(Item.published_at.desc(), Item.id.desc()).limit(limit)
        rows = list(reversed((await session.execute(newest)).all()))
    copies = []
    for title, published, explanation in rows:
        cluster = parse("news", explanation).cluster
        if cluster:
            copies.append(StoryCopy(title, published, cluster))
    return copies


@dataclass(frozen=True, slots=True)
class SignalFilter:
    since: datetime | None = None
    until: datetime | None = None
    kind: str | None = None
    ticker: str | None = None
    rule: str | None = None
    severity: str | None = None
    limit: int = 50


def _signals_query(flt: SignalFilter) -> Select[SignalRow]:
    query = select(SignalRow)
    if flt.since:
        query = query.where(SignalRow.event_time >= flt.since)
    if flt.until:
        query = query.where(SignalRow.event_time < flt.until)
    if flt.kind:
        query = query.where(SignalRow.kind == flt.kind)
    if flt.rule:
        query = query.where(SignalRow.rule_id == flt.rule)
    if flt.severity:
        query = query.where(SignalRow.severity == flt.severity)
    if flt.ticker:
        # Tickers are digits or letters (checked by the CLI), so no LIKE escaping.
        query = query.where(SignalRow.tickers.like(f"% {flt.ticker} %"))
    return query.order_by(SignalRow.event_time.desc(), SignalRow.id.desc()).limit(flt.limit)


async def list_signals(session: AsyncSession, flt: SignalFilter) -> list[SignalRow]:
    """Signals newest first (by event time)."""
    return list((await session.scalars(_signals_query(flt))).all())


@dataclass(frozen=True)
class LinkedItem:
    id: int
    source: str
    title: str
    url: str | None
    published_at: datetime
    attached_at: datetime


async def get_signal(
    session: AsyncSession, signal_id: int
) -> tuple[SignalRow, list[LinkedItem]] | None:
    """One signal and the items linked to it, in the order they were attached."""
    row = await session.get(SignalRow, signal_id)
    if row is None:
        return None
    result = await session.execute(
        select(Item, Source.name, SignalItem.attached_at)
        .join(SignalItem, SignalItem.item_id == Item.id)
        .join(Source, Source.id == Item.source_id)
        .where(SignalItem.signal_id == signal_id)
        .order_by(SignalItem.attached_at, Item.id)
    )
    items = [
        LinkedItem(item.id, name, item.title, item.url, item.published_at, attached)
        for item, name, attached in result.all()
    ]
    return row, items


async def counts_by_rule(session: AsyncSession) -> list[tuple[str, str, int]]:
    """(kind, rule id, signals stored) for every kind and rule that has any."""
    result = await session.execute(
        select(SignalRow.kind, SignalRow.rule_id, func.count())
        .group_by(SignalRow.kind, SignalRow.rule_id)
        .order_by(SignalRow.kind, SignalRow.rule_id)
    )
    return [(kind, rule, count) for kind, rule, count in result.all()]
