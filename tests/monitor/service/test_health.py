"""/healthz, /readyz and /metrics on a real daemon, over real sockets and databases."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from apscheduler.schedulers.base import STATE_RUNNING
from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.engine import make_url

from monitor.cli.main import main
from monitor.config import HealthSettings, Settings, SourceConfig
from monitor.db import migrate
from monitor.db.engine import make_engine
from monitor.ingest.context import PollContext
from monitor.rules.match import scanner_kind
from monitor.service.daemon import Daemon, open_runtime, poll_once, serve
from monitor.service.health import HealthServer, HealthServerError, Readiness, serving
from monitor.service.metrics import Metrics
from tests.feeds import entries, rss
from tests.servers import FakeSource, Reply


def settings_for(db_url: str, *sources: SourceConfig) -> Settings:
    return Settings(
        database={"url": db_url},
        sources=list(sources),
        scheduler={"jitter": 0},
        health={"port": 0},
    )


@dataclass
class Running:
    ctx: PollContext
    daemon: Daemon
    metrics: Metrics
    server: HealthServer

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}{path}"


@contextlib.asynccontextmanager
async def endpoints(settings: Settings, metrics: Metrics | None = None) -> AsyncIterator[Running]:
    """The runtime, a daemon (not yet armed) and its endpoints on a free port."""
    async with open_runtime(settings) as ctx:
        daemon = Daemon(ctx, grace_period=5)
        metrics = metrics or Metrics()
        await metrics.seed(ctx.sessionmaker)
        ctx.observers.append(metrics.observe)
        readiness = Readiness(
            ctx.sessionmaker, scheduler_running=lambda: daemon.scheduler.state == STATE_RUNNING
        )
        async with serving(settings.health, readiness=readiness, metrics=metrics) as server:
            yield Running(ctx, daemon, metrics, server)


@contextlib.asynccontextmanager
async def serving_daemon(run: Running) -> AsyncIterator[None]:
    """``serve`` the daemon; ready on entry, drained on exit."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(run.daemon, stop=stop, on_ready=ready.set))
    try:
        await ready.wait()
        yield
    finally:
        stop.set()
        await task


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        body = await (
            response.json() if response.content_type == "application/json" else response.text()
        )
        return response.status, body


