"""The sqlite3 read of items answers what the repository answers, on the same file."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.records import RawItem
from monitor.config import SourceConfig
from monitor.db import repo, sqlite_read
from monitor.db.engine import make_engine, make_sessionmaker
from monitor.stored import StoredItem

NOW = datetime(2025, 6, 18, 0, 30, tzinfo=UTC)


def raw(minutes: float, title: str, **kw: Any) -> RawItem:
    return RawItem(
        title=title,
        url=kw.pop("url", f"https://news.example.kr/{title}"),
        guid=kw.pop("guid", title),
        summary=kw.pop("summary", ""),
        published_at=NOW - timedelta(minutes=minutes),
        **kw,
    )


async def _seed(url: str) -> None:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            await repo.sync_sources(
                session,
                [
                    SourceConfig(name="yna", url="https://www.yna.co.kr/rss"),
                    SourceConfig(name="herald", url="https://www.koreaherald.com/rss"),
                ],
                now=NOW,
            )
            states = {s.name: s for s in await repo.load_sources(session)}
            await repo.insert_items(
                session,
                states["yna"],
                [
                    raw(1, "소버린 AI 전략 발표", summary="과기정통부 GPU 확보", language="ko"),
                    raw(60, "Kakao shares 50%_off rumour", author="Kim"),
                    raw(60, "Same minute, later row"),  # a tie on published_at: id decides
                    raw(600.5, "오래된 기사", url=None, date_estimated=True),
                    raw(0.000001, "Back\\slash", summary="A_B"),
                ],
                fetched_at=NOW,
            )
            await repo.insert_items(
                session,
                states["herald"],
                [raw(2, "Sovereign AI push", summary="NAVER and SOVEREIGN clouds")],
                fetched_at=NOW + timedelta(microseconds=7),
            )
    finally:
        await engine.dispose()


@pytest.fixture
def db_file(sqlite_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "kmon.db"
    shutil.copyfile(sqlite_template, path)
    asyncio.run(_seed(f"sqlite+aiosqlite:///{path}"))
    return path


async def _by_repo(path: Path, **filters: Any) -> list[StoredItem]:
    engine = make_engine(f"sqlite+aiosqlite:///{path}", null_pool=True)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = await repo.list_items(session, repo.ItemFilter(**filters))
    finally:
        await engine.dispose()
    return [
        StoredItem(
            id=i.id,
            source=name,
            external_id=i.external_id,
            url=i.url,
            title=i.title,
            summary=i.summary,
            author=i.author,
            language=i.language,
            published_at=i.published_at,
            date_estimated=i.date_estimated,
            fetched_at=i.fetched_at,
        )
        for i, name in rows
    ]


@pytest.mark.parametrize(
    "filters",
    [
        {},
        {"limit": 2},
        {"source": "herald"},
        {"source": "nobody"},
        {"since": NOW - timedelta(minutes=60)},  # at the boundary: included
        {"until": NOW - timedelta(minutes=60)},  # at the boundary: excluded
        {"since": NOW - timedelta(hours=2), "until": NOW - timedelta(minutes=1, seconds=1)},
        {"since": (NOW - timedelta(minutes=60)).astimezone(UTC).astimezone()},  # any zone
        {"since": NOW - timedelta(microseconds=30)},  # the newest is 60 µs older
        {"until": NOW - timedelta(microseconds=30)},
        {"search": "sovereign"},
        {"search": "소버린"},
        {"search": "gpu"},
        {"search": "50%_"},
        {"search": "0%x"},
        {"search": "a_b"},
        {"search": "k\\s"},
        {"search": "_", "source": "yna", "limit": 1},
    ],
    ids=repr,
)
async def test_list_items_matches_the_repository(db_file: Path, filters: dict[str, Any]) -> None:
    mine = sqlite_read.list_items(db_file, **filters)
    assert mine == await _by_repo(db_file, **filters)
    if not filters:
        assert len(mine) == 6
        assert all(i.published_at.tzinfo is UTC for i in mine)
        # JSON output shows true/false, not 1/0.
        assert [type(i.date_estimated) for i in mine] == [bool] * 6


async def test_get_item(db_file: Path) -> None:
    for expected in await _by_repo(db_file):
        assert sqlite_read.get_item(db_file, expected.id) == expected
    assert sqlite_read.get_item(db_file, 10_000) is None


def test_a_naive_time_is_refused(db_file: Path) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        sqlite_read.list_items(db_file, since=datetime(2025, 6, 18))


def test_a_file_without_the_tables_raises_sqlite_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        sqlite_read.list_items(empty)


def test_the_read_writes_nothing(db_file: Path) -> None:
    before = db_file.read_bytes()
    sqlite_read.list_items(db_file, search="x")
    assert db_file.read_bytes() == before


@pytest.mark.parametrize(
    ("url", "found"),
    [
        ("sqlite+aiosqlite:///{dir}/kmon.db", True),
        ("sqlite+aiosqlite:///{dir}/missing.db", False),  # the repository creates it
        ("sqlite+aiosqlite:///{dir}/kmon.db?timeout=30", False),
        ("sqlite+aiosqlite:///{dir}/k%6Dmon.db", False),
        ("sqlite+aiosqlite:///:memory:", False),
        ("sqlite+aiosqlite://", False),
        ("postgresql+asyncpg://kmon@db.internal/kmon", False),
    ],
)
def test_which_urls_are_read_directly(tmp_path: Path, url: str, found: bool) -> None:
    (tmp_path / "kmon.db").touch()
    expected = tmp_path / "kmon.db" if found else None
    assert sqlite_read.sqlite_file(url.format(dir=tmp_path)) == expected
