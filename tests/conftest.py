"""Shared fixtures: a fresh, migrated database per test, on SQLite and PostgreSQL.

Every test that takes ``db_url`` (or ``engine``/``sessionmaker``) runs once per
database. PostgreSQL comes from ``KMON_TEST_PG_URL`` (default: the local server,
database ``kmon_test_<pid>``, created for the run and dropped after it, so that
two runs on one machine never share a database). When it cannot be reached its tests are
skipped with one reason, unless ``KMON_TEST_REQUIRE_PG=1`` (CI), which fails them.
``KMON_TEST_DATABASES=sqlite`` limits a run to one database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from monitor.db import migrate
from monitor.db.engine import make_engine, make_sessionmaker
from monitor.db.schema import Base
from tests.pg import recreate_database

pytest_plugins = ["tests.servers"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PG_URL = os.environ.get(
    "KMON_TEST_PG_URL", f"postgresql+asyncpg://postgres@127.0.0.1:5432/kmon_test_{os.getpid()}"
)
REQUIRE_PG = os.environ.get("KMON_TEST_REQUIRE_PG") == "1"
DATABASES = [
    d.strip() for d in os.environ.get("KMON_TEST_DATABASES", "sqlite,postgresql").split(",")
]

_pg_problem: list[str] = []


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Tests see no KMON_* settings of the machine, no ./kmon.yaml and none of its state
    or cache directories; logging set up by a CLI test does not outlive it."""
    for name in list(os.environ):
        if name.startswith("KMON_") and not name.startswith("KMON_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    # The rules cache of each test its own, never the machine's (monitor/service/rulecache.py).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    logging.basicConfig(force=True, handlers=[logging.NullHandler()])


async def _migrate(url: str) -> None:
    engine = make_engine(url, null_pool=True)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


async def _recreate_postgres(url: str, *, create: bool = True) -> None:
    await recreate_database(url, create=create)
    if create:
        await _migrate(url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "kmon.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_ready() -> Iterator[str]:
    if not _pg_problem:
        try:
            asyncio.run(_recreate_postgres(PG_URL))
            _pg_problem.append("")
        except Exception as exc:  # any failure to reach or set up the server
            host = make_url(PG_URL).render_as_string(hide_password=True)
            _pg_problem.append(f"PostgreSQL not usable at {host}: {str(exc).splitlines()[0]}")
    if _pg_problem[0]:
        if REQUIRE_PG:
            pytest.fail(_pg_problem[0] + " (KMON_TEST_REQUIRE_PG=1)")
        pytest.skip(_pg_problem[0])
    yield PG_URL
    asyncio.run(_recreate_postgres(PG_URL, create=False))


async def _truncate(url: str) -> None:
    engine = make_engine(url, null_pool=True)
    try:
        async with engine.begin() as conn:
            tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty, migrated database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "kmon.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
    elif request.param == "postgresql":
        url = request.getfixturevalue("postgres_ready")
        asyncio.run(_truncate(url))
        yield url
    else:
        raise ValueError(f"unknown test database {request.param!r}")


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _pg_problem and _pg_problem[0]:
        terminalreporter.write_line(f"kmon: {_pg_problem[0]}; PostgreSQL tests were skipped.")
