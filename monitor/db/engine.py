"""One engine and one session factory per process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

# How long a SQLite writer waits for another process (the CLI, a backup) to finish.
SQLITE_BUSY_TIMEOUT_MS = 5000
# WAL pages (4 KiB) before an automatic checkpoint; SQLite's default is 1000. Each
# poll is its own small transaction, and a checkpoint copies (and fsyncs) every page
# changed since the last one: checkpointing less often copies a page that many polls
# touched (the published_at index) once instead of many times. The WAL file grows to
# about 40 MB; what a commit guarantees is unchanged.
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10_000


def sqlite_path(url: URL) -> Path | None:
    """The file behind a SQLite URL, or None for memory databases and other dialects."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def make_engine(
    url: str, *, pool_size: int = 10, echo: bool = False, null_pool: bool = False
) -> AsyncEngine:
    """An engine for ``url``; SQLite files get WAL, foreign keys and a busy timeout.

    SQLite allows one writer at a time, so the daemon holds a single connection and
    its writers queue in-process instead of failing with "database is locked".
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and "sslmode" in parsed.query:
        # libpq spells it sslmode; asyncpg takes the same values as ssl.
        parsed = parsed.difference_update_query(["sslmode"]).update_query_dict(
            {"ssl": parsed.query["sslmode"]}
        )
    kwargs: dict[str, Any] = {"echo": echo}
    if null_pool:
        kwargs["poolclass"] = NullPool
    elif parsed.get_backend_name() == "sqlite":
        # The pool's reset: _sqlite_reset.
        kwargs.update(pool_size=1, max_overflow=0, pool_timeout=300, pool_reset_on_return=None)
    else:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    if (path := sqlite_path(parsed)) is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "reset", _sqlite_reset)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across application crashes in WAL mode; only a power cut can
    # lose the last transactions, which the next poll fetches again.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_reset(dbapi_connection: Any, record: Any, state: Any) -> None:
    # The pool rolls back every connection it takes back, committed or not; with
    # aiosqlite that is one more trip to the driver's thread for every transaction
    # (a fifth of a poll's that ends in a 304). Only a connection still inside a
    # transaction needs it; sqlite3 knows without a trip (SQLAlchemy's documented
    # "reset" event in place of pool_reset_on_return).
    if state.terminate_only or not state.asyncio_safe:
        return
    if record.driver_connection is not None and record.driver_connection.in_transaction:
        dbapi_connection.rollback()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def stored_revisions(engine: AsyncEngine) -> frozenset[str] | None:
    """The revisions in the database's ``alembic_version`` table, or None when it has
    none (a fresh database): what Alembic would read, in one query and without it."""
    async with engine.connect() as conn:
        try:
            rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
        except DBAPIError:  # no such table; the connection is rolled back on exit
            return None
        return frozenset(row[0] for row in rows)
