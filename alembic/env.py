"""Alembic environment: async engines, the URL from kmon's own settings.

kmon runs migrations through :mod:`monitor.db.migrate`, which hands over an open
connection; the ``alembic`` command line builds its own engine from the settings.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import Connection

from alembic import context
from monitor.db.engine import make_engine
from monitor.db.schema import Base

config = context.config
target_metadata = Base.metadata


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations(url: str) -> None:
    engine = make_engine(url, null_pool=True)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
        return
    url = config.attributes.get("url")
    if url is None:
        from monitor.config import load_settings

        url = load_settings().database.url.get_secret_value()
    asyncio.run(run_async_migrations(url))


if context.is_offline_mode():
    raise SystemExit("kmon's migrations run online only: use `kmon db upgrade`.")
run_migrations_online()
