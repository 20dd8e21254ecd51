"""Leases: how several replicas on one database divide the work, one row at a time.

A replica claims a due source (or a timed task) with one statement that reserves the
row for it until ``lease_until`` and skips rows another replica holds: rows locked by
a claim in flight (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and rows whose lease has
not run out. The poll's own transaction gives the row back (``repo.record_success``
and ``record_failure`` clear the lease as they set the next check), so a source is
polled once per due time by whichever replica gets there first. A replica that dies
holding a lease leaves it to expire; then the row is claimable again.

Leases are decided on the database's clock (``now()`` on PostgreSQL), never the
replicas': a replica whose clock runs ahead cannot take a live lease, and one whose
clock lags cannot hold one past its end. SQLite has no server and one process (the
daemon refuses a second, monitor/service/replica.py), so there the caller's clock
stands in for the database's.

``replicas`` lists the daemons and their heartbeats (written on the database's clock
too, which is how each replica learns its offset to that clock).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Interval,
    and_,
    delete,
    func,
    literal,
    or_,
    select,
    type_coerce,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from monitor.db.dialect import insert_for, is_postgres
from monitor.db.repo import SourceState, source_state
from monitor.db.schema import ReplicaRow, Source, TaskLease, UTCDateTime


def db_clock(session: AsyncSession, now: datetime) -> ColumnElement[datetime]:
    """The database's clock in a statement: ``now()`` on PostgreSQL; on SQLite (one
    process, one machine) ``now``, the caller's."""
    if is_postgres(session):
        return type_coerce(func.now(), UTCDateTime)
    return literal(now, UTCDateTime)


def _until(session: AsyncSession, now: datetime, ttl: float) -> ColumnElement[datetime]:
    if is_postgres(session):
        return type_coerce(func.now() + literal(timedelta(seconds=ttl), Interval()), UTCDateTime)
    return literal(now + timedelta(seconds=ttl), UTCDateTime)


def _held(owner: str | None, until: datetime | None, db_now: datetime) -> tuple[str | None, float]:
    """Who holds a lease read back with the database's time, and for how many more
    seconds: (None, 0) when nobody does or it has run out."""
    if owner is None or until is None or until <= db_now:
        return None, 0.0
    return owner, (until - db_now).total_seconds()


def _free(owner_col: Any, until_col: Any, owner: str, clock: ColumnElement[datetime]) -> Any:
    """Claimable by ``owner``: nobody's, expired, or already ``owner``'s."""
    return or_(until_col.is_(None), until_col <= clock, owner_col == owner)


async def claim_sources(
    session: AsyncSession,
    *,
    owner: str,
    ttl: float,
    now: datetime,
    ids: Sequence[int] | None = None,
    due_by: datetime | None = None,
    kinds: Sequence[str] | None = None,
) -> list[SourceState]:
    """Claim the enabled sources ``ids`` (or all), those due by ``due_by`` only when it
    is given, that no other replica holds; the claimed rows' states, by name.

    One statement: the rows are picked and leased together, so two replicas claiming
    at once get disjoint sets. The lease runs ``ttl`` seconds on the database's clock.
    """
    clock = db_clock(session, now)
    pick = select(Source.id).where(
        Source.enabled.is_(True), _free(Source.lease_owner, Source.lease_until, owner, clock)
    )
    if ids is not None:
        pick = pick.where(Source.id.in_(list(ids)))
    if kinds is not None:
        pick = pick.where(Source.kind.in_(list(kinds)))
    if due_by is not None:
        pick = pick.where(or_(Source.next_check_at.is_(None), Source.next_check_at <= due_by))
    if is_postgres(session):
        pick = pick.with_for_update(skip_locked=True)
    stmt = (
        update(Source)
        .where(Source.id.in_(pick.scalar_subquery()))
        .values(lease_owner=owner, lease_until=_until(session, now, ttl))
        .returning(Source)
        .execution_options(synchronize_session=False)
    )
    rows = (await session.scalars(stmt)).all()
    return sorted((source_state(row) for row in rows), key=lambda s: s.name)


