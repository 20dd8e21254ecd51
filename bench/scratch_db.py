"""The PostgreSQL side of a benchmark: a scratch database made and dropped per run."""

from __future__ import annotations

import asyncio


async def fresh_postgres(url: str, *, drop_only: bool = False) -> None:
    """Drop the database of ``url`` and (unless ``drop_only``) create it empty."""
    from tests.pg import recreate_database

    await recreate_database(url, create=not drop_only)


def postgres_problem(url: str) -> str | None:
    """Why the server of ``url`` cannot be used (one line), or None when it can."""
    try:
        asyncio.run(fresh_postgres(url, drop_only=True))
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None
