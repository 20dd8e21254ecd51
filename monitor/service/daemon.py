"""The daemon's lifecycle: start-up checks, one scheduler job per source, shutdown.

``kmon run`` serves until SIGTERM/SIGINT; ``kmon poll`` is the same machinery in
burst mode (``monitor.service.runtime``): poll the due (or named) sources once and return.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import POLLED_KINDS
from monitor.db import leases, repo
from monitor.ingest.context import PollContext
from monitor.ingest.feeds import poll_source
from monitor.rules.match import scanner_kind

# What a poll needs lives in runtime.py (``kmon poll`` imports only that); the
# daemon's callers find it here too.
from monitor.service.runtime import (
    UnknownSource,
    alert_channels,
    check_schema,
    open_runtime,
    poll_once,
)

__all__ = [
    "Daemon",
    "TimedTask",
    "UnknownSource",
    "alert_channels",
    "check_schema",
    "install_signal_handlers",
    "open_runtime",
    "poll_once",
    "serve",
]

log = structlog.get_logger("kmon.daemon")


class TimedTask(Protocol):
    """A job that decides its own next run (the quote cycle on the KRX clock …).

    One replica runs it per due time: it is claimed under ``lease_key`` (its name by
    default; a key that changes with the task's settings makes a changed task due).
    """

    name: str

    def first_run(self, now: datetime) -> datetime: ...

    async def run(self) -> datetime:
        """Do the work once; return when to run next."""
        ...


# After a task crashed (a bug, a database outage) it is tried again this much later.
TASK_RETRY = timedelta(minutes=1)
TASK_MIN_GAP = timedelta(seconds=1)
# A source or task whose due time is at most this far ahead is due: a scheduler fires
# a little early at times, and waiting that little again would only add a round trip.
DUE_SLACK = timedelta(seconds=1)


class _NoSkipWarnings(logging.Filter):
    """Drops APScheduler's "maximum number of running instances reached" warning,
    which it repeats at every interval a poll overruns: the daemon says it once per
    overrun instead (``poll_overrun``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in str(record.msg)


def _scheduler_logger() -> logging.Logger:
    # The scheduler's own logger (a child of APScheduler's, so configured with it):
    # the filter stays off any other scheduler in the process.
    logger = logging.getLogger("apscheduler.scheduler.kmon")
    if not any(isinstance(f, _NoSkipWarnings) for f in logger.filters):
        logger.addFilter(_NoSkipWarnings())
    return logger


class Daemon:
    """One APScheduler job per feed source, driven by the database's ``next_check_at``,
    plus the timed tasks (quotes, daily bars) that keep their own clock."""

    def __init__(
        self, ctx: PollContext, *, grace_period: float, tasks: Sequence[TimedTask] = ()
    ) -> None:
        self.ctx = ctx
        self.grace_period = grace_period
        self.tasks = list(tasks)
        self.scheduler = AsyncIOScheduler(
            timezone="UTC",
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            logger=_scheduler_logger(),
        )
        self.scheduler.add_listener(self._skipped, EVENT_JOB_MAX_INSTANCES)
        # Running polls and tasks, by the name of their source or task.
        self._inflight: dict[asyncio.Task[object], str] = {}
        # Runs skipped while a poll or task overran its interval, by job id.
        self._skips: dict[str, int] = {}
        # Set once shutdown has begun waiting for running polls.
        self.draining = asyncio.Event()
        # The id and interval of each source with a job, by name.
        self._sources: dict[str, tuple[int, float]] = {}

    async def arm(self) -> int:
        """Add a job for each enabled source, first run at its stored next check."""
        async with self.ctx.sessionmaker() as session:
            states = await repo.load_sources(session, kind=POLLED_KINDS)
        now = self.ctx.clock()
        for task in self.tasks:
            self._schedule_task(task, task.first_run(now))
        for state in states:
            self._sources[state.name] = (state.id, state.interval)
            first = self._local(state.next_check_at or now)
            self.scheduler.add_job(
                self._poll_job,
                trigger=self._trigger(state.interval, first),
                next_run_time=first,
                args=[state.name],
                id=state.name,
                name=f"poll {state.name}",
            )
        self.scheduler.start()
        return len(states)

    def _local(self, at: datetime) -> datetime:
        """``at`` (a time of the context's clock, the database's) on this machine's
        clock, which is what APScheduler fires by."""
        offset = getattr(self.ctx.clock, "offset", None)
        return at - offset if isinstance(offset, timedelta) else at

    @staticmethod
    def _trigger(interval: float, start: datetime) -> IntervalTrigger:
        # The interval is a safety net; after each poll the job is moved to the
        # source's stored next check (backoff, Retry-After, jitter all live there),
        # given explicitly as the next run time: a trigger alone would round a start
        # in the past up to the next whole interval.
        return IntervalTrigger(seconds=interval, start_date=start, timezone="UTC")

    def _schedule_task(self, task: TimedTask, at: datetime) -> None:
        self.scheduler.add_job(
            self._task_job,
            trigger=DateTrigger(run_date=self._local(at), timezone="UTC"),
            args=[task],
            id=f"task:{task.name}",
            name=task.name,
            replace_existing=True,
        )

    async def _task_job(self, task: TimedTask) -> None:
        at: datetime | None = None
        with self._tracked(f"task:{task.name}"):
            try:
                at = await self._run_leased(task)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task_crashed", task=task.name)
                at = self.ctx.clock() + TASK_RETRY
        if at is not None and self.scheduler.state == STATE_RUNNING:
            # A run time that is already due would be refused while this run is still
            # the job's one instance, and the task would drop off the schedule.
            self._schedule_task(task, max(at, self.ctx.clock() + TASK_MIN_GAP))

    async def _run_leased(self, task: TimedTask) -> datetime:
        """Run ``task`` if this replica claims it; when to try next either way."""
        ctx = self.ctx
        key = getattr(task, "lease_key", task.name)
        now = ctx.clock()
        async with ctx.sessionmaker.begin() as session:
            claim = await leases.claim_task(
                session, key, owner=ctx.replica, ttl=ctx.lease, now=now, due_by=now + DUE_SLACK
            )
        if not claim.claimed:
            if claim.owner is not None:
                # Another replica runs it: look again when its lease would end.
                log.debug("task_held", task=task.name, holder=claim.owner)
                return now + timedelta(seconds=claim.remaining) + TASK_MIN_GAP
            # Done already by another replica for this due time.
            return claim.next_run_at or task.first_run(now)
        try:
            at = await task.run()
        except BaseException:
            # Due as it was: whichever replica comes next runs it.
            with contextlib.suppress(Exception):
                async with ctx.sessionmaker.begin() as session:
                    await leases.finish_task(
                        session, key, owner=ctx.replica, now=ctx.clock(), next_run_at=None
                    )
            raise
        async with ctx.sessionmaker.begin() as session:
            await leases.finish_task(
                session, key, owner=ctx.replica, now=ctx.clock(), next_run_at=at
            )
        return at

    @contextlib.contextmanager
    def _tracked(self, job_id: str) -> Iterator[None]:
        """Count the current task as a running poll, for the shutdown grace period.

        A run that shutdown cancels (past the grace period) ends quietly here: its
        transaction was rolled back and :meth:`shutdown` names it in one line;
        raising on would make APScheduler log it as a job error with a traceback.
        """
        task = asyncio.current_task()
        if task is not None:
            self._inflight[task] = job_id
        try:
            yield
        except asyncio.CancelledError:
            if not self.draining.is_set():
                raise
        finally:
            if task is not None:
                self._inflight.pop(task, None)
            skipped = self._skips.pop(job_id, 0)
            if skipped:
                log.info("poll_overrun_ended", job=job_id, skipped_runs=skipped)

    def _skipped(self, event: JobSubmissionEvent) -> None:
        """A run skipped because the last one still runs: said once per overrun."""
        skipped = self._skips.get(event.job_id, 0) + 1
        self._skips[event.job_id] = skipped
        if skipped == 1:
            log.warning(
                "poll_overrun",
                job=event.job_id,
                detail="still running at its next run time; later runs are skipped until it ends",
            )

    async def _poll_job(self, name: str) -> None:
        with self._tracked(name):
            await self._poll_named(name)

    async def _poll_named(self, name: str) -> None:
        ctx = self.ctx
        try:
            source_id, interval = self._sources[name]
            if ctx.claim_jitter:
                # Replicas fire at the same due times: a random head start spreads who
                # claims first, and the others find the row taken in one statement.
                await asyncio.sleep(ctx.uniform(0.0, ctx.claim_jitter))
            now = ctx.clock()
            holder: leases.Holder | None = None
            async with ctx.sessionmaker.begin() as session:
                claimed = await leases.claim_sources(
                    session,
                    owner=ctx.replica,
                    ttl=ctx.lease,
                    now=now,
                    ids=[source_id],
                    due_by=now + DUE_SLACK,
                )
                if not claimed:
                    holder = await leases.holder(session, source_id, now=now)
            if not claimed:
                if holder is None:
                    return  # disabled meanwhile
                if holder.owner is None:
                    # Fired early (a coalesced run), or polled already by another
                    # replica for this due time: wait for the stored next check.
                    at = holder.next_check_at or now + timedelta(seconds=interval)
                else:
                    # Being polled by another replica: look again when it should have
                    # finished, or when its lease runs out if it died.
                    log.debug("poll_skipped", source=name, holder=holder.owner)
                    at = now + timedelta(seconds=min(holder.remaining, interval)) + TASK_MIN_GAP
                self._reschedule(name, interval, max(at, now + TASK_MIN_GAP))
                return
            outcome = await poll_source(ctx, claimed[0])
            self._reschedule(name, interval, outcome.next_check_at)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A bug or a database outage: say so once per poll and keep the schedule.
            log.exception("poll_crashed", source=name)

    def _reschedule(self, name: str, interval: float, at: datetime) -> None:
        if self.scheduler.running:
            at = self._local(at)
            self.scheduler.modify_job(name, trigger=self._trigger(interval, at), next_run_time=at)

    async def shutdown(self) -> None:
        """Start no new polls, give running ones the grace period, cancel the rest."""
        # Pause first: APScheduler's executor cancels running jobs on shutdown, and
        # running polls deserve their grace period.
        if self.scheduler.running:
            self.scheduler.pause()
        pending = dict(self._inflight)
        self.draining.set()
        if pending:
            log.info("draining", polls=len(pending), grace_period=self.grace_period)
            _, still = await asyncio.wait(pending, timeout=self.grace_period)
            for task in still:
                task.cancel()
            if still:
                await asyncio.gather(*still, return_exceptions=True)
                # Their transactions were rolled back: nothing of them is stored, and
                # their sources are still due at the next start.
                log.info(
                    "polls_cancelled",
                    polls=len(still),
                    jobs=sorted(pending[task] for task in still),
                    grace_period=self.grace_period,
                )
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)


async def serve(
    daemon: Daemon,
    *,
    stop: asyncio.Event,
    on_ready: Callable[[], None] | None = None,
    on_stopping: Callable[[], None] | None = None,
    on_drained: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run ``daemon``'s schedule until ``stop`` is set, then shut it down cleanly.

    ``on_ready`` is called once the schedule is armed, ``on_stopping`` when ``stop``
    is set, before running polls are drained, ``on_drained`` once they are.
    """
    try:
        jobs = await daemon.arm()
        log.info("daemon_started", sources=jobs, matcher=scanner_kind())
        if on_ready is not None:
            on_ready()
        await stop.wait()
        log.info("daemon_stopping")
        if on_stopping is not None:
            on_stopping()
    finally:
        await daemon.shutdown()
        if on_drained is not None:
            await on_drained()
    log.info("daemon_stopped")


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
