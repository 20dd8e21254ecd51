"""``kmon market``: the KRX trading calendar."""

from __future__ import annotations

from datetime import datetime

import click

from monitor.cli.common import to_json, when
from monitor.timefmt import kst, kst_iso, utcnow


@click.group("market")
def market_group() -> None:
    """The KRX trading calendar."""


@market_group.command("status")
@click.option("--at", "at", callback=when, help="Another moment (KST unless an offset is given).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def market_status(at: datetime | None, fmt: str) -> None:
    """Whether KRX is open now, and when the next session starts and ends (KST)."""
    from monitor import market

    status = market.market_status(at or utcnow())
    record = {
        "now": kst_iso(status.now),
        "open": status.is_open,
        "reason": status.reason,
        "session_day": status.session.day.isoformat(),
        "session_opens_at": kst_iso(status.session.opens_at),
        "session_closes_at": kst_iso(status.session.closes_at),
    }
    if fmt == "json":
        click.echo(to_json(record))
        return
    session = status.session
    span = f"{kst(session.opens_at)}–{kst(session.closes_at)[11:]} KST"
    if status.is_open:
        click.echo(f"KRX is open (session {span})")
    else:
        click.echo(f"KRX is closed ({status.reason}); next session {span}")
