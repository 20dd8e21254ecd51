"""``kmon run``, ``kmon health`` and ``kmon poll``: the daemon, its probe, one burst."""

from __future__ import annotations

import sys
from typing import Any

import click

from monitor.cli.common import State, fail, run_async


@click.command()
@click.option("--migrate", is_flag=True, help="Upgrade the database first if it is behind.")
@click.pass_obj
def run(state: State, migrate: bool) -> None:
    """Run the daemon until SIGTERM or SIGINT.

    Serves /healthz, /readyz and /metrics (the `health` settings) and speaks systemd's
    notify protocol when $NOTIFY_SOCKET is set.
    """
    import asyncio

    from monitor.service.daemon import install_signal_handlers
    from monitor.service.health import HealthServerError
    from monitor.service.run import AnotherRun, run_service

    settings = state.settings

    async def main_loop() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        await run_service(settings, stop=stop, migrate_schema=migrate)

    try:
        run_async(main_loop)
    except HealthServerError as exc:
        fail(str(exc))
    except AnotherRun as exc:
        fail(str(exc), code=2)


@click.command()
@click.option(
    "--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True, help="Seconds."
)
@click.pass_obj
def health(state: State, timeout: float) -> None:
    """Ask the running daemon's /readyz; exit 0 when it is ready, 1 otherwise.

    Uses the `health` settings (host, port) to find it; prints one line.
    """
    import asyncio

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


@click.command()
@click.argument("sources", nargs=-1)
@click.option("--migrate", is_flag=True, help="Upgrade the database first if it is behind.")
@click.pass_obj
def poll(state: State, sources: tuple[str, ...], migrate: bool) -> None:
    """Poll the due sources (or the named ones) once and exit.

    Exit status 1 if any poll failed.
    """
    from monitor.service.runtime import UnknownSource, open_runtime, poll_once

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
