"""Leases on real SQLite and PostgreSQL: claims are exclusive, expire on the database's
clock, go back with the poll, and tasks run once per due time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.records import Validators
from monitor.config import SourceConfig
from monitor.db import leases, repo
from monitor.db.engine import make_engine, make_sessionmaker
from monitor.db.schema import Source
from monitor.timefmt import utcnow

Maker = async_sessionmaker[AsyncSession]


async def add_sources(sessionmaker: Maker, count: int, *, now: datetime) -> list[int]:
    configured = [
        SourceConfig(name=f"s{i:03d}", url=f"http://127.0.0.1:9/{i}", interval=60)
        for i in range(count)
    ]
    async with sessionmaker.begin() as session:
        await repo.sync_sources(session, configured, now=now)
        return list((await session.scalars(select(Source.id).order_by(Source.name))).all())


def is_pg(url: str) -> bool:
    return url.startswith("postgresql")


async def test_two_replicas_claiming_at_once_get_disjoint_sources(db_url: str) -> None:
    now = utcnow()
    engines = [make_engine(db_url), make_engine(db_url)]
    try:
        makers = [make_sessionmaker(e) for e in engines]
        await add_sources(makers[0], 50, now=now)

        async def claim(maker: Maker, owner: str) -> set[str]:
            async with maker.begin() as session:
                got = await leases.claim_sources(session, owner=owner, ttl=60, now=now, due_by=now)
            return {s.name for s in got}

        a, b = await asyncio.gather(claim(makers[0], "a"), claim(makers[1], "b"))
        assert not a & b
        assert len(a | b) == 50
        # Everything is held now: a third replica gets nothing, the holders keep theirs.
        assert await claim(makers[0], "c") == set()
        assert await claim(makers[1], "a") == a
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_poll_gives_its_lease_back_and_is_not_due_again(
    db_url: str, sessionmaker: Maker
) -> None:
    now = utcnow()
    [source_id] = await add_sources(sessionmaker, 1, now=now)
    async with sessionmaker.begin() as session:
        [state] = await leases.claim_sources(
            session, owner="a", ttl=60, now=now, ids=[source_id], due_by=now
        )
        assert (await leases.holder(session, source_id, now=now)).owner == "a"  # type: ignore[union-attr]
    async with sessionmaker.begin() as session:
        await repo.record_success(
            session,
            state.id,
            now=now,
            validators=Validators(),
            next_check_at=now + timedelta(seconds=60),
        )
    async with sessionmaker.begin() as session:
        holder = await leases.holder(session, source_id, now=now)
        assert holder is not None and holder.owner is None and holder.remaining == 0
        # Released, but polled for this due time: another replica firing now finds
        # it not due; at its next check it is claimable again.
        assert (
            await leases.claim_sources(
                session, owner="b", ttl=60, now=now, ids=[source_id], due_by=now
            )
            == []
        )
        later = now + timedelta(seconds=61)
        claimed = await leases.claim_sources(
            session, owner="b", ttl=60, now=later, ids=[source_id], due_by=later
        )
        assert [s.id for s in claimed] == [source_id]


async def test_an_expired_lease_is_taken_over(db_url: str, sessionmaker: Maker) -> None:
    now = utcnow()
    [source_id] = await add_sources(sessionmaker, 1, now=now)
    async with sessionmaker.begin() as session:
        # ttl 0: the lease ends the moment it is taken, as one of a dead replica has.
        assert await leases.claim_sources(
            session, owner="dead", ttl=0, now=now, ids=[source_id], due_by=now
        )
    async with sessionmaker.begin() as session:
        taken = await leases.claim_sources(
            session, owner="b", ttl=60, now=now, ids=[source_id], due_by=now
        )
        assert [s.id for s in taken] == [source_id]
        holder = await leases.holder(session, source_id, now=now)
        assert holder is not None and holder.owner == "b" and 0 < holder.remaining <= 60


async def test_on_postgresql_a_skewed_clock_neither_steals_nor_keeps_a_lease(
    db_url: str, sessionmaker: Maker
) -> None:
    if not is_pg(db_url):
        pytest.skip("SQLite runs one process: its clock is the caller's")
    now = utcnow()
    [source_id] = await add_sources(sessionmaker, 1, now=now)
    async with sessionmaker.begin() as session:
        assert await leases.claim_sources(
            session, owner="a", ttl=600, now=now, ids=[source_id], due_by=now
        )
    ahead = now + timedelta(hours=2)  # a replica whose clock is two hours fast
    async with sessionmaker.begin() as session:
        assert (
            await leases.claim_sources(
                session, owner="fast", ttl=600, now=ahead, ids=[source_id], due_by=ahead
            )
            == []
        )
        holder = await leases.holder(session, source_id, now=ahead)
        assert holder is not None and holder.owner == "a" and holder.remaining > 590
    # A lease taken by a replica whose clock is two hours slow still ends on time.
    async with sessionmaker.begin() as session:
        await leases.release_all(session, "a")
        behind = now - timedelta(hours=2)
        assert await leases.claim_sources(
            session, owner="slow", ttl=0, now=behind, ids=[source_id], due_by=now
        )
    async with sessionmaker.begin() as session:
        assert await leases.claim_sources(
            session, owner="b", ttl=60, now=now, ids=[source_id], due_by=now
        )


async def test_a_task_runs_once_per_due_time(db_url: str, sessionmaker: Maker) -> None:
    now = utcnow()
    async with sessionmaker.begin() as session:
        first = await leases.claim_task(session, "quotes", owner="a", ttl=60, now=now, due_by=now)
        held = await leases.claim_task(session, "quotes", owner="b", ttl=60, now=now, due_by=now)
    assert first.claimed and not held.claimed
    assert held.owner == "a" and 0 < held.remaining <= 60
    nxt = now + timedelta(minutes=1)
    async with sessionmaker.begin() as session:
        await leases.finish_task(session, "quotes", owner="a", now=now, next_run_at=nxt)
        done = await leases.claim_task(session, "quotes", owner="b", ttl=60, now=now, due_by=now)
    # Done for this due time: the other replica learns when it is due next.
    assert not done.claimed and done.owner is None and done.next_run_at == nxt
    async with sessionmaker.begin() as session:
        due = await leases.claim_task(session, "quotes", owner="b", ttl=60, now=nxt, due_by=nxt)
    assert due.claimed


async def test_a_failed_task_run_stays_due_for_the_next_replica(
    db_url: str, sessionmaker: Maker
) -> None:
    now = utcnow()
    async with sessionmaker.begin() as session:
        assert (
            await leases.claim_task(session, "bars:x", owner="a", ttl=60, now=now, due_by=now)
        ).claimed
        await leases.finish_task(session, "bars:x", owner="a", now=now, next_run_at=None)
        again = await leases.claim_task(session, "bars:x", owner="b", ttl=60, now=now, due_by=now)
    assert again.claimed


async def test_replicas_are_listed_with_what_they_hold(db_url: str, sessionmaker: Maker) -> None:
    now = utcnow()
    await add_sources(sessionmaker, 3, now=now)
    async with sessionmaker.begin() as session:
        started = await leases.register(session, "r1", host="h1", pid=11, version="1.0", now=now)
        await leases.register(session, "r2", host="h2", pid=22, version="1.0", now=now)
        await leases.claim_sources(session, owner="r1", ttl=60, now=now, due_by=now)
        await leases.claim_task(session, "quotes", owner="r2", ttl=60, now=now, due_by=now)
    assert started.tzinfo is not None
    async with sessionmaker.begin() as session:
        views = {v.id: v for v in await leases.list_replicas(session, now=now)}
        assert (views["r1"].sources, views["r1"].tasks) == (3, [])
        assert (views["r2"].sources, views["r2"].tasks) == (0, ["quotes"])
        assert await leases.leases_held(session, "r1", now=now) == (3, 0)
        assert await leases.release_all(session, "r1") == 3
        await leases.stopped(session, "r1", now=now)
    async with sessionmaker.begin() as session:
        views = {v.id: v for v in await leases.list_replicas(session, now=now)}
        assert views["r1"].sources == 0 and views["r1"].stopped_at is not None
        beat = await leases.heartbeat(session, "r1", now=now)
        assert beat is not None
        assert await leases.heartbeat(session, "nobody", now=now) is None
        # Silent for long and holding nothing: forgotten; a holder is kept.
        later = datetime.now(UTC) + timedelta(days=2)
        assert await leases.forget_replicas(session, before=later, now=later) == 1
        assert {v.id for v in await leases.list_replicas(session, now=now)} == {"r2"}
