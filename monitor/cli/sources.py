"""``kmon sources``: the configured sources and their state."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from adapters.records import KST
from monitor.cli.common import State, format_option, query
from monitor.cli.output import Format, clip, render
from monitor.timefmt import kst, kst_iso, utcnow

if TYPE_CHECKING:
    from monitor.db.schema import Source


@click.group()
def sources() -> None:
    """Configured sources and their state."""


@sources.command("list")
@format_option
@click.pass_obj
def sources_list(state: State, fmt: Format) -> None:
    """Each source: kind, status, last success, errors, next check (KST); for a dart
    source, the requests spent today (KST) of its daily budget."""
    from monitor.db import repo

    rows = query(state, repo.list_sources)
    budgets = {name: s.daily_budget for name, s in state.settings.dart_sources().items()}
    today = utcnow().astimezone(KST).date()

    now = utcnow()

    def polling(row: Source) -> str | None:
        """The replica polling the source right now, if any."""
        live = row.lease_until is not None and row.lease_until > now
        return row.lease_owner if live else None

    def budget(row: Source) -> str:
        if row.name not in budgets:
            return ""
        used = row.budget_used if row.budget_day == today else 0
        return f"{used}/{budgets[row.name]}"

    full = [
        {
            "name": s.name,
            "kind": s.kind,
            "enabled": s.enabled,
            "status": s.status,
            "last_success": kst_iso(s.last_success_at),
            "errors": s.error_count,
            "next_check": kst_iso(s.next_check_at),
            "last_error": s.last_error,
            "url": s.url,
            "budget": budget(s) or None,
            "polling": polling(s),
        }
        for s in rows
    ]
    table = [
        {
            "name": s.name,
            "kind": s.kind,
            "status": s.status if s.enabled else "disabled",
            "last success (KST)": kst(s.last_success_at),
            "errors": s.error_count,
            "next check (KST)": kst(s.next_check_at) if s.enabled else "",
            "last error": clip(s.last_error, 50) if s.error_count else "",
            **({"budget today": budget(s)} if budgets else {}),
            **({"polled by": polling(s) or ""} if any(polling(r) for r in rows) else {}),
        }
        for s in rows
    ]
    click.echo(render(full, fmt, table_rows=table))
