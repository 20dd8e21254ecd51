"""Repository functions on a real database (each test runs on SQLite and PostgreSQL)."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.records import RawItem, Validators
from monitor.config import SourceConfig
from monitor.db import repo
from monitor.db.schema import Item

NOW = datetime(2025, 6, 18, 0, 30, tzinfo=UTC)
SM = async_sessionmaker[AsyncSession]


def item(n: int, **kw: object) -> RawItem:
    fields: dict[str, object] = {
        "title": f"네이버 소식 {n}",
        "url": f"https://news.example.kr/a/{n}",
        "guid": f"guid-{n}",
        "summary": f"요약 {n}",
        "published_at": NOW - timedelta(minutes=n),
    }
    fields.update(kw)
    return RawItem(**fields)  # type: ignore[arg-type]


async def make_source(sm: SM, name: str = "feed") -> repo.SourceState:
    async with sm.begin() as session:
        await repo.sync_sources(
            session, [SourceConfig(name=name, url="https://news.example.kr/rss")], now=NOW
        )
    async with sm() as session:
        return (await repo.load_sources(session, names=[name]))[0]


async def test_insert_returns_only_new_items(sessionmaker: SM) -> None:
    source_id = await make_source(sessionmaker)
    async with sessionmaker.begin() as session:
        first = await repo.insert_items(session, source_id, [item(1), item(2)], fetched_at=NOW)
    async with sessionmaker.begin() as session:
        second = await repo.insert_items(
            session, source_id, [item(2), item(3), item(3)], fetched_at=NOW
        )
    assert len(first) == 2
    assert len(second) == 1
    async with sessionmaker() as session:
        titles = (await session.scalars(select(Item.title).order_by(Item.id))).all()
    assert titles == ["네이버 소식 1", "네이버 소식 2", "네이버 소식 3"]


async def test_identity_falls_back_to_link_then_text(sessionmaker: SM) -> None:
    source_id = await make_source(sessionmaker)
    batch = [
        item(1, guid=None, url="https://news.example.kr/a/1?utm_source=rss"),
        item(1, guid=None, url="https://news.example.kr/a/1", title="retitled"),
        item(2, guid=None, url=None),
        item(2, guid=None, url=None),
        item(3, guid=None, url=None, summary="different text"),
    ]
    async with sessionmaker.begin() as session:
        new = await repo.insert_items(session, source_id, batch, fetched_at=NOW)
    assert len(new) == 3


async def test_same_guid_in_two_sources_is_two_items(sessionmaker: SM) -> None:
    a = await make_source(sessionmaker, "a")
    b = await make_source(sessionmaker, "b")
    async with sessionmaker.begin() as session:
        assert len(await repo.insert_items(session, a, [item(1)], fetched_at=NOW)) == 1
        assert len(await repo.insert_items(session, b, [item(1)], fetched_at=NOW)) == 1


async def test_large_batches_and_round_trip_of_times(sessionmaker: SM) -> None:
    source_id = await make_source(sessionmaker)
    batch = [item(n) for n in range(2500)]  # more than one INSERT statement
    async with sessionmaker.begin() as session:
        assert len(await repo.insert_items(session, source_id, batch, fetched_at=NOW)) == 2500
    async with sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(Item))
        newest = await session.scalar(select(Item).order_by(Item.published_at.desc()).limit(1))
    assert count == 2500
    assert newest is not None
    assert newest.published_at == NOW - timedelta(minutes=0)
    assert newest.published_at.tzinfo is not None


async def test_text_is_nfc_normalised(sessionmaker: SM) -> None:
    import unicodedata

    source_id = await make_source(sessionmaker)
    decomposed = unicodedata.normalize("NFD", "카카오 인공지능")
    async with sessionmaker.begin() as session:
        await repo.insert_items(
            session, source_id, [item(1, title=decomposed, summary=decomposed)], fetched_at=NOW
        )
    async with sessionmaker() as session:
        stored = await session.scalar(select(Item))
    assert stored is not None
    assert stored.title == "카카오 인공지능"
    assert stored.summary == "카카오 인공지능"


async def test_sync_sources_adds_updates_and_disables(sessionmaker: SM) -> None:
    first = [
        SourceConfig(name="a", url="https://a.kr/rss", interval=300),
        SourceConfig(name="b", url="https://b.kr/rss"),
    ]
    async with sessionmaker.begin() as session:
        await repo.sync_sources(session, first, now=NOW)
    async with sessionmaker.begin() as session:
        await repo.record_success(
            session,
            (await repo.load_sources(session, names=["a"]))[0].id,
            now=NOW,
            validators=Validators(etag='"v1"'),
            next_check_at=NOW + timedelta(minutes=5),
        )
    later = NOW + timedelta(hours=1)
    second = [
        SourceConfig(name="a", url="https://a.kr/rss", interval=900),
        SourceConfig(name="c", url="https://c.kr/rss"),
    ]
    async with sessionmaker.begin() as session:
        await repo.sync_sources(session, second, now=later)
    async with sessionmaker() as session:
        rows = {s.name: s for s in await repo.list_sources(session)}
    assert rows["a"].interval_seconds == 900
    assert rows["a"].etag == '"v1"'  # same URL: validators kept
    assert rows["b"].enabled is False  # gone from config: kept, not polled
    assert rows["c"].next_check_at == later  # new: due at once
    # A changed URL starts afresh.
    async with sessionmaker.begin() as session:
        await repo.sync_sources(
            session, [SourceConfig(name="a", url="https://a.kr/new-rss")], now=later
        )
    async with sessionmaker() as session:
        a = (await repo.load_sources(session, names=["a"]))[0]
    assert a.validators == Validators()
    assert a.next_check_at == later


async def test_due_sources_and_failure_counting(sessionmaker: SM) -> None:
    async with sessionmaker.begin() as session:
        await repo.sync_sources(
            session,
            [
                SourceConfig(name="a", url="https://a.kr/rss"),
                SourceConfig(name="b", url="https://b.kr/rss"),
            ],
            now=NOW,
        )
        states = {s.name: s for s in await repo.load_sources(session)}
        for _ in range(2):
            await repo.record_failure(
                session,
                states["a"].id,
                now=NOW,
                status="failing",
                error="http_500: boom",
                next_check_at=NOW + timedelta(hours=1),
            )
    async with sessionmaker() as session:
        due = await repo.load_sources(session, due_at=NOW + timedelta(minutes=1))
        a = (await repo.load_sources(session, names=["a"]))[0]
    assert [s.name for s in due] == ["b"]
    assert (a.status, a.error_count) == ("failing", 2)


async def test_list_items_filters(sessionmaker: SM) -> None:
    source_id = await make_source(sessionmaker, "yna")
    other = await make_source(sessionmaker, "herald")
    async with sessionmaker.begin() as session:
        await repo.insert_items(
            session,
            source_id,
            [
                item(1, title="소버린 AI 전략 발표"),
                item(60, title="Kakao shares 50%_off rumour"),
                item(600, title="오래된 기사"),
            ],
            fetched_at=NOW,
        )
        await repo.insert_items(
            session, other, [item(2, title="Sovereign AI push")], fetched_at=NOW
        )

    async def titles(flt: repo.ItemFilter) -> list[str]:
        async with sessionmaker() as session:
            return [i.title for i, _ in await repo.list_items(session, flt)]

    assert await titles(repo.ItemFilter()) == [
        "소버린 AI 전략 발표",
        "Sovereign AI push",
        "Kakao shares 50%_off rumour",
        "오래된 기사",
    ]
    assert await titles(repo.ItemFilter(source="herald")) == ["Sovereign AI push"]
    assert await titles(repo.ItemFilter(since=NOW - timedelta(hours=2))) == [
        "소버린 AI 전략 발표",
        "Sovereign AI push",
        "Kakao shares 50%_off rumour",
    ]
    assert await titles(repo.ItemFilter(until=NOW - timedelta(minutes=30))) == [
        "Kakao shares 50%_off rumour",
        "오래된 기사",
    ]
    assert await titles(repo.ItemFilter(search="sovereign")) == ["Sovereign AI push"]
    assert await titles(repo.ItemFilter(search="소버린")) == ["소버린 AI 전략 발표"]
    assert await titles(repo.ItemFilter(search="50%_")) == ["Kakao shares 50%_off rumour"]
    assert await titles(repo.ItemFilter(search="0%x")) == []
    assert await titles(repo.ItemFilter(limit=1)) == ["소버린 AI 전략 발표"]
