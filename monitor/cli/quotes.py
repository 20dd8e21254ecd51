"""``kmon tickers`` and ``kmon quotes``: the followed tickers, their stored quotes and
daily bars, and the backfill of past bars."""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta
from typing import Any

import click

from monitor.cli.common import State, fail, format_option, query, run_async, when
from monitor.cli.output import Format, render
from monitor.timefmt import KST, kst_iso, utcnow


@click.group()
def tickers() -> None:
    """The followed tickers."""


@tickers.command("list")
@format_option
@click.pass_obj
def tickers_list(state: State, fmt: Format) -> None:
    """Code, kind, market and names in Korean and English."""
    rows = [
        {
            "code": t.code,
            "kind": t.kind,
            "market": t.market,
            "name_ko": t.name_ko,
            "name_en": t.name_en,
        }
        for t in state.settings.quotes.tickers
    ]
    click.echo(render(rows, fmt))


@click.group()
def quotes() -> None:
    """Stored quotes."""


def _names(state: State) -> dict[str, str]:
    return {t.code: t.name_en for t in state.settings.quotes.tickers}


def _quote_record(row: Any, names: dict[str, str], now: datetime) -> dict[str, Any]:
    return {
        "ticker": row.ticker,
        "name": names.get(row.ticker, ""),
        "price": row.price,
        "change": row.change,
        "change_pct": row.change_pct,
        "prev_close": row.prev_close,
        "volume": row.volume,
        "as_of": kst_iso(row.as_of),
        "source": row.source,
        "market_open": row.market_open,
        "age_seconds": round((now - row.as_of).total_seconds()),
    }


def _quote_table_row(record: dict[str, Any]) -> dict[str, Any]:
    pct = record["change_pct"]
    return {
        "ticker": record["ticker"],
        "name": record["name"],
        "price": f"{record['price']:,.2f}".removesuffix(".00"),
        "change %": "" if pct is None else f"{pct:+.2f}%",
        "as of (KST)": str(record["as_of"])[:19].replace("T", " "),
        "source": record["source"],
        "age": _age(record["age_seconds"]),
    }


