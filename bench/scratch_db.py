"""The PostgreSQL side of a benchmark: a scratch database made and dropped per run."""

from __future__ import annotations

import asyncio
from typing import Any


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


def databases(args: Any) -> tuple[list[tuple[str, str]], str]:
    """The databases a benchmark runs on, from its ``--skip-sqlite``, ``--skip-pg`` and
    ``--pg-url``: ``("sqlite", "")`` and ``("postgresql", url)``, and the one line that
    says PostgreSQL was skipped ("" when it was not)."""
    from sqlalchemy.engine import make_url

    chosen: list[tuple[str, str]] = []
    if not args.skip_sqlite:
        chosen.append(("sqlite", ""))
    if args.skip_pg:
        return chosen, ""
    problem = postgres_problem(args.pg_url)
    if problem is not None:
        shown = make_url(args.pg_url).render_as_string(hide_password=True)
        return chosen, f"postgresql: skipped, {shown} not reachable ({problem})"
    chosen.append(("postgresql", args.pg_url))
    return chosen, ""
