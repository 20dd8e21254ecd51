"""Parsing and tagging in worker processes: the same items and signals as in the
event loop, a worker that dies fails its poll as ``internal`` without losing anything,
and a parse given up does not hold the polls queued behind it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import unicodedata
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.errors import ParseError
from adapters.feed import parse_feed
from adapters.http import make_client_session
from adapters.records import RawItem
from monitor.db.schema import Item, SignalItem, SignalRow, Source
from monitor.identity import external_id
from monitor.ingest.feeds import poll_source
from monitor.ingest.workers import WorkerPool, usable_workers, worker_pool
from monitor.rules.engine import firing_positions
from monitor.rules.model import Ruleset, load_rules
from tests.monitor.ingest.test_tagging import (
    Clock,
    add_sources,
    context,
    rss,
    signals,
    source,
)
from tests.servers import FakeSource

SM = async_sessionmaker[AsyncSession]
WHEN = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
# Two items the default rules fire on and two they do not; the first written in
# decomposed jamo (NFD), as some publishers send it, which the store makes NFC.
ON_TOPIC = [
    "정부, 소버린 AI 데이터센터 10조원 지원 발표",
    "대통령실 첫 AI미래기획수석에 하정우 네이버 AI센터장 임명",
]
OFF_TOPIC = ["기준금리 동결…한국은행 발표", "전세 사기 피해 지원 연장"]


@pytest.fixture(scope="module")
def ruleset() -> Ruleset:
    return load_rules(None)


@pytest.fixture(scope="module", params=[False, True], ids=["tags", "parses and tags"])
def pool(ruleset: Ruleset, request: pytest.FixtureRequest) -> Iterator[WorkerPool]:
    """A pool that tags items parsed in this process (``rules.workers``), and one that
    parses bodies and tags their items (``http.parse_workers``)."""
    started = WorkerPool(ruleset, 1, parses=request.param)
    started.start()
    yield started
    started.close()


@pytest.fixture(scope="module")
def parser() -> Iterator[WorkerPool]:
    """A pool that only parses (the rules judge no news)."""
    started = WorkerPool(None, 1, parses=True)
    started.start()
    yield started
    started.close()


def raw(title: str, n: int) -> RawItem:
    return RawItem(
        title=unicodedata.normalize("NFD", title) if n == 0 else title,
        url=f"https://news.example.kr/{n}",
        guid=None,
        summary="",
        published_at=WHEN,
        language="ko",
    )


@pytest.mark.parametrize(
    ("wanted", "cpus", "started"), [(1, 1, 0), (1, 2, 1), (3, 2, 1), (2, 8, 2), (0, 8, 0)]
)
def test_workers_leave_a_cpu_to_the_event_loop(wanted: int, cpus: int, started: int) -> None:
    assert usable_workers(wanted, cpus) == started


def test_no_workers_configured_is_no_pool(ruleset: Ruleset) -> None:
    assert worker_pool(ruleset) is None
    assert worker_pool(None, tag_workers=1) is None  # nothing to tag: the rules judge no news
    with pytest.raises(ValueError, match="nothing to do"):
        WorkerPool(None, 1)


async def test_the_pool_tells_the_items_that_fire_as_the_event_loop_would(
    pool: WorkerPool, ruleset: Ruleset
) -> None:
    items = [raw(title, n) for n, title in enumerate([*ON_TOPIC, *OFF_TOPIC])]
    # No guid, no link: its id is the hash of its text, which the store makes NFC.
    bare = dataclasses.replace(raw(ON_TOPIC[1], 0), url=None)
    items.append(bare)

    firing = await pool.firing(items, source="feed", source_type="news")

    texts = [(i.title, i.summary, i.language) for i in items]
    here = firing_positions(ruleset, texts, source="feed", source_type="news")
    assert here == [0, 1, 4]
    assert bare.title != ON_TOPIC[1]  # decomposed jamo
    assert firing == {
        external_id(guid=None, url=f"https://news.example.kr/{n}", title=t, summary="")
        for n, t in enumerate(ON_TOPIC)
    } | {external_id(guid=None, url=None, title=ON_TOPIC[1], summary="")}
    assert await pool.firing([], source="feed", source_type="news") == set()


def feed() -> bytes:
    titles = [*ON_TOPIC, *OFF_TOPIC]
    return rss(*((f"g{n}", title, WHEN) for n, title in enumerate(titles)))


async def stored(sessionmaker: SM) -> tuple[int, list[tuple[str, str]]]:
    async with sessionmaker() as session:
        items = await session.scalar(select(func.count()).select_from(Item))
    rows = await signals(sessionmaker)
    return items or 0, sorted((row.dedup_key, row.headline) for row in rows)


async def linked_titles(sessionmaker: SM, source_name: str) -> list[str]:
    """The titles of ``source_name``'s items that a signal lists (NFC, as stored)."""
    async with sessionmaker() as session:
        titles = await session.scalars(
            select(Item.title)
            .join(SignalItem, SignalItem.item_id == Item.id)
            .join(Source, Source.id == Item.source_id)
            .where(Source.name == source_name)
        )
        return sorted(titles)


