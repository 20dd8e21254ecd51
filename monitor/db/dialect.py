"""What differs between the two supported databases, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from monitor.db.onetrip import one_trip

# Rows per statement: SQLite binds at most 32,766 parameters, asyncpg 32,767.
BATCH = 1000


@cache
def _dialect_insert(name: str) -> Any:
    # Both dialects have INSERT … ON CONFLICT with the same SQLAlchemy API. Imported
    # on use: a command that only reads should not load the PostgreSQL dialect.
    if name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    raise RuntimeError(f"unsupported database dialect {name!r}")


def insert_for(session: AsyncSession) -> Any:
    """The dialect's ``insert`` construct (with ``on_conflict_do_*``) for ``session``."""
    return _dialect_insert(session.get_bind().dialect.name)


@cache
def _insert_new_stmt(
    dialect: str, table: Table, keys: tuple[str, ...], returning: tuple[str, ...]
) -> Any:
    # Built once per table and dialect: SQLAlchemy then compiles it once (cached) and
    # sends the rows in multi-row pages ("insertmanyvalues"), instead of building and
    # compiling a fresh multi-VALUES statement every poll.
    return (
        _dialect_insert(dialect)(table)
        .on_conflict_do_nothing(index_elements=list(keys))
        .returning(*(table.c[name] for name in returning))
    )


async def insert_new_rows(
    session: AsyncSession,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    keys: tuple[str, ...],
    returning: tuple[str, ...],
) -> list[tuple[Any, ...]]:
    """INSERT … ON CONFLICT (keys) DO NOTHING RETURNING ``returning``, new rows only.

    The database's unique key decides what is new, so restarts, races and replicas
    cannot duplicate a row. Runs on the session's connection, in its transaction.
    The returned rows are in no particular order: return a key column to map them.
    In a poll's transaction on SQLite (monitor/db/onetrip.py) it is one trip to the
    driver's thread.
    """
    if not rows:
        return []
    if (trip := one_trip(session)) is not None:
        return await trip.insert_new(table, rows, keys=keys, returning=returning)
    stmt = _insert_new_stmt(session.get_bind().dialect.name, table, keys, returning)
    conn = await session.connection()
    new: list[tuple[Any, ...]] = []
    for start in range(0, len(rows), BATCH):
        result = await conn.execute(stmt, list(rows[start : start + BATCH]))
        new.extend(tuple(row) for row in result.all())
    return new


def is_postgres(on: AsyncSession | AsyncConnection) -> bool:
    """Whether ``on`` (a session or a connection) talks to PostgreSQL."""
    dialect = on.dialect if isinstance(on, AsyncConnection) else on.get_bind().dialect
    return dialect.name == "postgresql"


async def one_at_a_time(on: AsyncSession | AsyncConnection, name: str) -> None:
    """Make the rest of the transaction of ``on`` run alone among those that call this
    with ``name``: processes starting together (replicas, a ``kmon poll`` beside the
    daemon) then sync the same rows, or migrate, one after the other.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: the database's write lock,
    taken by a write that changes nothing, before the transaction reads anything.
    """
    if is_postgres(on):
        await on.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
    else:
        await on.execute(text("UPDATE sources SET id = id WHERE 0 = 1"))
