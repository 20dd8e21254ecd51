"""Several replicas on one database, in-process and as real processes: each source and
each timed task once per due time, heartbeats that readiness follows, and one daemon per
SQLite file."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from monitor.config import ReplicaSettings, Settings, SourceConfig
from monitor.db.engine import make_engine, make_sessionmaker
from monitor.service.daemon import Daemon, open_runtime, poll_once
from monitor.service.health import Readiness
from monitor.service.replica import DatabaseClock, Replica, replica_id
from tests.cli_process import kmon
from tests.faults.daemon import Daemon as KmonRun
from tests.faults.daemon import environment
from tests.feeds import entries, rss
from tests.servers import FakeSource


def settings_for(db_url: str, *sources: SourceConfig) -> Settings:
    return Settings(database={"url": db_url}, sources=list(sources), scheduler={"jitter": 0})


async def test_two_replicas_polling_at_once_fetch_each_source_once(
    db_url: str, http_server: FakeSource
) -> None:
    sources = []
    for i in range(20):
        http_server.serve(f"/f{i}", rss(entries(2, start=10 * i)))
        sources.append(SourceConfig(name=f"f{i}", url=http_server.url(f"/f{i}"), interval=60))
    settings = settings_for(db_url, *sources)
    async with (
        open_runtime(settings, replica="a") as a,
        open_runtime(settings, replica="b") as b,
    ):
        got_a, got_b = await asyncio.gather(poll_once(a), poll_once(b))
        # Disjoint, and together every source once: no feed was asked twice.
        names_a, names_b = {o.source for o in got_a}, {o.source for o in got_b}
        assert not names_a & names_b
        assert names_a | names_b == {s.name for s in sources}
        assert len(http_server.requests) == 20
        # Nothing is due any more, for either.
        assert await poll_once(a) == [] and await poll_once(b) == []


async def test_a_named_poll_leaves_a_source_another_replica_holds(
    db_url: str, http_server: FakeSource
) -> None:
    from monitor.db import leases

    http_server.serve("/x", rss(entries(1)))
    settings = settings_for(db_url, SourceConfig(name="x", url=http_server.url("/x")))
    async with open_runtime(settings, replica="burst") as ctx:
        async with ctx.sessionmaker.begin() as session:
            assert await leases.claim_sources(
                session, owner="daemon-1", ttl=60, now=ctx.clock(), due_by=ctx.clock()
            )
        [outcome] = await poll_once(ctx, ["x"])
        assert (outcome.status, outcome.error) == ("held", "being polled by daemon-1")
        assert http_server.requests == []


class BlockingTask:
    """A timed task that waits for ``release`` inside its run."""

    name = "blocking"

    def __init__(self) -> None:
        self.started, self.release, self.runs = asyncio.Event(), asyncio.Event(), 0

    def first_run(self, now: datetime) -> datetime:
        return now

    async def run(self) -> datetime:
        self.runs += 1
        self.started.set()
        await self.release.wait()
        return datetime.now(UTC) + timedelta(minutes=5)


async def test_a_timed_task_runs_on_one_replica_per_due_time(db_url: str) -> None:
    settings = settings_for(db_url)
    async with (
        open_runtime(settings, replica="a") as a,
        open_runtime(settings, replica="b") as b,
    ):
        task = BlockingTask()
        first, second = Daemon(a, grace_period=1), Daemon(b, grace_period=1)
        running = asyncio.create_task(first._run_leased(task))
        await task.started.wait()
        # Held by a: b does not run it and looks again when a's lease would end.
        retry = await second._run_leased(task)
        assert task.runs == 1
        assert timedelta(seconds=a.lease) <= retry - b.clock() <= timedelta(seconds=a.lease + 2)
        task.release.set()
        next_run = await running
        # Done for this due time: b waits for the next one, which a stored.
        assert await second._run_leased(task) == next_run
        assert task.runs == 1


async def test_the_heartbeat_follows_the_database_and_readiness_follows_it(
    db_url: str,
) -> None:
    engine, blocker = make_engine(db_url), make_engine(db_url)
    try:
        sessionmaker = make_sessionmaker(engine)
        settings = ReplicaSettings(heartbeat=0.5, lease=2)
        replica = Replica(
            sessionmaker, settings, replica="r1", clock=DatabaseClock(), version="test"
        )
        readiness = Readiness(
            sessionmaker, scheduler_running=lambda: True, heartbeat_ok=lambda: replica.healthy
        )
        await replica.register()
        assert await replica.beat() and replica.healthy
        # Another writer holds the replicas table: the heartbeat cannot be written
        # within its interval, and readiness says so.
        async with blocker.connect() as conn:
            if db_url.startswith("postgresql"):
                await conn.execute(text("BEGIN"))
                await conn.execute(text("LOCK TABLE replicas IN ACCESS EXCLUSIVE MODE"))
            else:
                await conn.execute(text("BEGIN EXCLUSIVE"))
            assert not await replica.beat()
            assert not replica.healthy
            await conn.execute(text("ROLLBACK"))
        ready, checks = await readiness.check()
        assert checks["heartbeat"] == "cannot be written" and not ready
        assert await replica.beat() and replica.healthy
        ready, checks = await readiness.check()
        assert ready and checks["heartbeat"] == "ok"
    finally:
        await engine.dispose()
        await blocker.dispose()


def test_the_database_clock_is_the_local_one_corrected_by_the_offset() -> None:
    local = [datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)]
    clock = DatabaseClock(lambda: local[0])
    assert clock() == local[0]
    # The database said 12:00:30 halfway through a 2-second round trip that ended now.
    clock.learn(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC), sent=10.0, received=12.0)
    assert clock.offset == timedelta(seconds=31)
    local[0] += timedelta(seconds=5)
    assert clock() == datetime(2026, 1, 1, 12, 0, 36, tzinfo=UTC)


def test_replica_ids_are_unique_unless_named() -> None:
    assert replica_id(ReplicaSettings(), pid=7) != replica_id(ReplicaSettings(), pid=7)
    assert replica_id(ReplicaSettings(name="kmon-a")) == "kmon-a"
    with pytest.raises(ValueError, match="at least twice the heartbeat"):
        ReplicaSettings(heartbeat=30, lease=40)


async def test_a_second_run_on_one_sqlite_file_is_refused_and_a_dead_one_does_not_block(
    tmp_path: Path,
) -> None:
    database = tmp_path / "kmon.db"
    config = tmp_path / "kmon.yaml"
    config.write_text(
        f'database: {{url: "sqlite+aiosqlite:///{database}"}}\n'
        "sources: []\nquotes: {enabled: false}\n",
        encoding="utf-8",
    )
    env = environment(config)
    first = KmonRun(env)
    await first.start()
    try:
        await first.wait_for(
            lambda lines: any(line["event"] == "daemon_started" for line in lines), within=30
        )
        code, _, err = await kmon("run", env=env)
        assert code == 2
        [line] = err.strip().splitlines()
        assert line.startswith(f"kmon: another kmon run holds {database} since ")
        assert f"(pid {first.pid} on " in line
        assert line.endswith("; use PostgreSQL for several replicas")
    finally:
        assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
        await first.close()
    # The holder died without cleaning up: its lock went with it.
    second = KmonRun(env)
    await second.start()
    try:
        await second.wait_for(
            lambda lines: any(line["event"] == "daemon_started" for line in lines), within=30
        )
        assert await second.stop() == 0
    finally:
        await second.close()


async def test_a_restarted_daemon_takes_back_what_a_dead_one_of_its_host_held(
    db_url: str, http_server: FakeSource
) -> None:
    import socket
    import sys

    from monitor.db import leases
    from monitor.timefmt import utcnow

    gone = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await gone.wait()
    dead_pid = gone.pid
    http_server.serve("/x", rss(entries(1)))
    settings = settings_for(db_url, SourceConfig(name="x", url=http_server.url("/x")))
    async with open_runtime(settings, replica="new") as ctx:
        now = utcnow()
        async with ctx.sessionmaker.begin() as session:
            for name, host, pid in (("dead", socket.gethostname(), dead_pid),
                                    ("elsewhere", "other-host", dead_pid)):  # fmt: skip
                await leases.register(session, name, host=host, pid=pid, version="t", now=now)
            await leases.claim_sources(session, owner="dead", ttl=600, now=now, due_by=now)
            await leases.claim_task(
                session, "quotes", owner="elsewhere", ttl=600, now=now, due_by=now
            )
        replica = Replica(
            ctx.sessionmaker, ReplicaSettings(), replica="new", clock=ctx.clock, version="t"
        )
        await replica.register()
        async with ctx.sessionmaker() as session:
            views = {v.id: v for v in await leases.list_replicas(session, now=now)}
        # The dead pid of this host: released at once. Another host's: left to expire.
        assert (views["dead"].sources, views["dead"].stopped_at is not None) == (0, True)
        assert (views["elsewhere"].tasks, views["elsewhere"].stopped_at) == (["quotes"], None)
        [outcome] = await poll_once(ctx)
        assert outcome.status == "ok"


async def test_replicas_starting_together_sync_the_sources_once(db_url: str) -> None:
    from sqlalchemy import func, select

    from monitor.db.schema import Source

    settings = settings_for(
        db_url,
        *(SourceConfig(name=f"s{i}", url=f"http://127.0.0.1:9/{i}") for i in range(40)),
    )
    opened = asyncio.Event()
    counts: list[int] = []

    async def start(name: str) -> None:
        async with open_runtime(settings, replica=name) as ctx:
            async with ctx.sessionmaker() as session:
                feeds = select(func.count(Source.id)).where(Source.kind == "rss")
                counts.append(int(await session.scalar(feeds) or 0))
            if len(counts) == 3:
                opened.set()
            await opened.wait()  # all three open at once

    async with asyncio.timeout(60):
        # None fails on a source inserted twice.
        await asyncio.gather(*(start(name) for name in ("a", "b", "c")))
    assert counts == [40, 40, 40]


async def test_polls_take_turns_at_the_database_leaving_connections_free(
    db_url: str, http_server: FakeSource
) -> None:
    from sqlalchemy import event

    sources = []
    for i in range(24):
        http_server.serve(f"/t{i}", rss(entries(3, start=10 * i)))
        sources.append(SourceConfig(name=f"t{i}", url=http_server.url(f"/t{i}")))
    settings = Settings(
        database={"url": db_url, "pool_size": 3},
        sources=sources,
        http={"per_host_limit": 24},
        scheduler={"jitter": 0},
    )
    async with open_runtime(settings) as ctx:
        turns = 3 if db_url.startswith("postgresql") else 1  # the pool without its overflow
        engine = ctx.sessionmaker.kw["bind"]
        open_now, most = 0, 0

        def began(*_: object) -> None:
            nonlocal open_now, most
            open_now += 1
            most = max(most, open_now)

        def ended(*_: object) -> None:
            nonlocal open_now
            open_now -= 1

        event.listen(engine.sync_engine, "begin", began)
        event.listen(engine.sync_engine, "commit", ended)
        event.listen(engine.sync_engine, "rollback", ended)
        outcomes = await poll_once(ctx)
        assert sorted(o.status for o in outcomes) == ["ok"] * 24
        # The claim's transaction ran alone; the stores at most ``turns`` at a time.
        assert 1 <= most <= turns
