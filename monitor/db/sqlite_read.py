"""Stored items read from a SQLite file with the standard library's ``sqlite3`` alone.

``kmon items`` answers from here when the database is a SQLite file: importing
SQLAlchemy with its asyncio layer takes 0.3–0.4 s on a small machine, more than the
rest of the command together. The query is that of :func:`monitor.db.repo.list_items`
and :func:`monitor.db.repo.get_item`, written out in SQL (a test runs both over the same
rows); any other database goes through the repository.

Values are read the way SQLAlchemy writes them on SQLite: datetimes as naive UTC text
(``YYYY-MM-DD HH:MM:SS.ffffff``), booleans as 0/1.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.stored import StoredItem

_SCHEME = "sqlite+aiosqlite:///"
# What SQLite waits for a writer (the daemon) to finish, as the engine does.
_BUSY_TIMEOUT_S = 5.0

_SELECT = """
SELECT items.id, sources.name, items.external_id, items.url, items.title, items.summary,
       items.author, items.language, items.published_at, items.date_estimated,
       items.fetched_at
FROM items JOIN sources ON items.source_id = sources.id
"""


def sqlite_file(url: str) -> Path | None:
    """The existing file behind a plain ``sqlite+aiosqlite:///PATH`` URL, else None.

    None too for URLs with options or escapes, and for files not there yet: those take
    the repository's way, which behaves as the daemon does.
    """
    if not url.startswith(_SCHEME):
        return None
    database = url.removeprefix(_SCHEME)
    if not database or database == ":memory:" or any(c in database for c in "?%#"):
        return None
    path = Path(database)
    return path if path.is_file() else None


def _text(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r} given to a UTC column")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _item(row: tuple[Any, ...]) -> StoredItem:
    (id_, source, external_id, url, title, summary, author, language) = row[:8]
    return StoredItem(
        id=id_,
        source=source,
        external_id=external_id,
        url=url,
        title=title,
        summary=summary,
        author=author,
        language=language,
        published_at=_moment(row[8]),
        date_estimated=bool(row[9]),
        fetched_at=_moment(row[10]),
    )


def _run(path: Path, sql: str, params: dict[str, Any]) -> list[StoredItem]:
    connection = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S)
    try:
        connection.execute("PRAGMA query_only = ON")
        return [_item(row) for row in connection.execute(sql, params)]
    finally:
        connection.close()


def list_items(
    path: Path,
    *,
    source: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    search: str | None = None,
    ticker: str | None = None,
    limit: int = 50,
) -> list[StoredItem]:
    """Items newest first (by publication time); raises :class:`sqlite3.Error`.

    ``ticker`` keeps the disclosures of that stock code."""
    where: list[str] = []
    params: dict[str, Any] = {"limit": limit}
    if source:
        where.append("sources.name = :source")
        params["source"] = source
    if ticker:
        where.append("items.id IN (SELECT item_id FROM disclosures WHERE stock_code = :ticker)")
        params["ticker"] = ticker
    if since:
        where.append("items.published_at >= :since")
        params["since"] = _text(since)
    if until:
        where.append("items.published_at < :until")
        params["until"] = _text(until)
    if search:
        # Case-insensitive substring on title and summary; LIKE wildcards are escaped.
        needle = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["pattern"] = f"%{needle.lower()}%"
        where.append(
            "(lower(items.title) LIKE :pattern ESCAPE '\\'"
            " OR lower(items.summary) LIKE :pattern ESCAPE '\\')"
        )
    sql = _SELECT + (f"WHERE {' AND '.join(where)}\n" if where else "")
    sql += "ORDER BY items.published_at DESC, items.id DESC\nLIMIT :limit"
    return _run(path, sql, params)


def get_item(path: Path, item_id: int) -> StoredItem | None:
    """The item ``item_id``, or None; raises :class:`sqlite3.Error`."""
    found = _run(path, _SELECT + "WHERE items.id = :id", {"id": item_id})
    return found[0] if found else None