def _age(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


@quotes.command("latest")
@format_option
@click.pass_obj
def quotes_latest(state: State, fmt: Format) -> None:
    """Each ticker's newest quote: price, change %, as-of in KST, source, age."""
    from monitor.db import quotes as quotes_repo

    now, names = utcnow(), _names(state)
    records = [_quote_record(r, names, now) for r in query(state, quotes_repo.latest_quotes)]
    click.echo(render(records, fmt, table_rows=[_quote_table_row(r) for r in records]))


@quotes.command("list")
@click.option("--ticker", help="Only this ticker (e.g. 035420, KOSPI).")
@click.option("--since", callback=when, help="As of at or after (1d, 2025-06-18 …).")
@click.option("--until", callback=when, help="As of before.")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@format_option
@click.pass_obj
def quotes_list(
    state: State,
    ticker: str | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    fmt: Format,
) -> None:
    """Stored quotes, newest first."""
    from monitor.db import quotes as quotes_repo

    now, names = utcnow(), _names(state)
    rows = query(
        state,
        lambda s: quotes_repo.list_quotes(s, ticker=ticker, since=since, until=until, limit=limit),
    )
    records = [_quote_record(r, names, now) for r in rows]
    click.echo(render(records, fmt, table_rows=[_quote_table_row(r) for r in records]))


@quotes.command("poll")
@click.option("--bars", is_flag=True, help="Refresh the daily bars too.")
@click.option("--migrate", is_flag=True, help="Upgrade the database first if it is behind.")
@click.pass_obj
def quotes_poll(state: State, bars: bool, migrate: bool) -> None:
    """One quote cycle now, whatever the market clock says; exit 1 if tickers are missing."""
    from monitor.ingest.quotes import poll_quotes, refresh_bars
    from monitor.service.runtime import open_runtime

    settings = state.settings

    async def once() -> Any:
        async with open_runtime(settings, migrate_schema=migrate) as ctx:
            if bars:
                await refresh_bars(ctx, settings.quotes)
            cycle = await poll_quotes(ctx, settings.quotes)
            if ctx.dispatcher is not None:
                await ctx.dispatcher.run_once()
            return cycle

    cycle = run_async(once)
    served = ", ".join(f"{p} {n}" for p, n in cycle.served_by.items()) or "none"
    click.echo(f"stored {cycle.stored} quotes (served by: {served})")
    for provider, error in cycle.failed.items():
        click.echo(f"{provider}: {error}")
    for ticker, reason in cycle.rejected:
        click.echo(f"rejected {ticker}: {reason}")
    if cycle.missing:
        click.echo(f"missing: {', '.join(cycle.missing)}")
        sys.exit(1)


def _day(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    """``--since``/``--until`` as a KST day (2025-06-18, or 30d back from today)."""
    at = when(ctx, param, value)
    return at.astimezone(KST).date() if at is not None else None


def _followed(state: State, codes: tuple[str, ...]) -> list[Any]:
    followed = {t.code: t for t in state.settings.quotes.tickers}
    unknown = [c for c in codes if c not in followed]
    if unknown:
        fail(f"not a followed ticker: {', '.join(unknown)} (see `kmon tickers list`)", code=2)
    return [followed[c] for c in dict.fromkeys(codes)] if codes else list(followed.values())


@quotes.command("backfill")
@click.option("--since", callback=_day, required=True, help="First day (2024-06-01, 1y …).")
@click.option("--until", callback=_day, help="Up to, not including, this day (default: today).")
@click.option("--ticker", "codes", multiple=True, help="Only this ticker (repeatable).")
@click.option("--migrate", is_flag=True, help="Upgrade the database first if it is behind.")
@click.pass_obj
def quotes_backfill(
    state: State, since: date, until: date | None, codes: tuple[str, ...], migrate: bool
) -> None:
    """Store the daily bars of a past range from the chart sources (Naver, else Yahoo).

    Idempotent: bars already stored as the source gives them are left alone. When a
    ticker gets no answer from any source, nothing is stored and each failure is
    named (exit 1).
    """
    from monitor import market
    from monitor.ingest.backfill import backfill_bars
    from monitor.service.runtime import open_runtime

    if until is not None and until <= since:
        fail(f"--until {until} is not after --since {since}", code=2)
    closed = market.last_closed_session(utcnow()).day
    if since > closed:
        fail(f"--since {since} is after the last closed session ({closed}): no bars yet", code=2)
    settings = state.settings
    tickers = _followed(state, codes)

    async def once() -> Any:
        async with open_runtime(settings, migrate_schema=migrate) as ctx:
            return await backfill_bars(
                ctx, settings.quotes, since=since, until=until, tickers=tickers
            )

    result = run_async(once)
    for t in result.tickers:
        if t.source is None:
            click.echo(f"{t.ticker}: no bars: {'; '.join(t.errors)}", err=True)
            continue
        span = f"{t.bars[0].day} to {t.bars[-1].day}" if t.bars else "none in the range"
        fallback = f"; {'; '.join(t.errors)}" if t.errors else ""
        click.echo(f"{t.ticker}: {len(t.bars)} bars, {span} (from {t.source}{fallback})")
    if result.failed:
        fail(f"nothing stored: no chart source answered for {len(result.failed)} ticker(s)")
    click.echo(
        f"stored {result.new} new bars, corrected {result.corrected}"
        f" ({result.since} to {result.until - timedelta(days=1)})"
    )


def _bar_record(row: Any) -> dict[str, Any]:
    return {
        "ticker": row.ticker,
        "day": row.day.isoformat(),
        "open": row.open,
        "high": row.high,
        "low": row.low,
        "close": row.close,
        "volume": row.volume,
        "source": row.source,
        "fetched_at": kst_iso(row.fetched_at),
    }


def _price(value: float | None) -> str:
    return "" if value is None else f"{value:,.2f}".removesuffix(".00")


@quotes.command("bars")
@click.option("--ticker", required=True, help="The ticker (035420, KOSPI …).")
@click.option("--since", callback=_day, required=True, help="From this day (2025-06-01, 30d …).")
@click.option("--until", callback=_day, help="Before this day.")
@format_option
@click.pass_obj
def quotes_bars(state: State, ticker: str, since: date, until: date | None, fmt: Format) -> None:
    """Stored daily bars of one ticker, oldest first."""
    from monitor.db import quotes as quotes_repo

    rows = query(state, lambda s: quotes_repo.list_bars(s, ticker=ticker, since=since, until=until))
    records = [_bar_record(r) for r in rows]
    table = [
        {
            "day": r["day"],
            "open": _price(r["open"]),
            "high": _price(r["high"]),
            "low": _price(r["low"]),
            "close": _price(r["close"]),
            "volume": "" if r["volume"] is None else f"{r['volume']:,}",
            "source": r["source"],
        }
        for r in records
    ]
    click.echo(render(records, fmt, table_rows=table))


@quotes.command("chart")
@click.argument("ticker")
@click.option("--since", callback=when, required=True, help="From (30d, 2025-06-18 …).")
@click.option("--until", callback=when, help="Before this time (default: now).")
@click.option("--vs", default="KOSPI", show_default=True, help="The index drawn beside it.")
@click.option("--no-vs", is_flag=True, help="Draw the ticker alone.")
@click.option("-o", "--output", required=True, help="The PNG file to write; - for stdout.")
@click.pass_obj
def quotes_chart(
    state: State,
    ticker: str,
    since: datetime,
    until: datetime | None,
    vs: str,
    no_vs: bool,
    output: str,
) -> None:
    """A chart of TICKER over a range, the index rebased beside it: quotes when the
    range is one or two sessions, daily closes otherwise."""
    from monitor.alerts.charting import ticker_chart
    from monitor.chart import available, render_async

    if not available():
        fail("charts need the charts extra: pip install 'kmon[charts]'", code=2)
    from monitor.cli.charts import chart_names, check_output, write_png

    check_output(output)
    end = until or utcnow()
    if end <= since:
        fail(f"--until {kst_iso(end)} is not after --since {kst_iso(since)}", code=2)
    names = chart_names(state)
    known = {*names, "KOSPI"}
    for code in (ticker, vs):
        if code not in known:
            fail(f"not a followed ticker: {code} (see `kmon tickers list`)", code=2)

    async def draw(session: Any) -> bytes:
        chart = await ticker_chart(
            session, ticker, since=since, until=end, vs=None if no_vs else vs, names=names
        )
        return (await render_async(chart)).png

    write_png(query(state, draw), output)
