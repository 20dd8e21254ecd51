"""``kmon disclosures``: the stored OpenDART filings."""

from __future__ import annotations

from datetime import datetime

import click

from monitor.cli.common import State, format_option, query, stock_code, when
from monitor.cli.output import Format, clip, render
from monitor.timefmt import kst_iso


@click.group()
def disclosures() -> None:
    """Stored OpenDART filings."""


@disclosures.command("list")
@click.option("--ticker", callback=stock_code, help="Only this stock code (035420).")
@click.option("--since", callback=when, help="Received on or after (2d, 2025-06-18 …), KST.")
@click.option("--type", "report", help="Text in the report name (유상증자결정, 정정 …).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@format_option
@click.pass_obj
def disclosures_list(
    state: State,
    ticker: str | None,
    since: datetime | None,
    report: str | None,
    limit: int,
    fmt: Format,
) -> None:
    """Filings newest first, report names as DART writes them."""
    from monitor.db import disclosures as disclosures_repo

    rows = query(
        state,
        lambda session: disclosures_repo.list_disclosures(
            session, ticker=ticker, since=since, report=report, limit=limit
        ),
    )
    full = [
        {
            "item_id": d.item_id,
            "source": d.source,
            "rcept_no": d.rcept_no,
            "rcept_dt": d.rcept_dt.isoformat(),
            "corp_name": d.corp_name,
            "stock_code": d.stock_code,
            "report_nm": d.report_nm,
            "flr_nm": d.flr_nm,
            "flags": d.flags,
            "correction": d.correction,
            "url": d.url,
            "published_at": kst_iso(d.published_at),
        }
        for d in rows
    ]
    table = [
        {
            "received": d.rcept_dt.isoformat(),
            "ticker": d.stock_code or "",
            "company": d.corp_name,
            "report": clip(d.report_nm, 60),
            "filer": clip(d.flr_nm, 20),
            "rcept_no": d.rcept_no,
        }
        for d in rows
    ]
    click.echo(render(full, fmt, table_rows=table))
