"""The one place that connects fetch → store: a poll of one source.

Order of a poll:
1. fetch through the source kind's adapter (no database work while waiting on I/O);
2. in one transaction: insert the new items, update the source's state, and (with a
   rules engine) store the signals the new items raise, or a failing source's;
3. one summary log line; failures become source state, never exceptions.
The poll keeps its host's slot (:class:`HostLimiter`) through steps 1 and 2.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import aiohttp
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.errors import FetchError, PermanentError, TransientError
from adapters.http import HttpLimits
from adapters.records import FeedResult, Validators
from adapters.rss import fetch_feed
from monitor import schedule
from monitor.config import SchedulerSettings
from monitor.db import repo
from monitor.db.repo import SourceState
from monitor.db.schema import SignalRow
from monitor.rules.engine import RulesEngine
from monitor.timefmt import utcnow

if TYPE_CHECKING:
    from monitor.alerts.dispatch import Dispatcher

log = structlog.get_logger("kmon.poll")


class FeedFetcher(Protocol):
    def __call__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        validators: Validators,
        limits: HttpLimits,
        fetched_at: datetime,
    ) -> Awaitable[FeedResult]: ...


# One adapter per source kind; quotes and other kinds join here.
FETCHERS: dict[str, FeedFetcher] = {"rss": fetch_feed}


class HostLimiter:
    """At most ``limit`` polls in flight per host, so one publisher is never hammered."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    def for_url(self, url: str) -> asyncio.Semaphore:
        host = (urlsplit(url).hostname or "").lower()
        semaphore = self._semaphores.get(host)
        if semaphore is None:
            semaphore = self._semaphores[host] = asyncio.Semaphore(self.limit)
        return semaphore


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll did. ``status``: ok, not_modified, error (transient) or failed."""

    source: str
    status: str
    new_item_ids: list[int]
    next_check_at: datetime
    duration: float
    http_status: int | None = None
    error_key: str | None = None
    error: str | None = None
    warnings: tuple[str, ...] = ()


@dataclass
class PollContext:
    """Everything a poll needs, built once at start-up and passed explicitly."""

    sessionmaker: async_sessionmaker[AsyncSession]
    http: aiohttp.ClientSession
    limits: HttpLimits
    scheduling: SchedulerSettings
    host_limiter: HostLimiter
    clock: Callable[[], datetime] = utcnow
    uniform: schedule.Uniform = random.uniform
    observers: list[Callable[[PollOutcome], None]] = field(default_factory=list)
    # Tags what is stored and stores the signals, in the same transaction.
    rules: RulesEngine | None = None
    # Sends the alerts of those signals (the daemon runs it; burst commands once).
    dispatcher: Dispatcher | None = None


async def poll_source(ctx: PollContext, source: SourceState) -> PollOutcome:
    """Poll ``source`` once and record the result; never raises for a fetch failure."""
    started = time.perf_counter()
    fetcher = FETCHERS[source.kind]
    now = ctx.clock()
    # The host's slot is held until the result is stored: when the database is the
    # slower side, new fetches wait for it instead of piling parsed feeds up in
    # memory, and parsing them does not crowd the writes out of the event loop.
    async with ctx.host_limiter.for_url(source.url):
        try:
            result = await fetcher(
                ctx.http,
                source.url,
                validators=source.validators,
                limits=ctx.limits,
                fetched_at=now,
            )
        except FetchError as exc:
            outcome = await _record_failure(ctx, source, exc, now, started)
        except Exception as exc:
            # An adapter bug or an unforeseen answer: back off like any failure, and
            # keep the traceback once, instead of retrying it every interval.
            log.exception("fetch_crashed", source=source.name)
            internal = TransientError("internal", f"{type(exc).__name__}: {exc}")
            outcome = await _record_failure(ctx, source, internal, now, started)
        else:
            outcome = await _record_success(ctx, source, result, now, started)
    _log_outcome(source, outcome)
    for observer in ctx.observers:
        observer(outcome)
    return outcome


async def _record_success(
    ctx: PollContext, source: SourceState, result: FeedResult, now: datetime, started: float
) -> PollOutcome:
    next_check = schedule.after_success(
        now, source.interval, jitter=ctx.scheduling.jitter, uniform=ctx.uniform
    )
    signals: list[SignalRow] = []
    async with ctx.sessionmaker.begin() as session:
        if result.not_modified:
            new_ids = []
        elif ctx.rules is None:
            new_ids = await repo.insert_items(session, source.id, result.items, fetched_at=now)
        else:
            new = await repo.insert_new_items(session, source.id, result.items, fetched_at=now)
            new_ids = [item_id for item_id, _ in new]
            signals = await ctx.rules.on_items(session, source.name, new, now=now)
        await repo.record_success(
            session, source.id, now=now, validators=result.validators, next_check_at=next_check
        )
    if ctx.rules is not None:
        ctx.rules.committed(signals)
    return PollOutcome(
        source=source.name,
        status="not_modified" if result.not_modified else "ok",
        new_item_ids=new_ids,
        next_check_at=next_check,
        duration=time.perf_counter() - started,
        http_status=result.http_status,
        warnings=result.warnings,
    )


def after_failure(
    ctx: PollContext, source: SourceState, exc: FetchError, now: datetime
) -> tuple[str, datetime]:
    """The status (``failing`` or ``failed``) and next check after ``exc``.

    Shared by feeds and quote sources: permanent failures wait ``permanent_retry``,
    transient ones back off exponentially, never sooner than the server's Retry-After.
    """
    sched = ctx.scheduling
    if isinstance(exc, PermanentError):
        return "failed", schedule.after_permanent_failure(
            now, permanent_retry=sched.permanent_retry
        )
    return "failing", schedule.after_transient_failure(
        now,
        source.interval,
        source.error_count + 1,
        retry_after=exc.retry_after if isinstance(exc, TransientError) else None,
        backoff_max=sched.backoff_max,
        retry_after_max=sched.permanent_retry,
        jitter=sched.jitter,
        uniform=ctx.uniform,
    )


async def _record_failure(
    ctx: PollContext, source: SourceState, exc: FetchError, now: datetime, started: float
) -> PollOutcome:
    status, next_check = after_failure(ctx, source, exc, now)
    message = f"{exc.key}: {exc}"
    signals: list[SignalRow] = []
    async with ctx.sessionmaker.begin() as session:
        await repo.record_failure(
            session, source.id, now=now, status=status, error=message, next_check_at=next_check
        )
        if ctx.rules is not None:
            signals = await ctx.rules.on_source_failure(
                session,
                source=source.name,
                interval=source.interval,
                last_success_at=source.last_success_at,
                failures=source.error_count + 1,
                error=message,
                now=now,
            )
    if ctx.rules is not None:
        ctx.rules.committed(signals)
    return PollOutcome(
        source=source.name,
        status="failed" if status == "failed" else "error",
        new_item_ids=[],
        next_check_at=next_check,
        duration=time.perf_counter() - started,
        http_status=exc.http_status,
        error_key=exc.key,
        error=str(exc),
    )


def _log_outcome(source: SourceState, outcome: PollOutcome) -> None:
    """The canonical line of a poll; warning level only when the source's health flips."""
    fields: dict[str, object] = {
        "source": source.name,
        "status": outcome.status,
        "http_status": outcome.http_status,
        "new_items": len(outcome.new_item_ids),
        "duration_ms": round(outcome.duration * 1000, 1),
        "next_check_at": outcome.next_check_at.isoformat(),
    }
    if outcome.warnings:
        fields["warnings"] = list(outcome.warnings)
    if outcome.error_key:
        fields.update(error_key=outcome.error_key, error=outcome.error)
    was_healthy = source.error_count == 0
    if outcome.status in ("ok", "not_modified"):
        if not was_healthy:
            log.info("poll", transition="recovered", after_errors=source.error_count, **fields)
        else:
            log.info("poll", **fields)
    elif outcome.status == "failed" and source.status != "failed":
        log.warning("poll", transition="failed", **fields)
    elif was_healthy:
        log.warning("poll", transition="failing", **fields)
    else:
        log.info("poll", errors=source.error_count + 1, **fields)
