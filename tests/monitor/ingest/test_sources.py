"""The failure path of a source when the poll's own transaction fails (real databases)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.http import HttpLimits, make_client_session
from adapters.records import FeedResult, RawItem, Validators
from adapters.rss import BodyParser
from monitor.config import SchedulerSettings, SourceConfig
from monitor.db import repo
from monitor.ingest import feeds
from monitor.ingest.context import HostLimiter, PollContext

NOW = datetime(2025, 6, 18, 1, 0, tzinfo=UTC)
SM = async_sessionmaker[AsyncSession]


@pytest.fixture
async def ctx(sessionmaker: SM, db_url: str) -> AsyncIterator[PollContext]:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite stores a NUL in text; PostgreSQL refuses it")
    clock = [NOW]
    async with make_client_session() as http:
        yield PollContext(
            sessionmaker=sessionmaker,
            http=http,
            limits=HttpLimits(total_timeout=5),
            scheduling=SchedulerSettings(jitter=0, backoff_max=3600, permanent_retry=86400),
            host_limiter=HostLimiter(4),
            clock=lambda: clock[0],
        )


def feed_of(title: str) -> feeds.FeedFetcher:
    """A source kind whose feed, already parsed, holds one item titled ``title``: the
    rows reach the store as they are, whatever the parser makes of a real feed."""

    async def fetch(
        session: aiohttp.ClientSession,
        url: str,
        *,
        validators: Validators,
        limits: HttpLimits,
        fetched_at: datetime,
        parse: BodyParser | None = None,
    ) -> FeedResult:
        item = RawItem(title=title, url=f"{url}/1", guid="1", summary="", published_at=NOW)
        return FeedResult(http_status=200, validators=Validators(), items=[item])

    return fetch


async def poll(ctx: PollContext) -> feeds.PollOutcome:
    async with ctx.sessionmaker() as session:
        (state,) = await repo.load_sources(session, names=["feed"])
    return await feeds.poll_source(ctx, state)


async def test_a_row_the_database_refuses_is_a_failure_of_the_source(
    ctx: PollContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ctx.sessionmaker.begin() as session:
        source = SourceConfig(name="feed", url="https://news.example.kr/rss", interval=60)
        await repo.sync_sources(session, [source], now=NOW)
    monkeypatch.setitem(feeds.FETCHERS, "rss", feed_of("AI 기본법\x00 통과"))

    first = await poll(ctx)
    second = await poll(ctx)

    assert (first.status, first.error_key) == ("error", "store")
    assert (second.status, second.error_key) == ("error", "store")
    async with ctx.sessionmaker() as session:
        (row,) = await repo.list_sources(session)
    assert (row.status, row.error_count) == ("failing", 2)
    assert row.last_error is not None and row.last_error.startswith("store: ")
    # Backed off: the second failure waits longer than the first, both past the interval.
    assert second.next_check_at - NOW > first.next_check_at - NOW >= timedelta(seconds=60)

    monkeypatch.setitem(feeds.FETCHERS, "rss", feed_of("AI 기본법 통과"))
    recovered = await poll(ctx)
    assert (recovered.status, len(recovered.new_item_ids)) == ("ok", 1)
