"""The daemon's schedule and lifecycle, in-process, against real servers and databases."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from sqlalchemy import func, select
from structlog.testing import capture_logs

from monitor.alerting import AlertSettings
from monitor.config import Settings, SourceConfig
from monitor.db import SchemaNotCurrent, migrate
from monitor.db.engine import make_engine
from monitor.db.schema import Item
from monitor.ingest.sources import PollOutcome
from monitor.service.daemon import (
    Daemon,
    UnknownSource,
    open_runtime,
    poll_once,
    serve,
)
from monitor.service.runtime import RULES_STORE_TURNS
from tests.feeds import entries, rss
from tests.servers import FakeSource


def settings_for(db_url: str, *sources: SourceConfig, grace: float = 10) -> Settings:
    return Settings(
        database={"url": db_url},
        sources=list(sources),
        scheduler={"grace_period": grace, "jitter": 0},
    )


async def count_items(ctx: object) -> int:
    async with ctx.sessionmaker() as session:  # type: ignore[attr-defined]
        return int(await session.scalar(select(func.count()).select_from(Item)) or 0)


async def test_daemon_polls_every_source_then_stops(db_url: str, http_server: FakeSource) -> None:
    http_server.serve("/a", rss(entries(3)))
    http_server.serve("/b", rss(entries(2, start=100)))
    settings = settings_for(
        db_url,
        SourceConfig(name="a", url=http_server.url("/a"), interval=60),
        SourceConfig(name="b", url=http_server.url("/b"), interval=60),
    )
    polled: dict[str, PollOutcome] = {}
    both = asyncio.Event()

    def observe(outcome: PollOutcome) -> None:
        polled[outcome.source] = outcome
        if len(polled) == 2:
            both.set()

    stop = asyncio.Event()
    ready = asyncio.Event()
    async with open_runtime(settings) as ctx:
        ctx.observers.append(observe)
        daemon = Daemon(ctx, grace_period=5)
        task = asyncio.create_task(serve(daemon, stop=stop, on_ready=ready.set))
        await ready.wait()
        assert {job.id for job in daemon.scheduler.get_jobs()} == {"a", "b"}
        await both.wait()
        stop.set()
        await task
        assert not daemon.scheduler.running
        assert await count_items(ctx) == 5
        # Each job now waits for its source's stored next check.
        assert {o.status for o in polled.values()} == {"ok"}


async def test_shutdown_lets_a_running_poll_finish(db_url: str, http_server: FakeSource) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(body=rss(entries(4)))

    http_server.route("/slow", held)
    settings = settings_for(db_url, SourceConfig(name="slow", url=http_server.url("/slow")))
    stop = asyncio.Event()
    async with open_runtime(settings) as ctx:
        daemon = Daemon(ctx, grace_period=30)
        task = asyncio.create_task(serve(daemon, stop=stop))
        await arrived.wait()
        stop.set()
        await daemon.draining.wait()  # shutdown is now waiting on the poll
        release.set()
        await task
        assert await count_items(ctx) == 4


async def test_shutdown_cancels_polls_past_the_grace_period(
    db_url: str, http_server: FakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    arrived, never = asyncio.Event(), asyncio.Event()

    async def stuck(request: web.Request) -> web.Response:
        arrived.set()
        await never.wait()
        return web.Response(body=b"")

    http_server.route("/stuck", stuck)
    settings = settings_for(db_url, SourceConfig(name="stuck", url=http_server.url("/stuck")))
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="apscheduler")
    async with open_runtime(settings) as ctx:
        daemon = Daemon(ctx, grace_period=0.2)
        with capture_logs() as logs:
            task = asyncio.create_task(serve(daemon, stop=stop))
            await arrived.wait()
            stop.set()
            await task  # returns although the server never answered
        async with ctx.sessionmaker() as session:
            from monitor.db import repo

            state = (await repo.load_sources(session, names=["stuck"]))[0]
        assert state.status == "new"  # the cancelled poll wrote nothing
        assert await count_items(ctx) == 0
    never.set()
    # One quiet line names the poll that was cut short; APScheduler reports no error.
    [cancelled] = [e for e in logs if e["event"] == "polls_cancelled"]
    assert (cancelled["log_level"], cancelled["jobs"]) == ("info", ["stuck"])
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert not [e for e in logs if e["log_level"] in ("warning", "error")]


async def test_an_overrunning_poll_is_reported_once_not_at_every_skipped_run(
    db_url: str, http_server: FakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(body=rss(entries(2)))

    http_server.route("/slow", held)
    source = SourceConfig(name="slow", url=http_server.url("/slow"), interval=1)
    settings = settings_for(db_url, source)
    stop = asyncio.Event()
    caplog.set_level(logging.INFO, logger="apscheduler")
    async with open_runtime(settings) as ctx:
        daemon = Daemon(ctx, grace_period=5)
        skipped = asyncio.Event()
        runs: list[object] = []

        def count(event: object) -> None:
            runs.append(event)
            if len(runs) == 3:
                skipped.set()

        with capture_logs() as logs:
            task = asyncio.create_task(serve(daemon, stop=stop))
            await arrived.wait()
            # The interval trigger comes round three times while the poll hangs.
            daemon.scheduler.add_listener(count, EVENT_JOB_MAX_INSTANCES)
            async with asyncio.timeout(30):
                await skipped.wait()
            release.set()
            stop.set()
            await task
        assert await count_items(ctx) == 2
    overruns = [e for e in logs if e["event"] == "poll_overrun"]
    assert [(e["job"], e["log_level"]) for e in overruns] == [("slow", "warning")]
    [ended] = [e for e in logs if e["event"] == "poll_overrun_ended"]
    assert ended["job"] == "slow" and ended["skipped_runs"] >= 3
    skips = [r for r in caplog.records if "maximum number of running" in r.getMessage()]
    assert skips == []


async def test_poll_once_polls_due_or_named_sources(db_url: str, http_server: FakeSource) -> None:
    http_server.serve("/a", rss(entries(1)))
    http_server.serve("/b", rss(entries(1, start=5)))
    settings = settings_for(
        db_url,
        SourceConfig(name="a", url=http_server.url("/a")),
        SourceConfig(name="b", url=http_server.url("/b")),
    )
    async with open_runtime(settings) as ctx:
        first = await poll_once(ctx)
        assert sorted(o.source for o in first) == ["a", "b"]
        assert await poll_once(ctx) == []  # nothing due any more
        named = await poll_once(ctx, ["b"])
        assert [(o.source, o.status) for o in named] == [("b", "ok")]
        with pytest.raises(UnknownSource, match="nope"):
            await poll_once(ctx, ["b", "nope"])


async def test_refuses_a_database_that_is_behind(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    settings = settings_for(url)
    with pytest.raises(SchemaNotCurrent, match=r"revision empty.*kmon db upgrade"):
        async with open_runtime(settings):
            pass
    async with open_runtime(settings, migrate_schema=True):
        pass
    engine = make_engine(url)
    try:
        assert await migrate.current_revisions(engine) == migrate.head_revisions()
    finally:
        await engine.dispose()


class CountingTask:
    """A timed task that crashes on its first run and asks to run again at once."""

    name = "counting"

    def __init__(self, ctx: object, done: asyncio.Event) -> None:
        self.ctx, self.done, self.runs = ctx, done, 0

    def first_run(self, now: datetime) -> datetime:
        return now

    async def run(self) -> datetime:
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("first run fails")
        if self.runs == 3:
            self.done.set()
        return datetime.now(UTC)  # already due: must still be scheduled again


async def test_timed_tasks_survive_crashes_and_due_times(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import monitor.service.daemon

    monkeypatch.setattr(monitor.service.daemon, "TASK_RETRY", timedelta(0))
    done, stop = asyncio.Event(), asyncio.Event()
    async with open_runtime(settings_for(db_url)) as ctx:
        task = CountingTask(ctx, done)
        daemon = Daemon(ctx, grace_period=5, tasks=[task])
        with capture_logs() as logs:
            serving = asyncio.create_task(serve(daemon, stop=stop))
            async with asyncio.timeout(30):
                await done.wait()
            stop.set()
            await serving
    assert task.runs == 3
    assert [e["event"] for e in logs].count("task_crashed") == 1


async def test_the_dispatchers_rounds_go_ahead_of_polls_and_few_polls_store_at_once(
    db_url: str,
) -> None:
    """The dispatcher's rounds go ahead of waiting polls on both databases; on
    PostgreSQL two polls store at once while the rules judge news, the pool's
    connections with the rules off (SQLite: its one connection either way)."""
    settings = settings_for(db_url).model_copy(
        update={
            "alerts": AlertSettings.model_validate(
                {
                    "channels": {"log": {"type": "console"}},
                    "routes": [{"name": "all", "channels": ["log"]}],
                }
            )
        }
    )
    async with open_runtime(settings) as ctx:
        assert ctx.dispatcher is not None
        assert ctx.dispatcher.turns is ctx.store_turns
        sqlite = db_url.startswith("sqlite")
        assert ctx.store_turns.turns == (1 if sqlite else RULES_STORE_TURNS)
    rules_off = settings.model_copy(
        update={"rules": settings.rules.model_copy(update={"enabled": False})}
    )
    async with open_runtime(rules_off) as ctx:
        assert ctx.store_turns.turns == (1 if sqlite else settings.database.pool_size)