@pytest.fixture
async def http() -> AsyncIterator[object]:
    async with make_client_session() as session:
        yield session


async def test_a_poll_with_the_pool_stores_what_one_without_it_stores(
    sessionmaker: SM, http_server: FakeSource, http: object, ruleset: Ruleset, pool: WorkerPool
) -> None:
    http_server.serve("/a", feed())
    http_server.serve("/b", feed())
    await add_sources(sessionmaker, ("a", http_server.url("/a")))
    clock = Clock()
    alone = context(sessionmaker, http, clock, ruleset)
    assert (await poll_source(alone, await source(sessionmaker, "a"))).status == "ok"
    without = await stored(sessionmaker)

    # The same feed again under another name, tagged by the pool this time: its own
    # items, linked to the same stories (so no signal is added).
    await add_sources(sessionmaker, ("a", http_server.url("/a")), ("b", http_server.url("/b")))
    pooled = context(sessionmaker, http, clock, ruleset)
    pooled.workers = pool
    outcome = await poll_source(pooled, await source(sessionmaker, "b"))

    assert outcome.status == "ok"
    assert len(outcome.new_item_ids) == 4
    assert without[0] == 4 and len(without[1]) == 2
    assert await stored(sessionmaker) == (8, without[1])
    # The pool told which of b's items fire: those two, and only those, joined the stories.
    assert await linked_titles(sessionmaker, "b") == sorted(ON_TOPIC)


@pytest.mark.parametrize("parses", [False, True], ids=["tagging", "parsing"])
async def test_a_worker_that_dies_fails_the_poll_as_internal_and_the_next_poll_stores_it(
    sessionmaker: SM, http_server: FakeSource, http: object, ruleset: Ruleset, parses: bool
) -> None:
    http_server.serve("/a", feed())
    await add_sources(sessionmaker, ("a", http_server.url("/a")))
    ctx = context(sessionmaker, http, Clock(), ruleset)
    dying = WorkerPool(ruleset, 1, parses=parses)
    dying.start()
    ctx.workers = dying
    try:
        for pid in dying.worker_pids():
            os.kill(pid, signal.SIGKILL)

        failed = await poll_source(ctx, await source(sessionmaker, "a"))
        after_failure = await source(sessionmaker, "a")
        nothing = await stored(sessionmaker)
        retried = await poll_source(ctx, after_failure)
    finally:
        dying.close()

    assert (failed.status, failed.error_key, failed.new_item_ids) == ("error", "internal", [])
    assert "BrokenProcessPool" in (failed.error or "")
    assert (after_failure.status, after_failure.error_count) == ("failing", 1)
    assert nothing == (0, [])
    assert (retried.status, len(retried.new_item_ids)) == ("ok", 4)
    items, stories = await stored(sessionmaker)
    assert items == 4 and len(stories) == 2
    async with sessionmaker() as session:
        fired = await session.scalar(select(func.count()).select_from(SignalRow))
    assert fired == 2


