"""``kmon items``: the stored news items."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from monitor.cli.common import ROW_ID, State, fail, format_option, query, to_json, when
from monitor.cli.output import Format, clip, render
from monitor.timefmt import kst, kst_iso


@click.group()
def items() -> None:
    """Stored news items."""


@items.command("list")
@click.option("--source", help="Only this source.")
@click.option("--since", callback=when, help="Published at or after (2d, 36h, 2025-06-18 …).")
@click.option("--until", callback=when, help="Published before.")
@click.option("--search", help="Text in the title or summary (case-insensitive).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@format_option
@click.pass_obj
def items_list(
    state: State,
    source: str | None,
    since: datetime | None,
    until: datetime | None,
    search: str | None,
    limit: int,
    fmt: Format,
) -> None:
    """Items newest first; times in KST."""
    from monitor.db import repo

    flt = repo.ItemFilter(source=source, since=since, until=until, search=search, limit=limit)
    rows = query(state, lambda session: repo.list_items(session, flt))
    full = [_item_record(item, name) for item, name in rows]
    table = [
        {
            "id": item.id,
            "published (KST)": kst(item.published_at) + ("*" if item.date_estimated else ""),
            "source": name,
            "title": clip(item.title, 70),
        }
        for item, name in rows
    ]
    click.echo(render(full, fmt, table_rows=table))


def _item_record(item: Any, source: str) -> dict[str, Any]:
    return {
        "id": item.id,
        "source": source,
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
    from monitor.db import repo

    found = query(state, lambda session: repo.get_item(session, item_id))
    if found is None:
        fail(f"no item with id {item_id}")
    record = _item_record(*found)
    if fmt == "json":
        click.echo(to_json(record))
        return
    for key, value in record.items():
        if key != "summary":
            click.echo(f"{key + ':':<15} {'' if value is None else value}")
    click.echo("")
    click.echo(record["summary"])
