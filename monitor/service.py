"""``kmon run`` as a service: the daemon, its health endpoints and systemd's protocol.

Order: watchdog pings start at once (a slow start-up must not look like a hang);
the runtime opens (schema check, sources synced); metrics are seeded from the
sources table; the health server listens; the schedule is armed and READY=1 sent.
On ``stop``: STOPPING=1, running polls drain, the health server closes last so that
``/readyz`` says "unready" while the daemon drains.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from apscheduler.schedulers.base import STATE_RUNNING

from monitor.config import Settings
from monitor.daemon import Daemon, open_runtime, serve
from monitor.health import Readiness, serving
from monitor.metrics import Metrics
from monitor.quotes import QuoteCycle, quote_tasks
from monitor.sdnotify import Notifier


async def run_service(
    settings: Settings,
    *,
    stop: asyncio.Event,
    migrate_schema: bool = False,
    notifier: Notifier | None = None,
) -> None:
    """Serve until ``stop`` is set, then shut everything down cleanly."""
    notifier = notifier or Notifier.from_environ()
    watchdog = asyncio.create_task(notifier.watchdog(), name="systemd-watchdog")
    try:
        async with open_runtime(settings, migrate_schema=migrate_schema) as ctx:
            quote_observers: list[Callable[[QuoteCycle], None]] = []
            daemon = Daemon(
                ctx,
                grace_period=settings.scheduler.grace_period,
                tasks=quote_tasks(ctx, settings.quotes, quote_observers),
            )
            async with contextlib.AsyncExitStack() as stack:
                if settings.health.enabled:
                    metrics = Metrics()
                    await metrics.seed(ctx.sessionmaker)
                    ctx.observers.append(metrics.observe)
                    quote_observers.append(metrics.observe_quotes)
                    readiness = Readiness(
                        ctx.sessionmaker,
                        scheduler_running=lambda: daemon.scheduler.state == STATE_RUNNING,
                    )
                    await stack.enter_async_context(
                        serving(settings.health, readiness=readiness, metrics=metrics)
                    )

                def ready() -> None:
                    jobs = len(daemon.scheduler.get_jobs())
                    notifier.notify("READY=1", f"STATUS=polling {jobs} sources")

                await serve(
                    daemon,
                    stop=stop,
                    on_ready=ready,
                    on_stopping=lambda: notifier.notify("STOPPING=1", "STATUS=stopping"),
                )
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watchdog
        notifier.close()
