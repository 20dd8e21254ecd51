"""What differs between the two supported databases, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

# Both dialects have INSERT … ON CONFLICT with the same SQLAlchemy API.
_INSERTS: dict[str, Any] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}

# Rows per statement: SQLite binds at most 32,766 parameters, asyncpg 32,767.
BATCH = 1000


def insert_for(session: AsyncSession) -> Any:
    """The dialect's ``insert`` construct (with ``on_conflict_do_*``) for ``session``."""
    name = session.get_bind().dialect.name
    try:
        return _INSERTS[name]
    except KeyError:
        raise RuntimeError(f"unsupported database dialect {name!r}") from None


@cache
def _insert_new_stmt(
    dialect: str, table: Table, keys: tuple[str, ...], returning: tuple[str, ...]
) -> Any:
    # Built once per table and dialect: SQLAlchemy then compiles it once (cached) and
    # sends the rows in multi-row pages ("insertmanyvalues"), instead of building and
    # compiling a fresh multi-VALUES statement every poll.
    return (
        _INSERTS[dialect](table)
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
    """
    if not rows:
        return []
    name = session.get_bind().dialect.name
    if name not in _INSERTS:
        raise RuntimeError(f"unsupported database dialect {name!r}")
    stmt = _insert_new_stmt(name, table, keys, returning)
    conn = await session.connection()
    new: list[tuple[Any, ...]] = []
    for start in range(0, len(rows), BATCH):
        result = await conn.execute(stmt, list(rows[start : start + BATCH]))
        new.extend(tuple(row) for row in result.all())
    return new


async def insert_new(
    session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]], *, keys: tuple[str, ...]
) -> list[int]:
    """Like :func:`insert_new_rows`: the ids of the new rows."""
    found = await insert_new_rows(session, table, rows, keys=keys, returning=("id",))
    return [row[0] for row in found]
