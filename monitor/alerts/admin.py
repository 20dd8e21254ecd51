"""The outbox as ``kmon alerts`` sees it: listing deliveries, and the explicit retries.

Repository functions in the project's manner: they take a session and never commit.
A retry makes a row pending and due now with a fresh attempt budget, and keeps
``last_error`` (and, for a sent row, ``sent_at`` and ``message_key``) as history
until the next attempt overwrites it. A row that a dispatcher holds (its lease runs)
keeps its lease, so a retry can never make two dispatchers send it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from monitor.alerts import DEAD, PENDING
from monitor.alerts.outbox import DIGEST_HELD
from monitor.db.schema import Delivery, SignalRow


async def list_deliveries(
    session: AsyncSession,
    *,
    status: str | None = None,
    since: datetime | None = None,
    channel: str | None = None,
    limit: int = 50,
) -> list[tuple[Delivery, SignalRow]]:
    """Deliveries with their signals, newest first; ``since`` is on creation time."""
    query = select(Delivery, SignalRow).join(SignalRow, SignalRow.id == Delivery.signal_id)
    if status is not None:
        query = query.where(Delivery.status == status)
    if since is not None:
        query = query.where(Delivery.created_at >= since)
    if channel is not None:
        query = query.where(Delivery.channel == channel)
    query = query.order_by(Delivery.created_at.desc(), Delivery.id.desc()).limit(limit)
    return [(d, s) for d, s in (await session.execute(query)).all()]


async def retry(session: AsyncSession, delivery_id: int, *, now: datetime) -> str | None:
    """Make one delivery pending and due now; return its status before (None: no row).

    Any status: a dead row is tried again, a sent one is sent again, a pending one
    skips the rest of its backoff or hold.
    """
    row = await session.get(Delivery, delivery_id)
    if row is None:
        return None
    before = row.status
    row.status = PENDING
    row.due_at = now
    row.attempts = 0
    row.held = None
    return before


async def retry_dead(session: AsyncSession, *, now: datetime, channel: str | None = None) -> int:
    """Make every dead delivery (of ``channel``, if given) pending and due now."""
    query = (
        update(Delivery)
        .where(Delivery.status == DEAD)
        .values(status=PENDING, due_at=now, attempts=0, held=None, claimed_until=None)
        .execution_options(synchronize_session=False)
    )
    if channel is not None:
        query = query.where(Delivery.channel == channel)
    result = await session.execute(query)
    return int(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Backlog:
    """One channel's outbox as monitoring sees it."""

    channel: str
    pending: int
    # Seconds since the oldest pending delivery that is not held on purpose (quiet
    # hours, the digest) was written; 0 when there is none.
    oldest_pending_age: float
    dead: int


async def backlog(session: AsyncSession, *, now: datetime) -> list[Backlog]:
    """Pending and dead deliveries per channel, and the age of the oldest pending one."""
    waiting = Delivery.held.is_(None) | Delivery.held.not_in(sorted(DIGEST_HELD))
    result = await session.execute(
        select(
            Delivery.channel,
            func.count().filter(Delivery.status == PENDING),
            func.min(Delivery.created_at).filter((Delivery.status == PENDING) & waiting),
            func.count().filter(Delivery.status == DEAD),
        )
        .where(Delivery.status.in_((PENDING, DEAD)))
        .group_by(Delivery.channel)
        .order_by(Delivery.channel)
    )
    return [
        Backlog(
            channel=channel,
            pending=pending,
            oldest_pending_age=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
            dead=dead,
        )
        for channel, pending, oldest, dead in result.all()
    ]