@dataclass(frozen=True, slots=True)
class Holder:
    """Why a source was not claimed: when it is due, and who holds it (if anyone)."""

    next_check_at: datetime | None
    owner: str | None
    # Seconds left of that lease on the database's clock (0 when there is none).
    remaining: float


async def holder(session: AsyncSession, source_id: int, *, now: datetime) -> Holder | None:
    """The lease state of a source that was not claimed; None when it is gone."""
    clock = db_clock(session, now)
    row = (
        await session.execute(
            select(Source.next_check_at, Source.lease_owner, Source.lease_until, clock).where(
                Source.id == source_id, Source.enabled.is_(True)
            )
        )
    ).one_or_none()
    if row is None:
        return None
    next_check_at, owner, until, db_now = row
    return Holder(next_check_at, *_held(owner, until, db_now))


@dataclass(frozen=True, slots=True)
class TaskClaim:
    """The answer to a task's claim: claimed, or when it is due and who holds it."""

    claimed: bool
    next_run_at: datetime | None
    owner: str | None
    remaining: float


async def claim_task(
    session: AsyncSession, name: str, *, owner: str, ttl: float, now: datetime, due_by: datetime
) -> TaskClaim:
    """Claim the timed task ``name`` when it is due by ``due_by`` and nobody else runs it."""
    await session.execute(
        insert_for(session)(TaskLease)
        .values(name=name)
        .on_conflict_do_nothing(index_elements=["name"])
    )
    clock = db_clock(session, now)
    claimed = await session.scalar(
        update(TaskLease)
        .where(
            TaskLease.name == name,
            _free(TaskLease.lease_owner, TaskLease.lease_until, owner, clock),
            or_(TaskLease.next_run_at.is_(None), TaskLease.next_run_at <= due_by),
        )
        .values(lease_owner=owner, lease_until=_until(session, now, ttl))
        .returning(TaskLease.name)
        .execution_options(synchronize_session=False)
    )
    if claimed is not None:
        return TaskClaim(True, None, owner, ttl)
    next_run_at, holder_id, until, db_now = (
        await session.execute(
            select(
                TaskLease.next_run_at, TaskLease.lease_owner, TaskLease.lease_until, clock
            ).where(TaskLease.name == name)
        )
    ).one()
    return TaskClaim(False, next_run_at, *_held(holder_id, until, db_now))