ROOT = str(Path(__file__).resolve().parents[3])
# A process with a started pool that tells its worker's pid and waits to be killed.
HOLDER = """
import sys
from monitor.ingest.workers import WorkerPool
from monitor.rules.model import load_rules

pool = WorkerPool(load_rules(None), 1, parses=True)
pool.start()
print(*pool.worker_pids(), flush=True)
sys.stdin.read()
"""


async def test_workers_end_with_a_daemon_killed_outright() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        workers = (await proc.stdout.readline()).split()
    assert len(workers) == 1

    proc.kill()
    # The worker inherited the daemon's standard error: the pipe ends only when every
    # process holding it has ended, the worker too (a worker left behind keeps it open).
    async with asyncio.timeout(60):
        await proc.communicate()  # standard error read to its end
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("start", [True, False], ids=["daemon", "burst"])
@pytest.mark.parametrize(
    ("workers", "parse_workers", "pooled", "parses"),
    [(0, 0, False, False), (1, 0, True, False), (0, 1, True, True), (1, 1, True, True)],
)
async def test_the_runtime_starts_the_configured_pool_and_stops_it(
    db_url: str, workers: int, parse_workers: int, pooled: bool, parses: bool, start: bool
) -> None:
    from monitor.config import DatabaseSettings, Settings
    from monitor.service.daemon import open_runtime

    settings = Settings(
        database=DatabaseSettings(url=db_url),
        sources=[],
        quotes={"enabled": False},  # type: ignore[arg-type]
        rules={"workers": workers},  # type: ignore[arg-type]
        http={"parse_workers": parse_workers},  # type: ignore[arg-type]
    )
    started: list[BaseProcess] = []
    async with open_runtime(settings, start_workers=start) as ctx:
        pool = ctx.workers
        assert (pool is not None) == pooled
        if pool is not None:
            # A burst command's workers start at their first use (its cycle may have
            # nothing to parse), the daemon's at once.
            assert len(pool.worker_pids()) == (1 if start else 0)
            assert (pool.parses, pool.tags) == (parses, True)
            if not start:
                if parses:
                    await pool.parse(
                        feed(), content_type=None, fetched_at=WHEN, source="f", source_type=None
                    )
                else:
                    await pool.firing([raw(ON_TOPIC[0], 0)], source="f", source_type=None)
                assert len(pool.worker_pids()) == 1
            started = processes(pool)
    assert pool is None or pool.worker_pids() == []
    assert all(process.exitcode is not None for process in started)  # ended, not orphaned


async def test_the_workers_parse_a_body_as_this_process_does_and_tell_its_firing_items(
    pool: WorkerPool, parser: WorkerPool
) -> None:
    body = feed()
    here = parse_feed(body, content_type="application/rss+xml; charset=utf-8", fetched_at=WHEN)

    parsed, firing = await pool.parse(
        body,
        content_type="application/rss+xml; charset=utf-8",
        fetched_at=WHEN,
        source="feed",
        source_type="news",
    )
    alone, untold = await parser.parse(
        body, content_type=None, fetched_at=WHEN, source="feed", source_type="news"
    )

    assert parsed == here and alone == here
    assert [item.title for item in here.items] == [*ON_TOPIC, *OFF_TOPIC]
    assert firing == {
        external_id(guid=f"g{n}", url=item.url, title=item.title, summary=item.summary)
        for n, item in enumerate(here.items[:2])
    }
    assert untold is None  # no rules in that pool: the event loop tags what it stores


@pytest.mark.parametrize(
    ("body", "key"), [(b"<html><body>moved</body></html>", "not_a_feed"), (b"", "not_a_feed")]
)
async def test_a_body_the_workers_cannot_read_is_the_same_parse_error_as_here(
    parser: WorkerPool, body: bytes, key: str
) -> None:
    with pytest.raises(ParseError) as here:
        parse_feed(body, fetched_at=WHEN)
    with pytest.raises(ParseError) as there:
        await parser.parse(body, content_type=None, fetched_at=WHEN, source="f", source_type=None)
    assert there.value.key == here.value.key == key
    assert str(there.value) == str(here.value)


