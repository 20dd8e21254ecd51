"""Prometheus metrics of one daemon, fed by the outcome of every poll.

Each :class:`Metrics` has its own registry rather than prometheus_client's global
one, so tests (and several daemons in one process) never see each other's numbers.
Per-source freshness is computed at scrape time from the last success known, the
later of this process's own polls and the sources table.

What the database knows (each source's status and last success, the signals stored by
kind and rule, the outbox's backlog) is read when ``/metrics`` is scraped
(:meth:`Metrics.refresh`), so it is right however many processes share the database
and whatever they did before this one started; if the database does not answer in
time, the last values stay and ``kmon_metrics_database_up`` says 0.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from monitor.alerts import admin
from monitor.config import POLLED_KINDS
from monitor.db import repo
from monitor.db import signals as signals_repo
from monitor.ingest.quotes import QuoteCycle
from monitor.ingest.sources import SOURCE_STATUSES, PollOutcome
from monitor.rules.match import scanner_kind
from monitor.service.replica import Replica
from monitor.timefmt import utcnow

log = structlog.get_logger("kmon.metrics")

# PollOutcome.status values; every one is exported from the start (as 0) so that
# rate() and increase() see the first poll of each kind.
OUTCOMES = ("ok", "not_modified", "error", "failed", "auth_failed")
SUCCESS = frozenset({"ok", "not_modified"})
# A scrape waits at most this long for the database; then the last reading is served.
REFRESH_TIMEOUT = 2.0
# Feeds answer in tens of milliseconds to tens of seconds (total timeout 30 s).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def kmon_version() -> str:
    try:
        return importlib.metadata.version("kmon")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """The daemon's metrics; :meth:`observe` is a ``PollContext`` observer."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, channels: Iterable[str] = ()
    ) -> None:
        """``channels``: the configured alert channels, exported at 0 while they have
        nothing pending or dead."""
        self.registry = CollectorRegistry()
        self.clock = clock
        self.channels = tuple(channels)
        # One reading at a time: scrapes that arrive together wait for each other
        # instead of piling queries on the database.
        self._reading = asyncio.Lock()
        self._database_up: bool | None = None
        self.last_success: dict[str, float] = {}
        self.intervals: dict[str, float] = {}
        self.polls = Counter(
            "kmon_polls",
            "Polls finished, by source and outcome (ok, not_modified, error, failed).",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.poll_duration = Histogram(
            "kmon_poll_duration_seconds",
            "Time from the start of a poll to its stored result.",
            ["source"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.new_items = Counter(
            "kmon_new_items",
            "Items stored for the first time.",
            ["source"],
            registry=self.registry,
        )
        self.quotes_served = Counter(
            "kmon_quotes_served",
            "Quotes accepted, by the source that served them (fallback use shows here).",
            ["source"],
            registry=self.registry,
        )
        self.quotes_stored = Counter(
            "kmon_quotes_stored",
            "Quotes stored for the first time (an unchanged quote is stored once).",
            registry=self.registry,
        )
        self.quotes_rejected = Counter(
            "kmon_quotes_rejected",
            "Quotes refused as implausible (price, daily limit, time, scale).",
            registry=self.registry,
        )
        self.quote_cycles = Counter(
            "kmon_quote_cycles",
            "Quote cycles finished, by outcome (complete, or partial with tickers missing).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("complete", "partial"):
            self.quote_cycles.labels(outcome)
        Gauge("kmon_up", "1 while the daemon serves its metrics.", registry=self.registry).set(1)
        Info("kmon_build", "The running kmon.", registry=self.registry).info(
            {
                "version": kmon_version(),
                "python": platform.python_version(),
                "matcher": scanner_kind(),
            }
        )
        ProcessCollector(registry=self.registry)
        self.registry.register(_SourceFreshness(self))
        self.stored = StoredState()
        self.registry.register(_StoredStateCollector(self.stored))

    def add_source(self, name: str, *, interval: float, last_success: float | None = None) -> None:
        """Export ``name``'s series from the start, before its first poll."""
        self.intervals[name] = interval
        if last_success is not None:
            self.last_success[name] = last_success
        for outcome in OUTCOMES:
            self.polls.labels(name, outcome)
        self.poll_duration.labels(name)
        self.new_items.labels(name)

    async def seed(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """Take every enabled news source, its interval and last success from the database.

        Quote sources get no freshness series: a quote cycle asks them in turn and only
        while KRX is open, so they would look stale every night; their health is in
        ``kmon_source_status`` and ``kmon sources list``.
        """
        async with sessionmaker() as session:
            rows = await repo.list_sources(session)
        for row in rows:
            if row.enabled and row.kind in POLLED_KINDS:
                last = row.last_success_at.timestamp() if row.last_success_at else None
                self.add_source(row.name, interval=row.interval_seconds, last_success=last)

    async def refresh(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """Read the stored state (sources, signals, outbox) for the next scrape.

        Never raises: when the database does not answer within ``REFRESH_TIMEOUT`` the
        last reading stays, ``kmon_metrics_database_up`` turns 0 and one line is
        logged (one more when it answers again).
        """
        async with self._reading:
            try:
                async with asyncio.timeout(REFRESH_TIMEOUT), sessionmaker() as session:
                    sources = await repo.list_sources(session)
                    signals = await signals_repo.counts_by_rule(session)
                    backlog = await admin.backlog(session, now=utcnow())
            except (TimeoutError, OSError, SQLAlchemyError) as exc:
                if self._database_up is not False:  # one line when it flips
                    message = str(exc).strip()
                    error = message.splitlines()[0] if message else type(exc).__name__
                    log.warning("metrics_database", up=False, error=error)
                self._database_up = self.stored.database_up = False
                return
            if self._database_up is False:
                log.info("metrics_database", up=True)
            for row in sources:
                if not row.enabled:  # taken out of the config: no series left behind
                    self.intervals.pop(row.name, None)
                    self.last_success.pop(row.name, None)
                elif row.kind in POLLED_KINDS:
                    self.intervals[row.name] = row.interval_seconds
                    if row.last_success_at is not None:
                        # Another process may have polled it since this one did.
                        stored = row.last_success_at.timestamp()
                        known = self.last_success.get(row.name, stored)
                        self.last_success[row.name] = max(stored, known)
            self.stored.sources = {s.name: s.status for s in sources if s.enabled}
            self.stored.signals = signals
            idle = set(self.channels) - {row.channel for row in backlog}
            self.stored.backlog = sorted(
                [*backlog, *(admin.Backlog(channel, 0, 0.0, 0) for channel in idle)],
                key=lambda row: row.channel,
            )
            self._database_up = self.stored.database_up = True

    def observe(self, outcome: PollOutcome) -> None:
        """Count one finished poll."""
        self.polls.labels(outcome.source, outcome.status).inc()
        self.poll_duration.labels(outcome.source).observe(outcome.duration)
        self.new_items.labels(outcome.source).inc(len(outcome.new_item_ids))
        if outcome.status in SUCCESS and outcome.source in self.intervals:
            # The database records a success at the poll's start; so do we. Freshness
            # is kept for the news sources only (see seed).
            self.last_success[outcome.source] = self.clock() - outcome.duration

    def observe_quotes(self, cycle: QuoteCycle) -> None:
        """Count one finished quote cycle (a ``QuoteJob`` observer)."""
        for source, count in cycle.served_by.items():
            self.quotes_served.labels(source).inc(count)
        self.quotes_stored.inc(cycle.stored)
        self.quotes_rejected.inc(len(cycle.rejected))
        self.quote_cycles.labels("partial" if cycle.missing else "complete").inc()


class _SourceFreshness(Collector):
    """Per-source gauges computed when scraped, so "seconds since" is never stale."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "kmon_source_last_success_timestamp_seconds",
                "Unix time of the source's last successful poll (absent until one).",
                labels=["source"],
            ),
            GaugeMetricFamily(
                "kmon_source_seconds_since_last_success",
                "Seconds since the source's last successful poll (absent until one).",
                labels=["source"],
            ),
            GaugeMetricFamily(
                "kmon_source_interval_seconds",
                "The source's configured polling interval.",
                labels=["source"],
            ),
        )

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        at, since, interval = self._families()
        now = self.metrics.clock()
        for name, seconds in sorted(self.metrics.intervals.items()):
            interval.add_metric([name], seconds)
        for name, last in sorted(self.metrics.last_success.items()):
            at.add_metric([name], last)
            since.add_metric([name], max(0.0, now - last))
        return (at, since, interval)


@dataclass
class StoredState:
    """The last reading of the database (see :meth:`Metrics.refresh`)."""

    database_up: bool = False
    sources: dict[str, str] = field(default_factory=dict)
    signals: list[tuple[str, str, int]] = field(default_factory=list)
    backlog: list[admin.Backlog] = field(default_factory=list)


class _StoredStateCollector(Collector):
    """Families built from the last reading, so a source or channel that went away
    leaves no stale series behind."""

    def __init__(self, state: StoredState) -> None:
        self.state = state

    def describe(self) -> Iterable[Metric]:
        return self._families(StoredState())

    def collect(self) -> Iterable[Metric]:
        return self._families(self.state)

    @staticmethod
    def _families(state: StoredState) -> list[Metric]:
        up = GaugeMetricFamily(
            "kmon_metrics_database_up",
            "1 when the last scrape could read the stored state (sources, signals, outbox).",
            value=1.0 if state.database_up else 0.0,
        )
        status = GaugeMetricFamily(
            "kmon_source_status",
            "1 for each enabled source's current status (new, ok, failing, failed,"
            " auth_failed), 0 for the others.",
            labels=["source", "status"],
        )
        for name, current in sorted(state.sources.items()):
            for word in SOURCE_STATUSES:
                status.add_metric([name, word], 1.0 if current == word else 0.0)
        # Counted in the database rather than by this process: right whichever process
        # stored them (replicas, `kmon poll`, replays), and not reset by a restart.
        # Signals are never deleted, so the count only grows, as a counter must.
        signals = CounterMetricFamily(
            "kmon_signals",
            "Signals stored in the database, by kind and rule (all processes, all time).",
            labels=["kind", "rule"],
        )
        for kind, rule, count in state.signals:
            signals.add_metric([kind, rule], count)
        pending = GaugeMetricFamily(
            "kmon_outbox_pending",
            "Deliveries waiting to be sent, held ones included, by channel.",
            labels=["channel"],
        )
        age = GaugeMetricFamily(
            "kmon_outbox_oldest_pending_age_seconds",
            "Age of the oldest pending delivery not held on purpose (quiet hours, the"
            " digest), by channel; 0 when none waits.",
            labels=["channel"],
        )
        dead = GaugeMetricFamily(
            "kmon_outbox_dead",
            "Dead-lettered deliveries (a person has to retry them), by channel.",
            labels=["channel"],
        )
        for row in state.backlog:
            pending.add_metric([row.channel], row.pending)
            age.add_metric([row.channel], row.oldest_pending_age)
            dead.add_metric([row.channel], row.dead)
        return [up, status, signals, pending, age, dead]


# --- alerts ---------------------------------------------------------------------------

# MessageOutcome.status values of the alert dispatcher, exported from the start.
ALERT_OUTCOMES = ("sent", "retry", "dead", "throttled", "paused")


class AlertMetrics:
    """Alert delivery counters on a daemon's registry. Feed it from the dispatcher:
    ``Dispatcher(..., observers=[lambda o: alert_metrics.count(o.channel, o.status,
    o.signals)])``."""

    def __init__(self, registry: CollectorRegistry, channels: Iterable[str] = ()) -> None:
        self.messages = Counter(
            "kmon_alert_messages",
            "Alert messages by channel and outcome (sent, retry, dead, throttled, paused).",
            ["channel", "outcome"],
            registry=registry,
        )
        self.deliveries = Counter(
            "kmon_alert_deliveries",
            "Deliveries (signal × channel) by channel and outcome, folded ones included.",
            ["channel", "outcome"],
            registry=registry,
        )
        self.chart_failures = Counter(
            "kmon_alert_chart_failures",
            "Charts that did not go with their alert (not drawn, or the upload failed);"
            " the alert went out in words.",
            ["channel"],
            registry=registry,
        )
        for channel in channels:
            for outcome in ALERT_OUTCOMES:
                self.messages.labels(channel, outcome)
                self.deliveries.labels(channel, outcome)
            self.chart_failures.labels(channel)

    def count(self, channel: str, outcome: str, deliveries: int, chart_failures: int = 0) -> None:
        """One message's outcome, covering ``deliveries`` rows."""
        self.messages.labels(channel, outcome).inc()
        self.deliveries.labels(channel, outcome).inc(deliveries)
        if chart_failures:
            self.chart_failures.labels(channel).inc(chart_failures)


def watch_replica(registry: CollectorRegistry, replica: Replica, engine: AsyncEngine) -> None:
    """This replica's leases and heartbeat, and the statements it sends the database."""
    held = Gauge(
        "kmon_replica_leases",
        "Leases this replica holds (at its last heartbeat), by kind: sources or tasks.",
        ["replica", "kind"],
        registry=registry,
    )
    held.labels(replica.id, "sources").set_function(lambda: replica.sources_held)
    held.labels(replica.id, "tasks").set_function(lambda: replica.tasks_held)
    Gauge(
        "kmon_replica_heartbeat_ok",
        "1 while this replica's heartbeat is written, 0 from a failed one to the next.",
        ["replica"],
        registry=registry,
    ).labels(replica.id).set_function(lambda: 1.0 if replica.healthy else 0.0)
    statements = Counter(
        "kmon_db_statements",
        "Statements this process sent to the database (round trips, near enough).",
        ["replica"],
        registry=registry,
    ).labels(replica.id)

    def count(*_: object) -> None:
        statements.inc()

    event.listen(engine.sync_engine, "before_cursor_execute", count)