async def finish_task(
    session: AsyncSession, name: str, *, owner: str, now: datetime, next_run_at: datetime | None
) -> None:
    """Give ``name`` back after a run: due next at ``next_run_at`` (unchanged when None,
    after a run that failed, so that another replica may take it at once)."""
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
    if next_run_at is not None:
        values.update(next_run_at=next_run_at, last_run_at=now, last_owner=owner)
    await session.execute(
        update(TaskLease)
        .where(TaskLease.name == name, TaskLease.lease_owner == owner)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


async def release_all(session: AsyncSession, owner: str) -> int:
    """Give back every lease ``owner`` holds (a draining replica); how many."""
    sources = await session.execute(
        update(Source)
        .where(Source.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    tasks = await session.execute(
        update(TaskLease)
        .where(TaskLease.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(sources.rowcount or 0) + int(tasks.rowcount or 0)  # type: ignore[attr-defined]


# ----------------------------------------------------------------------- replicas


async def register(
    session: AsyncSession, replica: str, *, host: str, pid: int, version: str, now: datetime
) -> datetime:
    """Add (or restart) ``replica``; the database's time of it."""
    clock = db_clock(session, now)
    values = {
        "id": replica,
        "host": host,
        "pid": pid,
        "version": version,
        "started_at": clock,
        "heartbeat_at": clock,
        "stopped_at": None,
    }
    stmt = insert_for(session)(ReplicaRow).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["id"], set_={k: stmt.excluded[k] for k in values if k != "id"}
    ).returning(ReplicaRow.started_at)
    started: datetime = (await session.execute(stmt)).scalar_one()
    return started


async def heartbeat(session: AsyncSession, replica: str, *, now: datetime) -> datetime | None:
    """Say ``replica`` is alive; the database's time of the heartbeat (None: the row is
    gone, which re-registering fixes)."""
    return await session.scalar(
        update(ReplicaRow)
        .where(ReplicaRow.id == replica)
        .values(heartbeat_at=db_clock(session, now), stopped_at=None)
        .returning(ReplicaRow.heartbeat_at)
        .execution_options(synchronize_session=False)
    )


async def stopped(session: AsyncSession, replica: str, *, now: datetime) -> None:
    await session.execute(
        update(ReplicaRow)
        .where(ReplicaRow.id == replica)
        .values(stopped_at=db_clock(session, now))
        .execution_options(synchronize_session=False)
    )


async def running_on(session: AsyncSession, host: str) -> list[tuple[str, int]]:
    """The (id, pid) of the replicas of ``host`` that have not said they stopped."""
    rows = await session.execute(
        select(ReplicaRow.id, ReplicaRow.pid).where(
            ReplicaRow.host == host, ReplicaRow.stopped_at.is_(None)
        )
    )
    return [(replica, pid) for replica, pid in rows.all()]


async def forget_replicas(session: AsyncSession, *, before: datetime, now: datetime) -> int:
    """Delete replicas silent since ``before`` that hold nothing; how many."""
    held = select(Source.lease_owner).where(Source.lease_owner.is_not(None))
    tasks = select(TaskLease.lease_owner).where(TaskLease.lease_owner.is_not(None))
    result = await session.execute(
        delete(ReplicaRow).where(
            ReplicaRow.heartbeat_at < before,
            ReplicaRow.id.not_in(held),
            ReplicaRow.id.not_in(tasks),
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """A replica as ``kmon replicas list`` shows it."""

    id: str
    host: str
    pid: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    # Seconds since the heartbeat, on the database's clock.
    silent_for: float
    sources: int
    tasks: list[str]


async def list_replicas(session: AsyncSession, *, now: datetime) -> list[ReplicaView]:
    """Every known replica with the live leases it holds, newest first."""
    clock = db_clock(session, now)
    db_now = await session.scalar(select(clock))
    assert db_now is not None
    held: dict[str | None, int] = {
        owner: count
        for owner, count in (
            await session.execute(
                select(Source.lease_owner, func.count())
                .where(Source.lease_owner.is_not(None), Source.lease_until > clock)
                .group_by(Source.lease_owner)
            )
        ).all()
    }
    tasks: dict[str | None, list[str]] = {}
    for owner, name in (
        await session.execute(
            select(TaskLease.lease_owner, TaskLease.name)
            .where(and_(TaskLease.lease_owner.is_not(None), TaskLease.lease_until > clock))
            .order_by(TaskLease.name)
        )
    ).all():
        tasks.setdefault(owner, []).append(name)
    rows = (await session.scalars(select(ReplicaRow).order_by(ReplicaRow.started_at.desc()))).all()
    return [
        ReplicaView(
            id=row.id,
            host=row.host,
            pid=row.pid,
            version=row.version,
            started_at=row.started_at,
            heartbeat_at=row.heartbeat_at,
            stopped_at=row.stopped_at,
            silent_for=max(0.0, (db_now - row.heartbeat_at).total_seconds()),
            sources=held.get(row.id, 0),
            tasks=tasks.get(row.id, []),
        )
        for row in rows
    ]


async def leases_held(session: AsyncSession, owner: str, *, now: datetime) -> tuple[int, int]:
    """The live (source, task) leases ``owner`` holds."""
    clock = db_clock(session, now)
    sources = await session.scalar(
        select(func.count()).where(Source.lease_owner == owner, Source.lease_until > clock)
    )
    tasks = await session.scalar(
        select(func.count()).where(TaskLease.lease_owner == owner, TaskLease.lease_until > clock)
    )
    return int(sources or 0), int(tasks or 0)