def big_feed(items: int) -> bytes:
    return rss(*((f"g{n}", f"{OFF_TOPIC[n % 2]} {n}번째 소식", WHEN) for n in range(items)))


def processes(pool: WorkerPool) -> list[BaseProcess]:
    return list(getattr(pool._executor, "_processes", {}).values())


async def test_a_parse_past_its_timeout_stops_the_workers_and_the_others_finish_here(
    ruleset: Ruleset,
) -> None:
    pool = WorkerPool(ruleset, 2, parses=True)
    pool.start()
    try:
        # Both workers up (a worker still starting would count against the timeout).
        await asyncio.gather(
            *(
                pool.parse(feed(), content_type=None, fetched_at=WHEN, source="w", source_type=None)
                for _ in range(2)
            )
        )
        before = processes(pool)
        assert len(before) == 2
        slow = asyncio.create_task(
            pool.parse(
                big_feed(20_000),
                content_type=None,
                fetched_at=WHEN,
                source="a",
                source_type=None,
                parse_timeout=0.05,
            )
        )
        other = asyncio.create_task(
            pool.parse(
                big_feed(20_000), content_type=None, fetched_at=WHEN, source="b", source_type=None
            )
        )
        with pytest.raises(TimeoutError):
            await slow
        parsed, firing = await other

        assert len(parsed.items) == 20_000
        assert firing is None  # cut short in its worker, parsed here: the loop tags it
        for process in before:  # stopped outright, not left to finish
            await asyncio.to_thread(process.join, 30)
            assert process.exitcode == -signal.SIGKILL
        # The next parse starts fresh workers.
        again, told = await pool.parse(
            feed(), content_type=None, fetched_at=WHEN, source="b", source_type="news"
        )
        assert [item.title for item in again.items] == [*ON_TOPIC, *OFF_TOPIC]
        assert told is not None and len(told) == 2
        assert {p.pid for p in processes(pool)}.isdisjoint(p.pid for p in before)
    finally:
        pool.close()


async def test_a_parse_given_to_workers_still_starting_is_timed_from_their_start(
    ruleset: Ruleset,
) -> None:
    pool = WorkerPool(ruleset, 1, parses=True)  # not started: the first call starts it
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        parsed, told = await pool.parse(
            feed(),
            content_type=None,
            fetched_at=WHEN,
            source="b",
            source_type="news",
            parse_timeout=0.2,
        )
        waited = loop.time() - started

        assert waited > 0.2  # the premise: a spawned worker's imports take longer
        assert [item.title for item in parsed.items] == [*ON_TOPIC, *OFF_TOPIC]
        assert told is not None and len(told) == 2
    finally:
        pool.close()


async def test_a_parse_waiting_for_a_free_worker_is_not_timed_out(ruleset: Ruleset) -> None:
    pool = WorkerPool(ruleset, 1, parses=True)
    pool.start()
    try:
        await pool.parse(feed(), content_type=None, fetched_at=WHEN, source="w", source_type=None)
        (worker,) = processes(pool)
        # The first holds the one worker for a second or more; the second waits for it
        # longer than its own timeout, which starts only once the worker has it.
        first = asyncio.create_task(
            pool.parse(
                big_feed(40_000), content_type=None, fetched_at=WHEN, source="a", source_type=None
            )
        )
        second = asyncio.create_task(
            pool.parse(
                feed(),
                content_type=None,
                fetched_at=WHEN,
                source="b",
                source_type="news",
                parse_timeout=0.5,
            )
        )
        started = asyncio.get_running_loop().time()
        (long, _), (parsed, told) = await asyncio.gather(first, second)
        waited = asyncio.get_running_loop().time() - started

        assert waited > 0.5  # the premise: the wait alone outlasted the timeout
        assert len(long.items) == 40_000
        assert [item.title for item in parsed.items] == [*ON_TOPIC, *OFF_TOPIC]
        assert told is not None and len(told) == 2  # parsed and tagged by the worker
        assert processes(pool) == [worker] and worker.is_alive()
    finally:
        pool.close()
