"""``kmon``: run the daemon and ask it what it stored.

Exit status: 0 success; 1 a runtime failure (database unreachable or behind);
2 a usage or configuration error (bad option, bad filter, bad config file).
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import structlog
import yaml
from sqlalchemy.exc import DBAPIError, OperationalError

from monitor.cli.output import FORMATS, Format, clip, render
from monitor.config import ConfigError, Settings, load_settings
from monitor.logs import configure_logging
from monitor.timefmt import kst, kst_iso, parse_when, utcnow

T = TypeVar("T")

format_option = click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True
)


class State:
    """What the command group passes to its commands: where the config is."""

    def __init__(self, config: Path | None) -> None:
        self.config = config
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = load_settings(self.config)
            except ConfigError as exc:
                fail(f"config error: {exc}", code=2)
            configure_logging(self._settings.log_format, self._settings.log_level)
            structlog.contextvars.bind_contextvars(run_id=uuid.uuid4().hex[:12])
        return self._settings


def fail(message: str, *, code: int = 1) -> NoReturn:
    click.echo(f"kmon: {message}", err=True)
    sys.exit(code)


def run_async(func: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; database outages become one clear line and exit 1."""
    from monitor.rules.model import RulesError
    from monitor.service.daemon import SchemaNotCurrent

    try:
        return asyncio.run(func())  # type: ignore[arg-type]
    except SchemaNotCurrent as exc:
        fail(str(exc))
    except RulesError as exc:
        fail(f"rules error: {exc}", code=2)
    except (OperationalError, DBAPIError, OSError) as exc:
        fail(f"cannot use the database: {str(exc).splitlines()[0]}")


def when(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """A click callback turning ``--since``/``--until`` text into UTC."""
    if value is None:
        return None
    try:
        return parse_when(value, now=utcnow())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML config file (default: $KMON_CONFIG, else ./kmon.yaml, else built-in).",
)
@click.version_option(package_name="kmon")
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """kmon watches Korean AI-policy news and stores it for analysts."""
    if config is not None and not config.is_file():
        fail(f"config error: {config}: no such file", code=2)
    ctx.obj = State(config)


# --- the daemon ------------------------------------------------------------------


@main.command()
@click.option("--migrate", is_flag=True, help="Upgrade the database first if it is behind.")
@click.pass_obj
def run(state: State, migrate: bool) -> None:
    """Run the daemon until SIGTERM or SIGINT.

    Serves /healthz, /readyz and /metrics (the `health` settings) and speaks systemd's
    notify protocol when $NOTIFY_SOCKET is set.
    """
    from monitor.service.daemon import install_signal_handlers
    from monitor.service.health import HealthServerError
    from monitor.service.run import run_service

    settings = state.settings

    async def main_loop() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        await run_service(settings, stop=stop, migrate_schema=migrate)

    try:
        run_async(main_loop)
    except HealthServerError as exc:
        fail(str(exc))


@main.command()
@click.option(
    "--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True, help="Seconds."
)
@click.pass_obj
def health(state: State, timeout: float) -> None:
    """Ask the running daemon's /readyz; exit 0 when it is ready, 1 otherwise.

    Uses the `health` settings (host, port) to find it; prints one line.
    """
    from monitor.service.health import probe, readyz_url

    settings = state.settings.health
    if not settings.enabled:
        fail("the health endpoints are disabled (health.enabled is false)")
    url = readyz_url(settings)

    async def ask() -> tuple[bool, str]:
        try:
            async with asyncio.timeout(timeout):
                return await probe(url)
        except TimeoutError:
            return False, f"not ready: no answer from {url} within {timeout:g}s"

    ready, line = asyncio.run(ask())
    click.echo(line)
    sys.exit(0 if ready else 1)


@main.command()
@click.argument("sources", nargs=-1)
@click.option("--migrate", is_flag=True, help="Upgrade the database first if it is behind.")
@click.pass_obj
def poll(state: State, sources: tuple[str, ...], migrate: bool) -> None:
    """Poll the due sources (or the named ones) once and exit.

    Exit status 1 if any poll failed.
    """
    from monitor.service.daemon import UnknownSource, open_runtime, poll_once

    settings = state.settings

    async def once() -> list[Any]:
        async with open_runtime(settings, migrate_schema=migrate) as ctx:
            outcomes = await poll_once(ctx, list(sources) or None)
            if ctx.dispatcher is not None:
                await ctx.dispatcher.run_once()  # what is due now; the daemon sends the rest
            return outcomes

    try:
        outcomes = run_async(once)
    except UnknownSource as exc:
        fail(str(exc), code=2)
    for outcome in outcomes:
        detail = outcome.error or f"{len(outcome.new_item_ids)} new"
        click.echo(f"{outcome.source}: {outcome.status} ({detail})")
    if not outcomes:
        click.echo("no source is due")
    if any(o.status in ("error", "failed") for o in outcomes):
        sys.exit(1)


