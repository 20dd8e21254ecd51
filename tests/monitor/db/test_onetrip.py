"""A poll's transaction (monitor/db/onetrip.py) writes the rows a plain session writes,
commits them all or none, on SQLite in one trip to the driver's thread for a 304
(each test runs on SQLite and PostgreSQL; the trip counts on SQLite only)."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.records import RawItem, Validators
from monitor.config import SourceConfig
from monitor.db import repo
from monitor.db.dialect import is_postgres
from monitor.db.onetrip import poll_transaction
from monitor.db.schema import Item, Source

NOW = datetime(2025, 6, 18, 0, 30, 15, 123456, tzinfo=UTC)
SM = async_sessionmaker[AsyncSession]
Write = Callable[[AsyncSession, repo.SourceState], Awaitable[object]]


def item(n: int, **kw: Any) -> RawItem:
    fields: dict[str, Any] = {
        "title": f"카카오 소식 {n}",
        "url": f"https://news.example.kr/a/{n}",
        "guid": f"guid-{n}",
        "summary": f"요약 {n}",
        "author": "기자" if n % 2 else None,
        "language": "ko",
        "published_at": NOW - timedelta(minutes=n, microseconds=n),
        "date_estimated": n % 3 == 0,
    }
    fields.update(kw)
    return RawItem(**fields)


async def sources(sm: SM, *names: str) -> list[repo.SourceState]:
    """Sources in the same state: a failure counted, a lease held (as a claim leaves it)."""
    configs = [SourceConfig(name=name, url=f"https://{name}.example.kr/rss") for name in names]
    async with sm.begin() as session:
        await repo.sync_sources(session, configs, now=NOW)
        await session.execute(
            update(Source).values(
                error_count=2,
                status="failing",
                last_error="http_500: boom",
                lease_owner="replica-a",
                lease_until=NOW + timedelta(minutes=2),
            )
        )
    async with sm() as session:
        return await repo.load_sources(session, names=list(names))


async def rows(sm: SM) -> dict[str, dict[str, Any]]:
    """The sources' rows as the database holds them (SQLite's text, not parsed back)."""
    async with sm() as session:
        found = (await session.execute(text("SELECT * FROM sources"))).mappings()
        return {row["name"]: {k: v for k, v in row.items() if k not in SKIP} for row in found}


SKIP = {"id", "name", "url"}


async def items_of(sm: SM, source_id: int) -> list[tuple[Any, ...]]:
    """The items of ``source_id`` as the database holds them, but for their ids."""
    async with sm() as session:
        found = await session.execute(
            text(
                "SELECT external_id, url, title, summary, author, language, published_at, "
                "date_estimated, fetched_at FROM items WHERE source_id = :source "
                "ORDER BY external_id"
            ),
            {"source": source_id},
        )
        return [tuple(row) for row in found]


async def success(session: AsyncSession, source: repo.SourceState) -> None:
    await repo.record_success(
        session,
        source.id,
        now=NOW,
        validators=Validators(etag='"v2"', last_modified="Wed, 18 Jun 2025 00:00:00 GMT"),
        next_check_at=NOW + timedelta(minutes=10),
    )


async def success_without_validators(session: AsyncSession, source: repo.SourceState) -> None:
    await repo.record_success(
        session, source.id, now=NOW, validators=Validators(), next_check_at=NOW
    )


async def failure(session: AsyncSession, source: repo.SourceState) -> None:
    await repo.record_failure(
        session,
        source.id,
        now=NOW,
        status="failed",
        error="http_404: gone",
        next_check_at=NOW + timedelta(days=1),
    )


async def items_then_success(session: AsyncSession, source: repo.SourceState) -> None:
    batch = [item(1), item(2), item(2), item(3, guid=None, url=None), item(4)]
    await repo.insert_items(session, source, batch, fetched_at=NOW)
    await success(session, source)


@pytest.mark.parametrize(
    "write", [success, success_without_validators, failure, items_then_success]
)
async def test_a_poll_transaction_writes_the_rows_a_plain_session_writes(
    sessionmaker: SM, write: Write
) -> None:
    plain, fast = await sources(sessionmaker, "plain", "fast")
    async with sessionmaker.begin() as session:
        await write(session, plain)
    async with poll_transaction(sessionmaker) as session:
        await write(session, fast)
    got = await rows(sessionmaker)
    assert got["fast"] == got["plain"]
    assert got["fast"]["lease_owner"] is None  # the poll gives its lease back
    assert await items_of(sessionmaker, fast.id) == await items_of(sessionmaker, plain.id)


async def test_insert_returns_the_new_rows_only_and_stores_each_once(sessionmaker: SM) -> None:
    [source] = await sources(sessionmaker, "feed")
    async with poll_transaction(sessionmaker) as session:
        first = await repo.insert_items(session, source, [item(1), item(2)], fetched_at=NOW)
    async with poll_transaction(sessionmaker) as session:
        again = await repo.insert_items(
            session, source, [item(2), item(3), item(3), item(1)], fetched_at=NOW
        )
    assert [i.title for i in first] == ["카카오 소식 1", "카카오 소식 2"]
    assert [(i.title, i.source) for i in again] == [("카카오 소식 3", "feed")]
    assert len({i.id for i in first + again}) == 3
    assert len(await items_of(sessionmaker, source.id)) == 3


async def test_what_the_session_did_commits_with_the_items_and_the_state(sessionmaker: SM) -> None:
    [source] = await sources(sessionmaker, "feed")
    async with poll_transaction(sessionmaker) as session:
        await repo.insert_items(session, source, [item(1)], fetched_at=NOW)
        # A read and a write through the session itself, as the rules and the
        # signals do: the same transaction as the items.
        assert await session.scalar(select(Item.title)) == "카카오 소식 1"
        await session.execute(update(Source).values(last_error="seen by the session"))
        await success(session, source)
    [row] = (await rows(sessionmaker)).values()
    assert (row["etag"], row["error_count"], row["last_error"]) == (
        '"v2"',
        0,
        "seen by the session",
    )
    assert len(await items_of(sessionmaker, source.id)) == 1


@pytest.mark.parametrize("session_used", [False, True])
async def test_a_transaction_that_raises_leaves_nothing(
    sessionmaker: SM, session_used: bool
) -> None:
    [source] = await sources(sessionmaker, "feed")
    before = await rows(sessionmaker)
    with pytest.raises(RuntimeError, match="a rule crashed"):
        async with poll_transaction(sessionmaker) as session:
            await repo.insert_items(session, source, [item(1), item(2)], fetched_at=NOW)
            if session_used:
                await session.execute(update(Source).values(last_error="rolled back"))
            await success(session, source)
            raise RuntimeError("a rule crashed")
    assert await items_of(sessionmaker, source.id) == []
    assert await rows(sessionmaker) == before
    async with poll_transaction(sessionmaker) as session:  # the connection is fine
        assert len(await repo.insert_items(session, source, [item(1)], fetched_at=NOW)) == 1


def refused_etag(sm: SM, etag: str) -> AbstractAsyncContextManager[None]:
    """The database refuses a source update that sets ``etag``, until the block ends."""
    return refusing(sm, "UPDATE ON sources", f"NEW.etag = '{etag}'")


@asynccontextmanager
async def refusing(sm: SM, event: str, when: str) -> AsyncIterator[None]:
    """The database refuses the rows of ``event`` ("UPDATE ON sources") for which
    ``when`` holds (a trigger), until the block ends; the trigger goes with it."""
    table = event.split()[-1]
    async with sm.begin() as session:
        postgres = is_postgres(session)
        if postgres:
            await session.execute(
                text(
                    "CREATE OR REPLACE FUNCTION kmon_refuse() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'refused by the database'; END $$ LANGUAGE plpgsql"
                )
            )
            await session.execute(
                text(
                    f"CREATE TRIGGER refuse BEFORE {event} FOR EACH ROW "
                    f"WHEN ({when}) EXECUTE FUNCTION kmon_refuse()"
                )
            )
        else:
            await session.execute(
                text(
                    f"CREATE TRIGGER refuse BEFORE {event} WHEN {when} "
                    "BEGIN SELECT RAISE(ABORT, 'refused by the database'); END"
                )
            )
    try:
        yield
    finally:
        async with sm.begin() as session:
            if postgres:
                await session.execute(text(f"DROP TRIGGER refuse ON {table}"))
                await session.execute(text("DROP FUNCTION kmon_refuse()"))
            else:
                await session.execute(text("DROP TRIGGER refuse"))


async def test_a_state_update_the_database_refuses_at_the_commit_leaves_nothing(
    sessionmaker: SM,
) -> None:
    [source] = await sources(sessionmaker, "feed")
    before = await rows(sessionmaker)
    async with refused_etag(sessionmaker, '"v2"'):
        with pytest.raises(Exception, match="refused by the database"):
            async with poll_transaction(sessionmaker) as session:
                await repo.insert_items(session, source, [item(1), item(2)], fetched_at=NOW)
                await success(session, source)
    assert await items_of(sessionmaker, source.id) == []
    assert await rows(sessionmaker) == before


async def test_an_item_the_database_refuses_leaves_nothing_and_the_rest_is_stored_later(
    sessionmaker: SM,
) -> None:
    [source] = await sources(sessionmaker, "feed")
    before = await rows(sessionmaker)
    batch = [item(1), item(2), item(3)]
    async with refusing(sessionmaker, "INSERT ON items", "NEW.title = '카카오 소식 2'"):
        with pytest.raises(Exception, match="refused by the database"):
            async with poll_transaction(sessionmaker) as session:
                await repo.insert_items(session, source, batch, fetched_at=NOW)
                await success(session, source)
    # The first item went in before the second was refused: it went out with it.
    assert await items_of(sessionmaker, source.id) == []
    assert await rows(sessionmaker) == before
    async with poll_transaction(sessionmaker) as session:
        assert len(await repo.insert_items(session, source, batch, fetched_at=NOW)) == 3
        await success(session, source)
    assert len(await items_of(sessionmaker, source.id)) == 3


async def test_sqlite_trips_a_304_takes_one_and_new_items_two(
    sessionmaker: SM, monkeypatch: pytest.MonkeyPatch
) -> None:
    [source] = await sources(sessionmaker, "feed")
    async with sessionmaker() as session:
        if is_postgres(session):
            pytest.skip("asyncpg has no driver thread to hand work over to")
    trips: list[str] = []
    hand_over = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await hand_over(self, fn, *args, **kwargs)

    # Counting, not replacing: every call still goes to aiosqlite's thread.
    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    async with poll_transaction(sessionmaker) as session:
        await success(session, source)
    not_modified, trips[:] = len(trips), []
    async with poll_transaction(sessionmaker) as session:
        await repo.insert_items(session, source, [item(n) for n in range(50)], fetched_at=NOW)
        await success(session, source)
    assert (not_modified, len(trips)) == (1, 2)
    assert len(await items_of(sessionmaker, source.id)) == 50
