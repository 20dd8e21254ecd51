"""This process as one replica of the daemon: its id, its heartbeat, its clock.

On PostgreSQL several ``kmon run`` processes share the work (monitor/db/leases.py);
each registers in ``replicas`` and heartbeats every ``replicas.heartbeat`` seconds.
The heartbeat is written on the database's clock and read back, which gives this
process its offset to that clock: :class:`DatabaseClock` is the local clock corrected
by it, so that every time a replica writes (a next check, a delivery's due time) is
on one clock, whatever the machine's own says.

On SQLite one process runs the daemon: :class:`SqliteRunLock` takes an exclusive
``flock`` beside the database file, which the kernel drops when the holder dies, so a
stale holder never blocks a start.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import structlog
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from monitor.config import ReplicaSettings
from monitor.db import leases
from monitor.db.dialect import is_postgres
from monitor.db.engine import sqlite_path
from monitor.timefmt import utcnow

log = structlog.get_logger("kmon.replica")

# A replica silent this long, holding nothing, is dropped from ``replicas``.
FORGET_AFTER = timedelta(days=1)


def replica_id(settings: ReplicaSettings, *, pid: int | None = None) -> str:
    """The configured name, or host, pid and a random suffix (unique across restarts)."""
    if settings.name:
        return settings.name
    host = socket.gethostname().split(".")[0][:40] or "host"
    return f"{host}-{pid or os.getpid()}-{secrets.token_hex(3)}"


class AnotherRun(Exception):
    """A second ``kmon run`` on one SQLite file."""


class SqliteRunLock:
    """``kmon run``'s hold on a SQLite database: one daemon per file.

    The lock is ``flock`` on ``<database>.run.lock``, which also says who holds it
    (pid, host, since) for the refusal's message. Not a PID file: the kernel releases
    the lock with its holder, so a killed daemon leaves nothing that blocks.
    """

    def __init__(self, database: Path) -> None:
        self.database = database
        self.path = database.with_name(database.name + ".run.lock")
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _holder(handle.read())
            handle.close()
            raise AnotherRun(
                f"another kmon run holds {self.database} since {holder}; "
                "use PostgreSQL for several replicas"
            ) from None
        handle.seek(0)
        handle.truncate()
        since = utcnow().isoformat(timespec="seconds")
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self._file.close()  # closing drops the flock
            self._file = None


def _holder(text: str) -> str:
    try:
        data = json.loads(text)
        return f"{data['since']} (pid {data['pid']} on {data['host']})"
    except (ValueError, KeyError, TypeError):
        return "an unknown time"


@contextlib.contextmanager
def single_sqlite_run(url: str) -> Iterator[None]:
    """Hold the run lock of a SQLite file database for the block; nothing otherwise."""
    path = sqlite_path(make_url(url))
    if path is None:
        yield
        return
    lock = SqliteRunLock(path)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


class DatabaseClock:
    """The local UTC clock plus the offset to the database's, measured at each
    heartbeat (half the round trip is the error). SQLite's offset stays 0."""

    def __init__(self, base: Callable[[], datetime] = utcnow) -> None:
        self.base = base
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return self.base() + self.offset

    def learn(self, db_time: datetime, sent: float, received: float) -> None:
        """``db_time`` was read between the monotonic instants ``sent`` and ``received``."""
        self.offset = db_time - (self.base() - timedelta(seconds=(received - sent) / 2))


async def read_offset(sessionmaker: async_sessionmaker[AsyncSession], clock: DatabaseClock) -> None:
    """Learn the database's clock once (start-up); a no-op on SQLite."""
    async with sessionmaker() as session:
        if not is_postgres(session):
            return
        sent = time.monotonic()
        db_time = await session.scalar(select(leases.db_clock(session, utcnow())))
        if db_time is not None:
            clock.learn(db_time, sent, time.monotonic())


class Replica:
    """This process in ``replicas``: registered at start, heartbeating, released at stop.

    ``healthy`` is False from a heartbeat that could not be written to the next that
    could: ``/readyz`` says unready meanwhile, and one line says so each way.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: ReplicaSettings,
        *,
        replica: str,
        clock: Callable[[], datetime],
        version: str,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.id = replica
        self.clock = clock
        self.version = version
        self.healthy = False
        self.sources_held = 0
        self.tasks_held = 0
        self.heartbeats = 0
        self.released = False
        self._task: asyncio.Task[None] | None = None

    async def _row(self, session: AsyncSession) -> None:
        """This replica's row, as at a fresh start."""
        await leases.register(
            session,
            self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=self.version,
            now=self.clock(),
        )

    async def register(self) -> None:
        async with self.sessionmaker.begin() as session:
            await self._row(session)
            forgotten = await leases.forget_replicas(
                session, before=self.clock() - FORGET_AFTER, now=self.clock()
            )
            # Earlier daemons of this host that died (a crash, then a restart by the
            # supervisor): their leases go now instead of after their end. The others'
            # expire, since only this host can tell that its own pids are gone.
            for other, pid in await leases.running_on(session, socket.gethostname()):
                if other != self.id and (pid == os.getpid() or not _alive(pid)):
                    released = await leases.release_all(session, other)
                    await leases.stopped(session, other, now=self.clock())
                    log.info("replica_gone", replica=other, pid=pid, released=released)
        self.healthy = True
        log.info("replica_registered", replica=self.id, forgotten=forgotten)

    async def beat(self) -> bool:
        """One heartbeat: write it, learn the clock offset, count the leases held."""
        try:
            async with (
                asyncio.timeout(self.settings.heartbeat),
                self.sessionmaker.begin() as session,
            ):
                sent = time.monotonic()
                db_time = await leases.heartbeat(session, self.id, now=self.clock())
                received = time.monotonic()
                if db_time is None:  # dropped meanwhile (a long outage): back in
                    await self._row(session)
                elif isinstance(self.clock, DatabaseClock) and is_postgres(session):
                    self.clock.learn(db_time, sent, received)
                self.sources_held, self.tasks_held = await leases.leases_held(
                    session, self.id, now=self.clock()
                )
        except Exception as exc:  # any driver's failure: the database is out of reach
            if self.healthy:
                log.warning("heartbeat_failed", replica=self.id, error=_first_line(exc))
            self.healthy = False
            return False
        if not self.healthy:
            log.info("heartbeat_restored", replica=self.id)
        self.healthy = True
        self.heartbeats += 1
        return True

    async def _beating(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat)
            await self.beat()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Replica]:
        """Registered and heartbeating for the block; its leases given back at the end."""
        await self.register()
        self._task = asyncio.create_task(self._beating(), name="replica-heartbeat")
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            if not self.released:
                await self.release()

    async def release(self) -> None:
        """Give back every lease at once (a drained replica), and say it stopped."""
        self.released = True
        try:
            async with (
                asyncio.timeout(self.settings.heartbeat),
                self.sessionmaker.begin() as session,
            ):
                released = await leases.release_all(session, self.id)
                await leases.stopped(session, self.id, now=self.clock())
        except Exception as exc:
            log.warning("replica_release_failed", replica=self.id, error=_first_line(exc))
            return
        log.info("replica_stopped", replica=self.id, released=released)


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (of any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
