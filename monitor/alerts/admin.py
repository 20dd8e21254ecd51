"""The outbox as ``kmon alerts`` sees it: listing deliveries, and the explicit retries.

Repository functions in the project's manner: they take a session and never commit.
A retry makes a row pending and due now with a fresh attempt budget, and keeps
``last_error`` (and, for a sent row, ``sent_at`` and ``message_key``) as history
until the next attempt overwrites it. A row that a dispatcher holds (its lease runs)
keeps its lease, so a retry can never make two dispatchers send it at once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from monitor.alerts import DEAD, PENDING
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
