"""OpenDART filings: stored as items of their source, with their structured fields.

A filing is an ``items`` row (external id ``g:<rcept_no>``, so the unique key of the
items table keeps it once however often it is listed) and a ``disclosures`` row with
what DART says about it. The source row keeps the cursors (the newest receipt per
company) and the day's spent budget; ``dart_corps`` the corp code of each stock code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.dart import Corp, Disclosure
from adapters.records import KST, RawItem
from monitor.db import repo
from monitor.db.dialect import insert_new_rows
from monitor.db.repo import SourceState
from monitor.db.schema import Base, DartCorp, DisclosureRow, Item, Source
from monitor.stored import StoredFiling


@dataclass(frozen=True, slots=True)
class DartState:
    """A dart source's cursors and the requests spent on ``budget_day`` (KST)."""

    cursors: dict[str, str] = field(default_factory=dict)
    budget_day: date | None = None
    budget_used: int = 0

    def used_on(self, day: date) -> int:
        """Requests spent on ``day``: none when the stored day is another one."""
        return self.budget_used if self.budget_day == day else 0


async def load_state(session: AsyncSession, source_id: int) -> DartState:
    row = (
        await session.execute(
            select(Source.cursor, Source.budget_day, Source.budget_used).where(
                Source.id == source_id
            )
        )
    ).one()
    cursors = json.loads(row.cursor) if row.cursor else {}
    return DartState(dict(cursors), row.budget_day, row.budget_used or 0)


async def save_state(session: AsyncSession, source_id: int, state: DartState) -> None:
    await session.execute(
        update(Source)
        .where(Source.id == source_id)
        .values(
            cursor=json.dumps(state.cursors, sort_keys=True),
            budget_day=state.budget_day,
            budget_used=state.budget_used,
        )
    )


async def known_corps(session: AsyncSession, stock_codes: Sequence[str]) -> dict[str, Corp]:
    rows = await session.scalars(select(DartCorp).where(DartCorp.stock_code.in_(stock_codes)))
    return {r.stock_code: Corp(r.corp_code, r.corp_name, r.stock_code) for r in rows}


async def store_corps(session: AsyncSession, corps: Sequence[Corp], *, now: datetime) -> None:
    await insert_new_rows(
        session,
        _CORPS,
        [
            {
                "stock_code": c.stock_code,
                "corp_code": c.corp_code,
                "corp_name": c.corp_name,
                "fetched_at": now,
            }
            for c in corps
        ],
        keys=("stock_code",),
        returning=("stock_code",),
    )


_CORPS = Base.metadata.tables["dart_corps"]


def published_at(filing: Disclosure, fetched_at: datetime) -> tuple[datetime, bool]:
    """The event time of a filing, and whether it is estimated.

    DART gives the receipt date only: a filing of today (KST) is placed at the fetch
    that found it (a poll every few minutes is that close); an older one at the start
    of its day, marked estimated.
    """
    if fetched_at.astimezone(KST).date() == filing.rcept_dt:
        return fetched_at, False
    start = datetime.combine(filing.rcept_dt, time(0), KST)
    return min(start, fetched_at), True


def title_of(filing: Disclosure) -> str:
    return f"[{filing.corp_name}] {filing.report_nm}"


async def insert_disclosures(
    session: AsyncSession,
    source: SourceState,
    filings: Sequence[Disclosure],
    *,
    fetched_at: datetime,
) -> list[StoredFiling]:
    """Store the filings not stored yet, as items of ``source``; the new ones only."""
    raw: list[RawItem] = []
    by_no: dict[str, Disclosure] = {}
    # Oldest first, so that item ids follow the receipts as they do for a feed.
    for filing in sorted(filings, key=lambda f: (f.rcept_dt, f.rcept_no)):
        if filing.rcept_no in by_no:
            continue
        by_no[filing.rcept_no] = filing
        when, estimated = published_at(filing, fetched_at)
        raw.append(
            RawItem(
                title=title_of(filing),
                url=filing.url,
                guid=filing.rcept_no,
                summary=f"{filing.report_nm} · 제출인 {filing.flr_nm}",
                published_at=when,
                date_estimated=estimated,
                author=filing.flr_nm or None,
                language="ko",
            )
        )
    items = await repo.insert_items(session, source, raw, fetched_at=fetched_at)
    rows = []
    stored = []
    for item in items:
        filing = by_no[item.external_id.removeprefix("g:")]
        stored.append(
            StoredFiling(
                item_id=item.id,
                source=source.name,
                rcept_no=filing.rcept_no,
                corp_name=filing.corp_name,
                stock_code=filing.stock_code,
                report_nm=filing.report_nm,
                flr_nm=filing.flr_nm,
                rcept_dt=filing.rcept_dt,
                flags=filing.flags,
                correction=filing.correction,
                url=item.url,
                published_at=item.published_at,
            )
        )
        rows.append(
            {
                "item_id": item.id,
                "rcept_no": filing.rcept_no,
                "corp_code": filing.corp_code,
                "corp_name": filing.corp_name,
                "stock_code": filing.stock_code,
                "corp_cls": filing.corp_cls[:1],
                "report_nm": filing.report_nm,
                "flr_nm": filing.flr_nm,
                "rcept_dt": filing.rcept_dt,
                "flags": filing.flags[:16],
                "correction": filing.correction,
            }
        )
    if rows:
        await session.execute(insert(DisclosureRow), rows)
    return stored


async def list_disclosures(
    session: AsyncSession,
    *,
    ticker: str | None = None,
    since: datetime | None = None,
    report: str | None = None,
    limit: int = 50,
) -> list[StoredFiling]:
    """Filings newest first; ``report`` is text in the report name, ``since`` a moment
    compared with the receipt date in KST."""
    query = (
        select(DisclosureRow, Item.url, Item.published_at, Source.name)
        .join(Item, Item.id == DisclosureRow.item_id)
        .join(Source, Source.id == Item.source_id)
    )
    if ticker:
        query = query.where(DisclosureRow.stock_code == ticker)
    if since:
        query = query.where(DisclosureRow.rcept_dt >= since.astimezone(KST).date())
    if report:
        needle = report.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(DisclosureRow.report_nm.like(f"%{needle}%", escape="\\"))
    query = query.order_by(DisclosureRow.rcept_dt.desc(), DisclosureRow.rcept_no.desc())
    query = query.limit(limit)
    return [
        StoredFiling(
            item_id=row.item_id,
            source=name,
            rcept_no=row.rcept_no,
            corp_name=row.corp_name,
            stock_code=row.stock_code,
            report_nm=row.report_nm,
            flr_nm=row.flr_nm,
            rcept_dt=row.rcept_dt,
            flags=row.flags,
            correction=row.correction,
            url=url,
            published_at=published,
        )
        for row, url, published, name in (await session.execute(query)).all()
    ]


async def budget_used_today(session: AsyncSession, *, now: datetime) -> Mapping[str, int]:
    """Requests spent today (KST) by each dart source, by name."""
    today = now.astimezone(KST).date()
    rows = await session.execute(
        select(Source.name, Source.budget_day, Source.budget_used).where(Source.kind == "dart")
    )
    return {name: (used if day == today else 0) for name, day, used in rows.all()}


def next_kst_day(now: datetime) -> datetime:
    """The next midnight in Seoul after ``now``."""
    local = now.astimezone(KST)
    return datetime.combine(local.date() + timedelta(days=1), time(0), KST)
