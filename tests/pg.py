"""Creating and dropping a PostgreSQL database for a test run or a benchmark."""

from __future__ import annotations

from sqlalchemy.engine import make_url


async def recreate_database(url: str, *, create: bool = True) -> None:
    """Drop the database of ``url`` if it exists, then (with ``create``) make it anew.

    Connects to the server's ``postgres`` database as the URL's user.
    """
    import asyncpg  # type: ignore[import-untyped,unused-ignore]

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')
        if create:
            await conn.execute(f'CREATE DATABASE "{parsed.database}"')
    finally:
        await conn.close()
