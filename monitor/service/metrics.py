"""Prometheus metrics of one daemon, fed by the outcome of every poll.

Each :class:`Metrics` has its own registry rather than prometheus_client's global
one, so tests (and several daemons in one process) never see each other's numbers.
Per-source freshness is computed at scrape time from the last success the daemon
knows of, seeded from the sources table at start-up so a restart does not forget it.
"""

from __future__ import annotations

import importlib.metadata
import platform
import time
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from monitor.config import FEED_KIND
from monitor.db import repo
from monitor.ingest.quotes import QuoteCycle
from monitor.ingest.sources import PollOutcome

# PollOutcome.status values; every one is exported from the start (as 0) so that
# rate() and increase() see the first poll of each kind.
OUTCOMES = ("ok", "not_modified", "error", "failed")
SUCCESS = frozenset({"ok", "not_modified"})
# Feeds answer in tens of milliseconds to tens of seconds (total timeout 30 s).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _version() -> str:
    try:
        return importlib.metadata.version("kmon")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """The daemon's metrics; :meth:`observe` is a ``PollContext`` observer."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self.clock = clock
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
            {"version": _version(), "python": platform.python_version()}
        )
        ProcessCollector(registry=self.registry)
        self.registry.register(_SourceFreshness(self))

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

        Quote sources are not polled per source (a quote cycle asks them in turn), so
        they would look stale for ever; their health shows in ``kmon sources list``.
        """
        async with sessionmaker() as session:
            rows = await repo.list_sources(session)
        for row in rows:
            if row.enabled and row.kind == FEED_KIND:
                last = row.last_success_at.timestamp() if row.last_success_at else None
                self.add_source(row.name, interval=row.interval_seconds, last_success=last)

    def observe(self, outcome: PollOutcome) -> None:
        """Count one finished poll."""
        self.polls.labels(outcome.source, outcome.status).inc()
        self.poll_duration.labels(outcome.source).observe(outcome.duration)
        self.new_items.labels(outcome.source).inc(len(outcome.new_item_ids))
        if outcome.status in SUCCESS:
            # The database records a success at the poll's start; so do we.
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
        for channel in channels:
            for outcome in ALERT_OUTCOMES:
                self.messages.labels(channel, outcome)
                self.deliveries.labels(channel, outcome)

    def count(self, channel: str, outcome: str, deliveries: int) -> None:
        """One message's outcome, covering ``deliveries`` rows."""
        self.messages.labels(channel, outcome).inc()
        self.deliveries.labels(channel, outcome).inc(deliveries)
