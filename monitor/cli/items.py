"""``kmon items``: the stored news items."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from monitor.cli.common import (
    ROW_ID,
    State,
    fail,
    format_option,
    query,
    stock_code,
    to_json,
    when,
)
from monitor.cli.output import Format, clip, render
from monitor.stored import StoredItem
from monitor.timefmt import kst, kst_iso

T = TypeVar("T")


def _sqlite_file(state: State) -> Path | None:
    """The database's file when it is SQLite: ``kmon items`` reads it with ``sqlite3``
    alone (:mod:`monitor.db.sqlite_read`) instead of waiting for SQLAlchemy to import."""
    from monitor.db.sqlite_read import sqlite_file

    return sqlite_file(state.settings.database.url.get_secret_value())


def _read_file(read: Callable[[], T]) -> T:
    import sqlite3

    try:
        return read()
    except sqlite3.Error as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")


@click.group()
def items() -> None:
    """Stored news items."""


@items.command("list")
@click.option("--source", help="Only this source.")
@click.option("--since", callback=when, help="Published at or after (2d, 36h, 2025-06-18 …).")
@click.option("--until", callback=when, help="Published before.")
@click.option("--search", help="Text in the title or summary (case-insensitive).")
@click.option("--ticker", callback=stock_code, help="Only the disclosures of this stock code.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@format_option
@click.pass_obj
def items_list(
    state: State,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    search: str | None,
    ticker: str | None,
    limit: int,
    fmt: Format,
) -> None:
    """Items newest first; times in KST."""
    filters: dict[str, Any] = {
        "source": source,
        "since": since,
        "until": until,
        "search": search,
        "ticker": ticker,
        "limit": limit,
    }
    path = _sqlite_file(state)
    if path is not None:
        from monitor.db import sqlite_read

        rows = _read_file(lambda: sqlite_read.list_items(path, **filters))
    else:
        from monitor.db import repo

        flt = repo.ItemFilter(**filters)
        pairs = query(state, lambda session: repo.list_items(session, flt))
        rows = [repo.stored_item(item, name) for item, name in pairs]
    full = [_item_record(item) for item in rows]
    table = [
        {
            "id": item.id,
            "published (KST)": kst(item.published_at) + ("*" if item.date_estimated else ""),
            "source": item.source,
            "title": clip(item.title, 70),
        }
        for item in rows
    ]
    click.echo(render(full, fmt, table_rows=table))


def _item_record(item: StoredItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "source": item.source,
        "published_at": kst_iso(item.published_at),
        "date_estimated": item.date_estimated,
        "fetched_at": kst_iso(item.fetched_at),
        "title": item.title,
        "url": item.url,
        "language": item.language,
        "author": item.author,
        "external_id": item.external_id,
        "summary": item.summary,
    }


@items.command("show")
@click.argument("item_id", type=ROW_ID)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_obj
def items_show(state: State, item_id: int, fmt: str) -> None:
    """One item in full."""
    path = _sqlite_file(state)
    if path is not None:
        from monitor.db import sqlite_read

        item = _read_file(lambda: sqlite_read.get_item(path, item_id))
    else:
        from monitor.db import repo

        pair = query(state, lambda session: repo.get_item(session, item_id))
        item = None if pair is None else repo.stored_item(*pair)
    if item is None:
        fail(f"no item with id {item_id}")
    record = _item_record(item)
    if fmt == "json":
        click.echo(to_json(record))
        return
    for key, value in record.items():
        if key != "summary":
            click.echo(f"{key + ':':<15} {'' if value is None else value}")
    click.echo("")
    click.echo(record["summary"])