# --- config ----------------------------------------------------------------------


@main.group()
def config() -> None:
    """Show or check configuration."""


@config.command("show")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml")
@click.pass_obj
def config_show(state: State, fmt: str) -> None:
    """Print the effective configuration, secrets masked."""
    data = state.settings.masked()
    if fmt == "json":
        click.echo(_json(data))
    else:
        click.echo(yaml.safe_dump(data, allow_unicode=True, sort_keys=False).rstrip())


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def config_check(file: Path) -> None:
    """Validate FILE (with the environment applied); exit 2 if it is not valid."""
    if not file.is_file():
        fail(f"config error: {file}: no such file", code=2)
    try:
        settings = load_settings(file, search=False)
    except ConfigError as exc:
        fail(f"config error: {exc}", code=2)
    rules = ""
    if settings.rules.enabled:
        from monitor.rules.model import RulesError, load_rules

        try:
            ruleset = load_rules(settings.rules.file)
        except RulesError as exc:
            fail(f"rules error: {exc}", code=2)
        rules = f", {len(ruleset.rules)} rules"
    click.echo(f"{file}: ok ({len(settings.sources)} sources{rules})")


# --- database --------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database migrations."""


def _engine(state: State) -> Any:
    from monitor.db.engine import make_engine

    return make_engine(state.settings.database.url.get_secret_value(), null_pool=True)


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@click.pass_obj
def db_upgrade(state: State, revision: str) -> None:
    """Apply migrations up to REVISION."""
    from monitor.db import migrate

    async def go() -> set[str]:
        engine = _engine(state)
        try:
            await migrate.upgrade(engine, revision)
            return await migrate.current_revisions(engine)
        finally:
            await engine.dispose()

    click.echo(f"database at {', '.join(sorted(run_async(go)))}")


@db.command("current")
@click.pass_obj
def db_current(state: State) -> None:
    """Print the database's revision and whether it is current; exit 1 if behind."""
    from monitor.db import migrate

    async def go() -> set[str]:
        engine = _engine(state)
        try:
            return await migrate.current_revisions(engine)
        finally:
            await engine.dispose()

    current, heads = run_async(go), migrate.head_revisions()
    have = ", ".join(sorted(current)) or "empty"
    if current == heads:
        click.echo(f"{have} (current)")
    else:
        click.echo(f"{have} (behind: head is {', '.join(sorted(heads))}; run `kmon db upgrade`)")
        sys.exit(1)


# --- read side -------------------------------------------------------------------


def query(state: State, func: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``func(session)`` against the configured database and return its result."""
    from monitor.db.engine import make_engine, make_sessionmaker

    async def go() -> T:
        engine = make_engine(state.settings.database.url.get_secret_value(), null_pool=True)
        try:
            async with make_sessionmaker(engine)() as session:
                return await func(session)
        finally:
            await engine.dispose()

    return run_async(go)


@main.group()
def sources() -> None:
    """Configured sources and their state."""


@sources.command("list")
@format_option
@click.pass_obj
def sources_list(state: State, fmt: Format) -> None:
    """Each source: kind, status, last success, errors, next check (KST)."""
    from monitor.db import repo

    rows = query(state, repo.list_sources)
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
        }
        for s in rows
    ]
    click.echo(render(full, fmt, table_rows=table))


@main.group()
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
@click.argument("item_id", type=int)
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
        click.echo(_json(record))
        return
    for key, value in record.items():
        if key != "summary":
            click.echo(f"{key + ':':<15} {'' if value is None else value}")
    click.echo("")
    click.echo(record["summary"])


# --- market and quotes -----------------------------------------------------------


@main.group("market")
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
        click.echo(_json(record))
        return
    session = status.session
    span = f"{kst(session.opens_at)}–{kst(session.closes_at)[11:]} KST"
    if status.is_open:
        click.echo(f"KRX is open (session {span})")
    else:
        click.echo(f"KRX is closed ({status.reason}); next session {span}")


@main.group()
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


@main.group()
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
    from monitor.service.daemon import open_runtime

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


# The other command groups live in their own modules; they import from this one.
from monitor.cli.alerts import alerts  # noqa: E402
from monitor.cli.rules import rules, signals  # noqa: E402

main.add_command(rules)
main.add_command(signals)
main.add_command(alerts)
