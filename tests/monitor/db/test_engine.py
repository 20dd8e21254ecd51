"""The SQLite engine: a connection comes back from the pool outside any transaction,
with no rollback spent on one that was already committed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from monitor.db.engine import make_engine, make_sessionmaker


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'kmon.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (n INTEGER)"))
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def rollbacks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Each rollback that reaches aiosqlite (the real one runs; this counts it)."""
    calls: list[int] = []
    real = aiosqlite.Connection.rollback

    async def counted(self: aiosqlite.Connection) -> None:
        calls.append(1)
        await real(self)

    monkeypatch.setattr(aiosqlite.Connection, "rollback", counted)
    return calls


async def test_a_committed_transaction_is_not_rolled_back_again(
    sqlite_engine: AsyncEngine, rollbacks: list[int]
) -> None:
    sessionmaker = make_sessionmaker(sqlite_engine)
    for n in range(3):
        async with sessionmaker.begin() as session:
            await session.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
    assert rollbacks == []
    async with sqlite_engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 3


async def test_a_connection_given_back_inside_a_transaction_is_rolled_back(
    sqlite_engine: AsyncEngine, rollbacks: list[int]
) -> None:
    async with sqlite_engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, aiosqlite.Connection)
        # Begun by the driver behind SQLAlchemy's back: only the pool can end it.
        await driver.execute("INSERT INTO t VALUES (1)")
        assert driver.in_transaction
    assert rollbacks == [1]
    async with sqlite_engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert not raw.driver_connection.in_transaction
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0


async def test_a_failed_session_leaves_nothing_behind(sqlite_engine: AsyncEngine) -> None:
    sessionmaker = make_sessionmaker(sqlite_engine)
    with pytest.raises(RuntimeError):
        async with sessionmaker.begin() as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
            raise RuntimeError("the poll failed")
    async with sqlite_engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0
