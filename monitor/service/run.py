"""``kmon run`` as a service: the daemon, its health endpoints and systemd's protocol.

Order: watchdog pings start at once (a slow start-up must not look like a hang);
the runtime opens (schema check, sources synced); metrics are seeded from the
sources table; the health server listens; the schedule is armed and READY=1 sent.
The alert dispatcher runs beside the schedule. On ``stop``: STOPPING=1, running polls
drain, the dispatcher sends what they raised and stops, the health server closes last so
that ``/readyz`` says "unready" while the daemon drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable

import structlog
from apscheduler.schedulers.base import STATE_RUNNING
from sqlalchemy.ext.asyncio import AsyncEngine

from monitor.config import Settings
from monitor.ingest.context import PollContext
from monitor.ingest.quotes import QuoteCycle, quote_tasks
from monitor.service.daemon import Daemon, open_runtime, serve
from monitor.service.health import Readiness, serving
from monitor.service.metrics import AlertMetrics, Metrics, kmon_version, watch_replica
from monitor.service.replica import AnotherRun, Replica, single_sqlite_run

__all__ = ["AnotherRun", "dispatching", "run_service"]
from monitor.service.sdnotify import Notifier


def engine_of(ctx: PollContext) -> AsyncEngine:
    bind = ctx.sessionmaker.kw["bind"]
    assert isinstance(bind, AsyncEngine)
    return bind


@contextlib.asynccontextmanager
async def dispatching(ctx: PollContext, grace_period: float) -> AsyncIterator[None]:
    """The alert dispatcher, running beside the daemon.

    It stops after the daemon has drained its polls (so their alerts still go out),
    within ``grace_period``; a send cut short is sent again after its lease.
    """
    dispatcher = ctx.dispatcher
    if dispatcher is None:
        yield
        return
    done = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(done), name="alert-dispatcher")
    try:
        yield
    finally:
        # A last round sends what the drained polls raised (run() does it when woken).
        done.set()
        dispatcher.wake()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=grace_period)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def run_service(
    settings: Settings,
    *,
    stop: asyncio.Event,
    migrate_schema: bool = False,
    notifier: Notifier | None = None,
) -> None:
    """Serve until ``stop`` is set, then shut everything down cleanly.

    Raises :class:`AnotherRun` at once when another daemon holds the SQLite file.
    """
    with single_sqlite_run(settings.database.url.get_secret_value()):
        await _serve(settings, stop=stop, migrate_schema=migrate_schema, notifier=notifier)


async def _serve(
    settings: Settings, *, stop: asyncio.Event, migrate_schema: bool, notifier: Notifier | None
) -> None:
    notifier = notifier or Notifier.from_environ()
    watchdog = asyncio.create_task(notifier.watchdog(), name="systemd-watchdog")
    try:
        async with (
            open_runtime(settings, migrate_schema=migrate_schema, start_workers=True) as ctx,
            Replica(
                ctx.sessionmaker,
                settings.replicas,
                replica=ctx.replica,
                clock=ctx.clock,
                version=kmon_version(),
            ).running() as replica,
        ):
            structlog.contextvars.bind_contextvars(replica=replica.id)
            # What start-up allocated (modules, rules, the automaton) lives as long as the
            # process: out of the collector's sight, full collections stop the loop for a
            # few milliseconds instead of tens (bench/alert_dispatch.py: 60 → 7 ms).
            gc.freeze()
            quote_observers: list[Callable[[QuoteCycle], None]] = []
            daemon = Daemon(
                ctx,
                grace_period=settings.scheduler.grace_period,
                tasks=quote_tasks(ctx, settings.quotes, quote_observers),
            )
            async with contextlib.AsyncExitStack() as stack:
                if settings.health.enabled:
                    channels = settings.alerts.channels if ctx.dispatcher is not None else {}
                    metrics = Metrics(channels=channels)
                    watch_replica(metrics.registry, replica, engine_of(ctx))
                    await metrics.seed(ctx.sessionmaker)
                    ctx.observers.append(metrics.observe)
                    quote_observers.append(metrics.observe_quotes)
                    if ctx.dispatcher is not None:
                        alert_metrics = AlertMetrics(metrics.registry, channels=channels)
                        ctx.dispatcher.observers.append(
                            lambda o: alert_metrics.count(
                                o.channel, o.status, o.signals, o.chart_failures
                            )
                        )
                    readiness = Readiness(
                        ctx.sessionmaker,
                        scheduler_running=lambda: daemon.scheduler.state == STATE_RUNNING,
                        heartbeat_ok=lambda: replica.healthy,
                    )
                    await stack.enter_async_context(
                        serving(settings.health, readiness=readiness, metrics=metrics)
                    )

                def ready() -> None:
                    jobs = len(daemon.scheduler.get_jobs())
                    notifier.notify("READY=1", f"STATUS=polling {jobs} sources")

                async with dispatching(ctx, settings.scheduler.grace_period):
                    await serve(
                        daemon,
                        stop=stop,
                        on_ready=ready,
                        on_stopping=lambda: notifier.notify("STOPPING=1", "STATUS=stopping"),
                        # Drained: what this replica held is the others' at once, not
                        # after the lease (the dispatcher still sends the last alerts).
                        on_drained=replica.release,
                    )
    finally:
        structlog.contextvars.unbind_contextvars("replica")
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
        notifier.close()
