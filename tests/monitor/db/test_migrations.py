"""The migrations and the table classes describe the same schema, on each database."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from monitor.cli.main import main
from monitor.db import SCHEMA_HEADS, migrate
from monitor.db.engine import make_engine, stored_revisions
from monitor.db.schema import Base

REPO = Path(__file__).resolve().parents[3]


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": False}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_the_migrated_schema_matches_the_table_classes(engine: AsyncEngine) -> None:
    # `engine` is migrated to head by the fixture, with Alembic, not create_all.
    async with engine.connect() as connection:
        diff = await connection.run_sync(_diff)
    assert diff == []


def test_a_killed_first_upgrade_on_sqlite_leaves_it_upgradable(tmp_path: Path) -> None:
    """SIGKILL at random points of `kmon db upgrade`: the next upgrade always completes."""
    rng = random.Random(20250618)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for attempt in range(6):
        db = tmp_path / f"kmon{attempt}.db"
        cfg = tmp_path / f"kmon{attempt}.yaml"
        cfg.write_text(f"database:\n  url: sqlite+aiosqlite:///{db}\n", encoding="utf-8")
        argv = [sys.executable, "-m", "monitor", "--config", str(cfg), "db", "upgrade"]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
        try:
            # The write-ahead log appears when the upgrade opens the database; the
            # migrations run in the few hundred milliseconds after it.
            wal = db.with_name(db.name + "-wal")
            while not wal.exists() and proc.poll() is None:
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.3))
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
        again = CliRunner().invoke(main, ["--config", str(cfg), "db", "upgrade"])
        assert again.exit_code == 0, again.output
        assert asyncio.run(_revisions(f"sqlite+aiosqlite:///{db}")) == migrate.head_revisions()


async def _revisions(url: str) -> set[str]:
    engine = make_engine(url, null_pool=True)
    try:
        return await migrate.current_revisions(engine)
    finally:
        await engine.dispose()


async def test_replicas_upgrading_at_once_on_postgresql_both_succeed(
    postgres_ready: str,
) -> None:
    """Three replicas start together on a fresh database, each running the upgrade."""
    from sqlalchemy.engine import make_url

    from tests.pg import recreate_database

    url = make_url(postgres_ready)
    fresh = url.set(database=f"{url.database}_upgrade").render_as_string(hide_password=False)
    await recreate_database(fresh)
    engines = [make_engine(fresh, null_pool=True) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate.upgrade(e) for e in engines))
        assert await migrate.current_revisions(engines[0]) == migrate.head_revisions()
    finally:
        for e in engines:
            await e.dispose()
        await recreate_database(fresh, create=False)


def test_the_schema_heads_kmon_knows_are_alembics() -> None:
    assert migrate.head_revisions() == SCHEMA_HEADS


async def test_stored_revisions_of_a_fresh_and_a_migrated_database(
    tmp_path: Path, db_url: str
) -> None:
    fresh = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}")
    migrated = make_engine(db_url)
    try:
        assert await stored_revisions(fresh) is None
        assert await stored_revisions(migrated) == SCHEMA_HEADS
        async with migrated.connect() as conn:
            assert await conn.run_sync(migrate.revisions_on) == SCHEMA_HEADS
    finally:
        await fresh.dispose()
        await migrated.dispose()
