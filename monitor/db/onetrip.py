"""A poll's store transaction in as few trips to SQLite's thread as it can take.

aiosqlite runs SQLite in a thread of its own, and every call SQLAlchemy makes on it
is one hand-over to that thread and back: a statement costs three (cursor, execute,
fetch or close), the commit one more. A poll answered 304 made four; one with new
items about nine, and those hand-overs, not SQLite, were most of the store path's
cost. :func:`poll_transaction` gives a poll a session as ``sessionmaker.begin()``
does, and on SQLite it also:

- runs the INSERT of new rows (``dialect.insert_new_rows``) as one call in the
  driver's thread, every row in it (:meth:`OneTrip.insert_new`);
- holds the source's state update (``repo.record_success`` and ``record_failure``)
  back, and runs it together with the COMMIT, as one call (:meth:`OneTrip.later`).

The session shares the connection and its transaction: whatever else the poll does
through it (restoring story clusters, storing signals and deliveries) is in the same
SQLite transaction, committed by the session when it was used. A poll answered 304
is one trip; a poll of new items, two; one that stores signals, a few more. Either
the whole transaction commits or none of it does, as before; the statements are the
ones SQLAlchemy compiles, with its own bind processing of the values.

PostgreSQL keeps ``sessionmaker.begin()``: asyncpg has no thread to hand over to.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

if TYPE_CHECKING:
    import aiosqlite

T = TypeVar("T")

# Where a session of :func:`poll_transaction` keeps its OneTrip (``Session.info``).
_KEY = "kmon.one_trip"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A statement compiled once for SQLite: its SQL and how to make its parameters."""

    sql: str
    names: tuple[str, ...]
    # The values the statement carries itself (status="ok", error_count + 1, …).
    values: Mapping[str, Any]
    processors: tuple[Callable[[Any], Any] | None, ...]

    def parameters(self, given: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional parameters for ``given`` (by bind name), as SQLAlchemy binds them."""
        out = []
        for name, process in zip(self.names, self.processors, strict=True):
            value = given[name] if name in given else self.values[name]
            out.append(value if process is None else process(value))
        return tuple(out)


def prepare(stmt: ClauseElement, dialect: Dialect, columns: Sequence[str] = ()) -> Prepared:
    """``stmt`` compiled by SQLAlchemy for ``dialect`` (positional parameters), with
    the bind processing of each parameter's type (datetimes as SQLite text).

    Only the hand-over to the driver is this module's own: SQLAlchemy writes the SQL
    and its types bind the values, so the rows are the ones a session writes."""
    compiled = cast(SQLCompiler, stmt.compile(dialect=dialect, column_keys=list(columns) or None))
    names = tuple(compiled.positiontup or ())
    binds = compiled.binds
    return Prepared(
        sql=compiled.string,
        names=names,
        values={name: binds[name].effective_value for name in names},
        processors=tuple(
            binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
        ),
    )


# Keyed by the engine's dialect: a process has one engine (tests a few), so a few entries.
@lru_cache(maxsize=64)
def _prepared_insert(
    dialect: Dialect,
    table: Table,
    columns: tuple[str, ...],
    keys: tuple[str, ...],
    returning: tuple[str, ...],
) -> Prepared:
    from sqlalchemy.dialects.sqlite import insert

    stmt = (
        insert(table)
        .on_conflict_do_nothing(index_elements=list(keys))
        .returning(*(table.c[name] for name in returning))
    )
    return prepare(stmt, dialect, columns)


@lru_cache(maxsize=64)
def _prepared(stmt: ClauseElement, dialect: Dialect) -> Prepared:
    return prepare(stmt, dialect)


@dataclass(slots=True)
class OneTrip:
    """The SQLite side of one poll transaction: its driver connection and the
    statements held back for the commit."""

    driver: aiosqlite.Connection
    dialect: Dialect
    pending: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # aiosqlite has no public call to run a function in its thread; its own
        # hand-over (Connection._execute, which its execute and commit use) is the one
        # queue every call of this connection goes through, so the order of the
        # transaction's statements is kept. SQLAlchemy's adapter reaches into it too.
        result: T = await self.driver._execute(fn, self.driver._conn)  # type: ignore[no-untyped-call]
        return result

    async def insert_new(
        self,
        table: Table,
        rows: Sequence[dict[str, Any]],
        *,
        keys: tuple[str, ...],
        returning: tuple[str, ...],
    ) -> list[tuple[Any, ...]]:
        """INSERT … ON CONFLICT (keys) DO NOTHING RETURNING ``returning`` for every row
        (all with the same keys), in one trip; the new rows only, in the order of
        ``rows``."""
        if not rows:
            return []
        columns = tuple(rows[0])
        prepared = _prepared_insert(self.dialect, table, columns, keys, returning)
        # Values the rows share (the source, the fetch time) are bound once.
        shared = {
            name: rows[0][name]
            for name in columns
            if all(row[name] is rows[0][name] for row in rows)
        }
        fixed = prepared.parameters({**rows[0], **shared})
        varying = [i for i, name in enumerate(prepared.names) if name not in shared]
        params = []
        for row in rows:
            one = list(fixed)
            for i in varying:
                name, process = prepared.names[i], prepared.processors[i]
                one[i] = row[name] if process is None else process(row[name])
            params.append(tuple(one))
        return await self._run(lambda conn: _insert_each(conn, prepared.sql, params))

    def later(self, stmt: ClauseElement, values: Mapping[str, Any]) -> None:
        """Run ``stmt`` with ``values`` at the commit, in the commit's trip."""
        prepared = _prepared(stmt, self.dialect)
        self.pending.append((prepared.sql, prepared.parameters(values)))

    async def flush(self) -> None:
        """Run the statements held back, without committing."""
        pending, self.pending = self.pending, []
        if pending:
            await self._run(lambda conn: _execute_each(conn, pending))

    async def commit(self) -> None:
        """The statements held back and the COMMIT, in one trip; rolled back in the same
        trip when one of them fails."""
        pending, self.pending = self.pending, []
        await self._run(lambda conn: _execute_and_commit(conn, pending))


def _insert_each(conn: sqlite3.Connection, sql: str, params: list[tuple[Any, ...]]) -> list[Any]:
    # One row a statement: sqlite3 keeps the statement prepared, and RETURNING tells
    # each row's fate (new, or already stored) without a second query.
    cursor = conn.cursor()
    try:
        new = []
        for one in params:
            cursor.execute(sql, one)
            row = cursor.fetchone()
            if row is not None:
                new.append(tuple(row))
        return new
    finally:
        cursor.close()


def _execute_each(conn: sqlite3.Connection, pending: list[tuple[str, tuple[Any, ...]]]) -> None:
    for sql, params in pending:
        conn.execute(sql, params).close()


def _execute_and_commit(
    conn: sqlite3.Connection, pending: list[tuple[str, tuple[Any, ...]]]
) -> None:
    try:
        _execute_each(conn, pending)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def one_trip(session: AsyncSession) -> OneTrip | None:
    """The OneTrip of a session of :func:`poll_transaction` on SQLite, else None."""
    trip = session.info.get(_KEY)
    return trip if isinstance(trip, OneTrip) else None


@asynccontextmanager
async def poll_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session in a transaction, committed on exit and rolled back on an exception,
    as ``sessionmaker.begin()``; on SQLite in as few trips to the driver's thread as
    the poll needs (see the module's docstring)."""
    engine = sessionmaker.kw.get("bind")
    if not isinstance(engine, AsyncEngine) or engine.dialect.name != "sqlite":
        async with sessionmaker.begin() as session:
            yield session
        return
    async with engine.connect() as conn:
        # The connection is not begun on SQLAlchemy's side: sqlite3 opens the
        # transaction at the first write, and closing the connection after the
        # driver's commit costs no trip (monitor/db/engine.py, _sqlite_reset).
        raw = await conn.get_raw_connection()
        driver = cast("aiosqlite.Connection", raw.driver_connection)
        trip = OneTrip(driver, engine.dialect)
        session = sessionmaker(bind=conn)
        session.info[_KEY] = trip
        used = False
        try:
            yield session
            if used := session.in_transaction():
                # The poll used the session (signals, a read): it commits the
                # transaction the two of them share.
                await trip.flush()
                await session.commit()
            else:
                await trip.commit()
        except BaseException:
            if used := session.in_transaction():
                await session.rollback()
            if driver.in_transaction:
                await driver.rollback()
            raise
        finally:
            # A session the poll never used holds nothing to give back (the
            # connection is closed below); closing it would cost a greenlet of
            # SQLAlchemy's for each 304.
            if used or session.identity_map:
                await session.close()