async def scrape(run: Running) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, keyed by sample name and labels."""
    status, body = await get(run.url("/metrics"))
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


async def test_endpoints_follow_the_daemon_lifecycle(db_url: str) -> None:
    async with endpoints(settings_for(db_url)) as run:
        assert await get(run.url("/healthz")) == (200, {"status": "ok"})
        # Listening before the schedule is armed: alive, not ready.
        status, body = await get(run.url("/readyz"))
        assert status == 503
        assert body == {
            "status": "unready",
            "checks": {"database": "ok", "migrations": "ok", "scheduler": "not running"},
        }
        async with serving_daemon(run):
            status, body = await get(run.url("/readyz"))
            assert (status, body["status"]) == (200, "ready")
            assert set(body["checks"].values()) == {"ok"}
        # Drained and stopped: unready again while the process winds down.
        status, body = await get(run.url("/readyz"))
        assert (status, body["checks"]["scheduler"]) == (503, "not running")
        assert (await get(run.url("/nope")))[0] == 404


async def test_readyz_refuses_a_database_migrated_by_a_newer_kmon(db_url: str) -> None:
    other = make_engine(db_url, null_pool=True)
    (head,) = migrate.head_revisions()
    try:
        async with endpoints(settings_for(db_url)) as run, serving_daemon(run):
            assert (await get(run.url("/readyz")))[0] == 200
            async with other.begin() as conn:
                await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
            status, body = await get(run.url("/readyz"))
            assert status == 503
            assert body["checks"]["migrations"] == f"database at 9999, this kmon needs {head}"
            assert body["checks"]["database"] == "ok"
            async with other.begin() as conn:
                await conn.execute(
                    text("UPDATE alembic_version SET version_num = :head"), {"head": head}
                )
            assert (await get(run.url("/readyz")))[0] == 200
    finally:
        await other.dispose()


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; stopping it cuts every connection."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        # The same port on a restart, as a database coming back on its address would.
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for writer in self._writers:
            writer.transport.abort()
        handlers = set(self._handlers)
        if handlers:
            await asyncio.wait(handlers)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                w.transport.abort()
                self._writers.discard(w)
            self._handlers.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()


@pytest.mark.postgres
async def test_readyz_follows_postgres_going_away_and_coming_back(postgres_ready: str) -> None:
    target = make_url(postgres_ready)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    await proxy.start()
    url = target.set(host="127.0.0.1", port=proxy.port)
    settings = settings_for(url.render_as_string(hide_password=False))
    try:
        async with endpoints(settings) as run, serving_daemon(run):
            assert (await get(run.url("/readyz")))[0] == 200

            await proxy.stop()
            status, body = await get(run.url("/readyz"))
            assert status == 503
            assert body["checks"]["database"].startswith("unreachable: ")
            assert body["checks"]["migrations"] == "unknown"
            assert body["checks"]["scheduler"] == "ok"
            assert (await get(run.url("/healthz")))[0] == 200  # alive all the same

            await proxy.start()
            status, body = await get(run.url("/readyz"))
            assert (status, body["status"]) == (200, "ready")
    finally:
        with contextlib.suppress(AssertionError):
            await proxy.stop()


async def test_metrics_move_when_polls_happen(db_url: str, http_server: FakeSource) -> None:
    http_server.sequence("/ai.xml", [Reply(rss(entries(2))), Reply(rss(entries(5)))])
    http_server.fail("/down.xml", 503)
    settings = settings_for(
        db_url,
        SourceConfig(name="ai", url=http_server.url("/ai.xml"), interval=120),
        SourceConfig(name="down", url=http_server.url("/down.xml"), interval=300),
    )
    # A first run (no metrics) leaves a last success in the database.
    async with open_runtime(settings) as ctx:
        await poll_once(ctx, ["ai"])
        async with ctx.sessionmaker() as session:
            stored = await session.scalar(
                text("SELECT last_success_at FROM sources WHERE name = 'ai'")
            )
    assert stored is not None

    now = [0.0]
    async with endpoints(settings, Metrics(clock=lambda: now[0])) as run:
        seeded = run.metrics.last_success["ai"]
        now[0] = seeded + 42
        before = await scrape(run)
        # Seeded from the sources table at start-up, before any poll of this process.
        assert before[key("kmon_source_last_success_timestamp_seconds", source="ai")] == seeded
        assert before[key("kmon_source_seconds_since_last_success", source="ai")] == 42
        assert key("kmon_source_last_success_timestamp_seconds", source="down") not in before
        assert before[key("kmon_source_interval_seconds", source="ai")] == 120
        assert before[key("kmon_source_interval_seconds", source="down")] == 300
        assert before[key("kmon_polls_total", source="ai", outcome="ok")] == 0
        assert before[key("kmon_polls_total", source="down", outcome="error")] == 0
        assert before[key("kmon_up")] == 1
        build = [k for k in before if k[0] == "kmon_build_info"]
        assert len(build) == 1 and dict(build[0][1])["version"]
        assert dict(build[0][1])["matcher"] == scanner_kind() in ("native", "python")

        now[0] = seeded + 100
        outcomes = await poll_once(run.ctx, ["ai", "down"])
        assert sorted((o.source, o.status) for o in outcomes) == [("ai", "ok"), ("down", "error")]
        after = await scrape(run)

    def moved(name: str, **labels: str) -> float:
        return after[key(name, **labels)] - before[key(name, **labels)]

    assert moved("kmon_polls_total", source="ai", outcome="ok") == 1
    assert moved("kmon_polls_total", source="down", outcome="error") == 1
    assert moved("kmon_polls_total", source="ai", outcome="error") == 0
    assert moved("kmon_new_items_total", source="ai") == 3
    assert moved("kmon_new_items_total", source="down") == 0
    assert moved("kmon_poll_duration_seconds_count", source="ai") == 1
    assert moved("kmon_poll_duration_seconds_count", source="down") == 1
    # The success is dated at the poll's start, as the database dates it.
    ai_duration = next(o.duration for o in outcomes if o.source == "ai")
    last = after[key("kmon_source_last_success_timestamp_seconds", source="ai")]
    assert last == pytest.approx(seeded + 100 - ai_duration, abs=1e-5)
    # Unix times of ~1.8e9 keep about a microsecond of precision in a float.
    assert after[key("kmon_source_seconds_since_last_success", source="ai")] == pytest.approx(
        ai_duration, abs=1e-5
    )
    assert key("kmon_source_last_success_timestamp_seconds", source="down") not in after


async def test_a_taken_port_is_one_clear_error(db_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with open_runtime(settings_for(db_url)) as ctx:
            readiness = Readiness(ctx.sessionmaker, scheduler_running=lambda: True)
            server = HealthServer(HealthSettings(port=port), readiness=readiness, metrics=None)
            with pytest.raises(HealthServerError, match=rf"127\.0\.0\.1:{port}: .*in use"):
                await server.start()


# --- kmon health and kmon run, in-process --------------------------------------------


def health_config(tmp_path: Path, db_url: str, port: int) -> Path:
    path = tmp_path / "kmon.yaml"
    path.write_text(
        f"database:\n  url: {db_url}\nsources: []\nhealth:\n  port: {port}\n"
        "quotes:\n  enabled: false\n",  # nothing here may reach past 127.0.0.1
        encoding="utf-8",
    )
    return path


def kmon(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


async def test_kmon_health_reports_the_daemons_readiness(tmp_path: Path, db_url: str) -> None:
    async with endpoints(settings_for(db_url)) as run:
        assert run.server.port is not None
        config = health_config(tmp_path, db_url, run.server.port)
        # The command runs its own event loop: give it a thread, as a separate process.
        result = await asyncio.to_thread(kmon, config, "health", "--timeout", "5")
        # stdout only: the command's logging set-up is process-wide, so in-process the
        # server's own log lines land on the command's stderr.
        assert (result.exit_code, result.stdout) == (
            1,
            "not ready (HTTP 503): scheduler: not running\n",
        )
        async with serving_daemon(run):
            result = await asyncio.to_thread(kmon, config, "health")
            assert (result.exit_code, result.stdout) == (0, "ready\n")


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_kmon_health_without_a_daemon(tmp_path: Path, closed_port: int) -> None:
    config = health_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'k.db'}", closed_port)
    result = kmon(config, "health")
    assert result.exit_code == 1
    assert result.output.startswith(
        f"not ready: cannot reach http://127.0.0.1:{closed_port}/readyz: "
    )
    assert result.output.count("\n") == 1


def test_kmon_run_stops_when_its_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = health_config(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'k.db'}", port)
        result = CliRunner().invoke(main, ["--config", str(config), "run", "--migrate"])
    assert result.exit_code == 1
    assert result.output.endswith(
        f"kmon: cannot serve health endpoints on 127.0.0.1:{port}: Address already in use\n"
    )
