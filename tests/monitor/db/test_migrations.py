"""The migrations and the table classes describe the same schema, on each database."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from monitor.db.schema import Base


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
