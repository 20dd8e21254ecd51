"""Running and checking Alembic migrations from inside kmon."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from alembic import command
from monitor.db.dialect import one_at_a_time

_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def migrations_dir() -> Path:
    """The Alembic scripts: inside the package when installed from a wheel, else the
    ``alembic/`` folder of the source tree."""
    for candidate in (_PACKAGE_DIR / "migrations", _PACKAGE_DIR.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("kmon's migration scripts are missing from this installation")


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def head_revisions() -> set[str]:
    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def known_revisions() -> set[str]:
    """Every revision this kmon ships."""
    return {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def revisions_on(connection: Connection) -> set[str]:
    """The revisions the database behind ``connection`` is at (sync; for run_sync)."""
    return set(MigrationContext.configure(connection).get_current_heads())


async def current_revisions(engine: AsyncEngine) -> set[str]:
    """The revisions the database is at (empty for a fresh database)."""
    async with engine.connect() as conn:
        return await conn.run_sync(revisions_on)


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database to ``revision`` in one transaction: killed halfway, it leaves
    the database as it was."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            # Replicas starting together each upgrade: one at a time, and the later
            # ones find the database at head (the lock ends with the transaction).
            await one_at_a_time(conn, "kmon migrate")
            await conn.run_sync(_upgrade, revision)
        return
    # SQLite's DDL is transactional, but its Python driver begins a transaction only
    # before INSERT/UPDATE/DELETE: each CREATE TABLE would commit on its own, and a
    # kill between them leaves tables without their alembic_version row. Take the
    # transaction over from the driver.
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            await conn.run_sync(_upgrade, revision)
        except BaseException:
            await conn.exec_driver_sql("ROLLBACK")
            raise
        await conn.exec_driver_sql("COMMIT")
