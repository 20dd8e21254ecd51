"""The stage after the rules: store their signals and the deliveries of the new ones.

Called in the transaction that stored the rows the signals are about, so an item,
its signal and the signal's alert deliveries are committed together or not at all.
A signal whose dedup key is stored already is not stored again, and gets no new
deliveries (a re-poll, a restart, a second process, a syndicated copy).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from monitor.alerts.outbox import enqueue
from monitor.db import signals as signals_repo
from monitor.db.schema import SignalRow
from monitor.ingest.context import PollContext
from monitor.rules.evaluate import Signal

log = structlog.get_logger("kmon.rules")


async def store_signals(
    ctx: PollContext,
    session: AsyncSession,
    signals: Sequence[Signal],
    *,
    now: datetime,
    links: Sequence[tuple[str, int]] = (),
) -> list[SignalRow]:
    """Store ``signals``, link items to them (``links``: dedup key, item id) and write
    the deliveries of the new ones; return the new signal rows."""
    if not signals:
        return []
    started = time.perf_counter()
    stored = await signals_repo.store_signals(session, signals, now=now)
    new_keys = {row.dedup_key for row in stored}
    # A later official copy of a story (a ministry's own release) becomes its headline.
    retitled = await signals_repo.prefer_official(
        session, [s for s in signals if s.dedup_key not in new_keys]
    )
    if retitled:
        log.info("story_retitled", signals=retitled)
    if links:
        # Every copy is linked to its story's signal, the first and the later ones.
        ids = {row.dedup_key: row.id for row in stored}
        known = {key for key, _ in links if key not in ids}
        ids.update(await signals_repo.ids_by_key(session, known))
        await signals_repo.link_items(
            session, [(ids[key], item) for key, item in links if key in ids], now=now
        )
    await enqueue(session, stored, ctx.alerts, now=now)
    for row in stored:
        log.info(
            "signal",
            id=row.id,
            kind=row.kind,
            rule=row.rule_id,
            severity=row.severity,
            subject=row.subject,
            headline=row.headline[:200],
            store_ms=round((time.perf_counter() - started) * 1000, 1),
        )
    return stored
