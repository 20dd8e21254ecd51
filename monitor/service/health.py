"""The daemon's HTTP endpoints for supervisors and scrapers.

``/healthz``  200 whenever the event loop answers (liveness).
``/readyz``   200 when the database answers, its migrations are current, the
              scheduler runs and the replica's heartbeat is written; else 503.
              The JSON body names each check's state.
``/metrics``  Prometheus text (or OpenMetrics, if the scraper asks for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable

import aiohttp
import structlog
from aiohttp import web
from prometheus_client.exposition import choose_encoder
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from yarl import URL

from monitor.config import HealthSettings
from monitor.db import migrate
from monitor.service.metrics import Metrics

log = structlog.get_logger("kmon.health")

# Short enough for a supervisor's probe timeout (Docker's default is 30 s, Kubernetes'
# 1 s is raised by every sane deployment), long enough for a busy SQLite writer.
READY_TIMEOUT = 2.0


class HealthServerError(Exception):
    """The endpoints could not be served (e.g. the port is taken)."""


class Readiness:
    """The checks behind ``/readyz``."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        scheduler_running: Callable[[], bool],
        heartbeat_ok: Callable[[], bool] | None = None,
        timeout: float = READY_TIMEOUT,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.scheduler_running = scheduler_running
        # A replica whose heartbeat cannot be written is not ready: its leases run out
        # and the other replicas take its work.
        self.heartbeat_ok = heartbeat_ok
        self.timeout = timeout
        self.heads = migrate.head_revisions()
        self._was_ready: bool | None = None

    async def check(self) -> tuple[bool, dict[str, str]]:
        """Whether the daemon is ready, and each check's state ("ok" or what is wrong)."""
        checks: dict[str, str] = {}
        try:
            async with asyncio.timeout(self.timeout), self.sessionmaker() as session:
                await session.execute(text("SELECT 1"))
                current = await session.run_sync(_revisions)
        except TimeoutError:
            checks["database"] = f"no answer within {self.timeout:g}s"
            checks["migrations"] = "unknown"
        except Exception as exc:  # any driver's failure to connect or answer
            checks["database"] = f"unreachable: {_first_line(exc)}"
            checks["migrations"] = "unknown"
        else:
            checks["database"] = "ok"
            checks["migrations"] = (
                "ok"
                if current == self.heads
                else f"database at {', '.join(sorted(current)) or 'empty'}, "
                f"this kmon needs {', '.join(sorted(self.heads))}"
            )
        checks["scheduler"] = "ok" if self.scheduler_running() else "not running"
        if self.heartbeat_ok is not None:
            checks["heartbeat"] = "ok" if self.heartbeat_ok() else "cannot be written"
        ready = all(state == "ok" for state in checks.values())
        if ready != self._was_ready:
            # One line when readiness flips, not one per probe.
            failing = {name: state for name, state in checks.items() if state != "ok"}
            if failing:
                log.warning("readiness", ready=ready, failing=failing)
            else:
                log.info("readiness", ready=ready)
            self._was_ready = ready
        return ready, checks


def _revisions(session: Session) -> set[str]:
    return migrate.revisions_on(session.connection())


def _first_line(exc: BaseException) -> str:
    message = str(exc).strip()
    return message.splitlines()[0] if message else type(exc).__name__


def make_app(readiness: Readiness, metrics: Metrics | None) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        ready, checks = await readiness.check()
        body = {"status": "ready" if ready else "unready", "checks": checks}
        return web.json_response(body, status=200 if ready else 503)

    async def scrape(request: web.Request) -> web.Response:
        if metrics is None:
            raise web.HTTPNotFound()
        await metrics.refresh(readiness.sessionmaker)
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(metrics.registry), headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", scrape)
    return app


class HealthServer:
    """The endpoints on ``settings.host:settings.port`` (port 0: a free one)."""

    def __init__(
        self, settings: HealthSettings, *, readiness: Readiness, metrics: Metrics | None
    ) -> None:
        self.settings = settings
        # No access log: a scraper every few seconds would drown the poll lines.
        self._runner = web.AppRunner(make_app(readiness, metrics), access_log=None)
        self.port: int | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise HealthServerError(
                f"cannot serve health endpoints on {self.settings.host}:{self.settings.port}: "
                f"{os.strerror(exc.errno) if exc.errno else exc}"
            ) from exc
        self.port = int(self._runner.addresses[0][1])
        log.info("health_server_started", host=self.settings.host, port=self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()


@contextlib.asynccontextmanager
async def serving(
    settings: HealthSettings, *, readiness: Readiness, metrics: Metrics | None
) -> AsyncIterator[HealthServer]:
    server = HealthServer(settings, readiness=readiness, metrics=metrics)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def readyz_url(settings: HealthSettings) -> URL:
    """Where ``kmon health`` asks: a wildcard listen address is reached over loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.host, settings.host)
    return URL.build(scheme="http", host=host, port=settings.port, path="/readyz")


async def probe(url: URL) -> tuple[bool, str]:
    """GET ``url`` (a ``/readyz``): whether it answered 200, and one line saying why.

    The caller bounds the wait (``asyncio.timeout``).
    """
    try:
        async with aiohttp.ClientSession() as client, client.get(url) as response:
            body = await response.text()
            status = response.status
    except aiohttp.ClientError as exc:
        return False, f"not ready: cannot reach {url}: {_first_line(exc)}"
    if status == 200:
        return True, "ready"
    try:
        checks = json.loads(body)["checks"]
        detail = "; ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
    except (ValueError, KeyError, TypeError, AttributeError):
        detail = body.strip().splitlines()[0] if body.strip() else ""
    return False, f"not ready (HTTP {status})" + (f": {detail}" if detail else "")
