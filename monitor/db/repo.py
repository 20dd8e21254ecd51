"""Repository functions: each takes a session and never commits.

The caller owns the transaction (``async with sessionmaker.begin() as session``), so a
poll's items and its source state land together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.records import RawItem, Validators
from monitor.config import DART_KIND, FEED_KIND, SourceConfig
from monitor.db.dialect import insert_new_rows
from monitor.db.onetrip import one_trip
from monitor.db.schema import Base, DisclosureRow, Item, Source
from monitor.identity import external_id, nfc
from monitor.stored import StoredItem


@dataclass(frozen=True, slots=True)
class SourceState:
    """A snapshot of one source row, passed by value into a poll."""

    id: int
    name: str
    kind: str
    url: str
    interval: float
    status: str
    validators: Validators
    error_count: int
    next_check_at: datetime | None
    last_success_at: datetime | None
    source_type: str = "news"


def source_state(row: Source) -> SourceState:
    return SourceState(
        id=row.id,
        name=row.name,
        kind=row.kind,
        url=row.url,
        interval=row.interval_seconds,
        status=row.status,
        validators=Validators(etag=row.etag, last_modified=row.last_modified),
        error_count=row.error_count,
        next_check_at=row.next_check_at,
        last_success_at=row.last_success_at,
        source_type=row.source_type,
    )


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """What the configuration says about one row of the sources table."""

    name: str
    url: str
    interval: float
    enabled: bool = True
    source_type: str = "news"


async def sync_kind(
    session: AsyncSession, kind: str, wanted: Sequence[SourceSpec], *, now: datetime
) -> None:
    """Make the ``kind`` rows of the sources table match ``wanted``.

    New sources are due at once. A source whose URL changed starts afresh (validators
    and error state cleared). Sources no longer wanted are disabled, not deleted, so
    their history stays. Rows of other kinds are left alone.
    """
    query = select(Source).where(Source.kind == kind)
    rows = {row.name: row for row in (await session.scalars(query)).all()}
    for spec in wanted:
        row = rows.pop(spec.name, None)
        fresh = row is None
        if row is None:
            row = Source(name=spec.name, kind=kind, url=spec.url, created_at=now)
            session.add(row)
        if fresh or row.url != spec.url:
            row.url = spec.url
            row.etag = row.last_modified = row.last_error = None
            row.error_count, row.status, row.next_check_at = 0, "new", now
        row.interval_seconds = spec.interval
        row.enabled = spec.enabled
        row.source_type = spec.source_type
    for row in rows.values():
        row.enabled = False
    await session.flush()


async def sync_sources(
    session: AsyncSession, configured: Sequence[SourceConfig], *, now: datetime
) -> None:
    """Make the news and disclosure sources in the table match the config (see
    :func:`sync_kind`)."""
    for kind in (FEED_KIND, DART_KIND):
        specs = [
            SourceSpec(c.name, c.url, c.interval, c.enabled, c.source_type)
            for c in configured
            if c.kind == kind
        ]
        await sync_kind(session, kind, specs, now=now)


async def load_sources(
    session: AsyncSession,
    *,
    names: Sequence[str] | None = None,
    due_at: datetime | None = None,
    kind: str | Sequence[str] | None = None,
) -> list[SourceState]:
    """Enabled sources, optionally only ``names``, of ``kind`` (or kinds), or due at
    ``due_at``."""
    query = select(Source).where(Source.enabled.is_(True)).order_by(Source.name)
    if isinstance(kind, str):
        query = query.where(Source.kind == kind)
    elif kind is not None:
        query = query.where(Source.kind.in_(list(kind)))
    if names is not None:
        query = query.where(Source.name.in_(list(names)))
    if due_at is not None:
        query = query.where(or_(Source.next_check_at.is_(None), Source.next_check_at <= due_at))
    return [source_state(row) for row in (await session.scalars(query)).all()]


_ITEMS = Base.metadata.tables["items"]
_SOURCES = Base.metadata.tables["sources"]


async def insert_items(
    session: AsyncSession,
    source: SourceState,
    items: Sequence[RawItem],
    *,
    fetched_at: datetime,
) -> list[StoredItem]:
    """Insert the entries of ``source`` not stored yet; return the new rows only.

    Identity is per source (see :func:`monitor.identity.external_id`); the database's
    unique key decides, so restarts, races and replicas cannot duplicate an item.
    """
    rows: dict[str, dict[str, Any]] = {}
    for item in items:
        title, summary = nfc(item.title), nfc(item.summary)
        key = external_id(guid=item.guid, url=item.url, title=title, summary=summary)
        if key in rows:
            continue
        rows[key] = {
            "source_id": source.id,
            "external_id": key,
            "url": item.url,
            "title": title,
            "summary": summary,
            "author": nfc(item.author) if item.author else None,
            "language": item.language,
            "published_at": item.published_at,
            "date_estimated": item.date_estimated,
            "fetched_at": fetched_at,
        }
    new = await insert_new_rows(
        session,
        _ITEMS,
        list(rows.values()),
        keys=("source_id", "external_id"),
        returning=("id", "external_id"),
    )
    return [_stored(item_id, source.name, rows[key]) for item_id, key in new]


def stored_item(row: Item, source: str) -> StoredItem:
    """A stored item row (and its source's name) as the value the stages hand on."""
    return StoredItem(
        id=row.id,
        source=source,
        external_id=row.external_id,
        url=row.url,
        title=row.title,
        summary=row.summary,
        author=row.author,
        language=row.language,
        published_at=row.published_at,
        date_estimated=row.date_estimated,
        fetched_at=row.fetched_at,
    )


def _stored(item_id: int, source: str, values: dict[str, Any]) -> StoredItem:
    return StoredItem(
        id=item_id,
        source=source,
        external_id=values["external_id"],
        url=values["url"],
        title=values["title"],
        summary=values["summary"],
        author=values["author"],
        language=values["language"],
        published_at=values["published_at"],
        date_estimated=values["date_estimated"],
        fetched_at=values["fetched_at"],
    )


# The state updates are built once: a poll runs them with its values as parameters,
# so no statement is constructed, coerced and cache-keyed again for every poll.
def _bind(name: str, column: str) -> Any:
    return bindparam(name, type_=_SOURCES.c[column].type)


_RECORD_SUCCESS = (
    update(_SOURCES)
    .where(_SOURCES.c.id == _bind("p_id", "id"))
    .values(
        status="ok",
        etag=_bind("p_etag", "etag"),
        last_modified=_bind("p_last_modified", "last_modified"),
        error_count=0,
        last_success_at=_bind("p_now", "last_success_at"),
        last_polled_at=_bind("p_now", "last_polled_at"),
        next_check_at=_bind("p_next", "next_check_at"),
        # The poll is over: its lease (monitor/db/leases.py) goes with it.
        lease_owner=None,
        lease_until=None,
    )
)
_RECORD_FAILURE = (
    update(_SOURCES)
    .where(_SOURCES.c.id == _bind("p_id", "id"))
    .values(
        status=_bind("p_status", "status"),
        error_count=_SOURCES.c.error_count + 1,
        last_error=_bind("p_error", "last_error"),
        last_error_at=_bind("p_now", "last_error_at"),
        last_polled_at=_bind("p_now", "last_polled_at"),
        next_check_at=_bind("p_next", "next_check_at"),
        # The poll is over: its lease (monitor/db/leases.py) goes with it.
        lease_owner=None,
        lease_until=None,
    )
)


async def record_success(
    session: AsyncSession,
    source_id: int,
    *,
    now: datetime,
    validators: Validators,
    next_check_at: datetime,
) -> None:
    """Record a poll that succeeded; in a poll's transaction on SQLite, the UPDATE runs
    with the commit (monitor/db/onetrip.py)."""
    values = {
        "p_id": source_id,
        "p_etag": validators.etag,
        "p_last_modified": validators.last_modified,
        "p_now": now,
        "p_next": next_check_at,
    }
    if (trip := one_trip(session)) is not None:
        trip.later(_RECORD_SUCCESS, values)
    else:
        await session.execute(_RECORD_SUCCESS, values)


async def record_failure(
    session: AsyncSession,
    source_id: int,
    *,
    now: datetime,
    status: str,
    error: str,
    next_check_at: datetime,
) -> None:
    """Record a poll that failed (one more error); in a poll's transaction on SQLite,
    the UPDATE runs with the commit (monitor/db/onetrip.py)."""
    values = {
        "p_id": source_id,
        "p_status": status,
        "p_error": error,
        "p_now": now,
        "p_next": next_check_at,
    }
    if (trip := one_trip(session)) is not None:
        trip.later(_RECORD_FAILURE, values)
    else:
        await session.execute(_RECORD_FAILURE, values)


async def list_sources(session: AsyncSession) -> list[Source]:
    return list((await session.scalars(select(Source).order_by(Source.name))).all())


@dataclass(frozen=True, slots=True)
class ItemFilter:
    source: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None
    # Only the disclosures of this stock code.
    ticker: str | None = None
    limit: int = 50


def _items_query(flt: ItemFilter) -> Select[Item, str]:
    query = select(Item, Source.name).join(Source, Item.source_id == Source.id)
    if flt.source:
        query = query.where(Source.name == flt.source)
    if flt.ticker:
        filings = select(DisclosureRow.item_id).where(DisclosureRow.stock_code == flt.ticker)
        query = query.where(Item.id.in_(filings))
    if flt.since:
        query = query.where(Item.published_at >= flt.since)
    if flt.until:
        query = query.where(Item.published_at < flt.until)
    if flt.search:
        # Case-insensitive substring on title and summary; LIKE wildcards are escaped.
        needle = flt.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{needle.lower()}%"
        query = query.where(
            or_(
                func.lower(Item.title).like(pattern, escape="\\"),
                func.lower(Item.summary).like(pattern, escape="\\"),
            )
        )
    return query.order_by(Item.published_at.desc(), Item.id.desc()).limit(flt.limit)


async def list_items(session: AsyncSession, flt: ItemFilter) -> list[tuple[Item, str]]:
    """Items newest first (by publication time) with their source's name."""
    result = await session.execute(_items_query(flt))
    return [(item, name) for item, name in result.all()]


async def get_item(session: AsyncSession, item_id: int) -> tuple[Item, str] | None:
    result = await session.execute(
        select(Item, Source.name)
        .join(Source, Item.source_id == Source.id)
        .where(Item.id == item_id)
    )
    row = result.first()
    return (row[0], row[1]) if row else None
