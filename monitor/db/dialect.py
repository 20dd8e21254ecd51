"""What differs between the two supported databases, in one place."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

# Both dialects have INSERT … ON CONFLICT with the same SQLAlchemy API.
_INSERTS: dict[str, Any] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def insert_for(session: AsyncSession) -> Any:
    """The dialect's ``insert`` construct (with ``on_conflict_do_*``) for ``session``."""
    name = session.get_bind().dialect.name
    try:
        return _INSERTS[name]
    except KeyError:
        raise RuntimeError(f"unsupported database dialect {name!r}") from None
