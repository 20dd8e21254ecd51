"""One failure path for every source: feeds and quote providers alike.

A poll of any source ends in :func:`record_poll`, in the transaction of the poll:
success resets the source's row; a failure is counted with its status (``failing``
for what may pass, ``failed`` for what will not, ``auth_failed`` when a human has to
act), its next check (capped exponential back-off, never sooner than Retry-After) and
the signals it raises (``source_stale``, ``source_auth``). :func:`log_poll` writes the
canonical ``poll`` line, at warning level only when the source's health flips.
A poll whose own transaction fails is recorded by :func:`record_store_failure`
(:func:`record_store_failures` for the providers of one quote cycle).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from adapters.errors import AuthError, FetchError, PermanentError, TransientError
from adapters.records import Validators
from monitor import schedule
from monitor.db import repo
from monitor.db.repo import SourceState
from monitor.db.schema import SignalRow
from monitor.ingest.context import PollContext
from monitor.ingest.signals import store_signals
from monitor.rules.evaluate import Signal

log = structlog.get_logger("kmon.poll")

# Statuses of a source row (``new`` until its first poll).
FAILED, AUTH_FAILED, FAILING, OK = "failed", "auth_failed", "failing", "ok"
SOURCE_STATUSES = ("new", OK, FAILING, FAILED, AUTH_FAILED)


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll of one source did.

    ``status``: ok, not_modified, error (transient), failed or auth_failed.
    """

    source: str
    status: str
    new_item_ids: list[int]
    next_check_at: datetime
    duration: float
    http_status: int | None = None
    error_key: str | None = None
    error: str | None = None
    warnings: tuple[str, ...] = ()
    # When the poll started (its clock's "now"): how late it was is this less the
    # source's due time.
    started_at: datetime | None = None


def internal_error(exc: Exception) -> TransientError:
    """An adapter bug or an unforeseen answer, as one failure of its source."""
    return TransientError("internal", f"{type(exc).__name__}: {exc}")


def store_error(exc: Exception) -> TransientError:
    """The poll's transaction failing (the database refused a row, a rule crashed)."""
    return TransientError("store", f"{type(exc).__name__}: {str(exc).splitlines()[0]}")


async def record_store_failure(
    ctx: PollContext, source: SourceState, exc: Exception, *, now: datetime, started: float
) -> tuple[PollOutcome, list[SignalRow]]:
    """Record a poll whose transaction raised as a failure of its source, in a fresh
    transaction: it backs off like any failure instead of crashing every interval.

    Returns the outcome and the signal rows stored; raises when the database cannot
    take even that (it is down), for the daemon to report.
    """
    [(_, outcome)], stored = await record_store_failures(
        ctx, [(source, None, started)], exc, now=now
    )
    return outcome, stored


async def record_store_failures(
    ctx: PollContext,
    polls: Sequence[tuple[SourceState, FetchError | None, float]],
    exc: Exception,
    *,
    now: datetime,
) -> tuple[list[tuple[SourceState, PollOutcome]], list[SignalRow]]:
    """Record the polls of one transaction that raised ``exc``, in a fresh transaction.

    ``polls`` are (source, its own failure or None, when its poll started): a source
    that answered gets the store failure, one that failed keeps its own failure. Each
    backs off as after a fetch failure; one ``store_failed`` line says why. Returns
    the outcomes and the signal rows stored; raises when the database cannot take
    even that (it is down), for the daemon to report.
    """
    log.exception("store_failed", source=", ".join(source.name for source, _, _ in polls))
    failure = store_error(exc)
    outcomes: list[tuple[SourceState, PollOutcome]] = []
    signals: list[Signal] = []
    async with ctx.sessionmaker.begin() as session:
        for source, error, started in polls:
            outcome, raised = await record_poll(
                ctx, session, source, error or failure, now=now, started=started, next_check_at=now
            )
            outcomes.append((source, outcome))
            signals += raised
        return outcomes, await store_signals(ctx, session, signals, now=now)


def after_failure(
    ctx: PollContext, source: SourceState, exc: FetchError, now: datetime
) -> tuple[str, datetime]:
    """The status and next check of ``source`` after ``exc``.

    Refused credentials and permanent failures wait ``permanent_retry``; transient
    ones back off exponentially, never sooner than the server's Retry-After.
    """
    sched = ctx.scheduling
    if isinstance(exc, PermanentError):
        status = AUTH_FAILED if isinstance(exc, AuthError) else FAILED
        return status, schedule.after_permanent_failure(now, permanent_retry=sched.permanent_retry)
    return FAILING, schedule.after_transient_failure(
        now,
        source.interval,
        source.error_count + 1,
        retry_after=exc.retry_after if isinstance(exc, TransientError) else None,
        backoff_max=sched.backoff_max,
        retry_after_max=sched.permanent_retry,
        jitter=sched.jitter,
        uniform=ctx.uniform,
    )


async def record_poll(
    ctx: PollContext,
    session: AsyncSession,
    source: SourceState,
    error: FetchError | None,
    *,
    now: datetime,
    started: float,
    next_check_at: datetime,
    validators: Validators | None = None,
    new_item_ids: list[int] | None = None,
    not_modified: bool = False,
    http_status: int | None = None,
    warnings: tuple[str, ...] = (),
) -> tuple[PollOutcome, list[Signal]]:
    """Record one poll of ``source`` in its row; the outcome and the signals it raises.

    ``next_check_at`` is the next check after a success; a failure decides its own.
    """
    if error is None:
        await repo.record_success(
            session,
            source.id,
            now=now,
            validators=validators or Validators(),
            next_check_at=next_check_at,
        )
        outcome = PollOutcome(
            source=source.name,
            status="not_modified" if not_modified else "ok",
            new_item_ids=new_item_ids or [],
            next_check_at=next_check_at,
            duration=time.perf_counter() - started,
            http_status=http_status,
            warnings=warnings,
            started_at=now,
        )
        return outcome, []
    status, next_check = after_failure(ctx, source, error, now)
    message = f"{error.key}: {error}"
    await repo.record_failure(
        session, source.id, now=now, status=status, error=message, next_check_at=next_check
    )
    signals = ctx.rules.judge_failure(
        source.name,
        error,
        interval=source.interval,
        last_success_at=source.last_success_at,
        failures=source.error_count + 1,
        now=now,
    )
    outcome = PollOutcome(
        source=source.name,
        status="error" if status == FAILING else status,
        new_item_ids=[],
        next_check_at=next_check,
        duration=time.perf_counter() - started,
        http_status=error.http_status,
        error_key=error.key,
        error=str(error),
        started_at=now,
    )
    return outcome, signals


def log_poll(source: SourceState, outcome: PollOutcome) -> None:
    """The canonical line of a poll; warning level only when the source's health flips."""
    fields: dict[str, object] = {
        "source": source.name,
        "status": outcome.status,
        "http_status": outcome.http_status,
        "new_items": len(outcome.new_item_ids),
        "duration_ms": round(outcome.duration * 1000, 1),
        "next_check_at": outcome.next_check_at.isoformat(),
    }
    if outcome.started_at is not None and source.next_check_at is not None:
        # Seconds from the due time to the poll (scheduler, claim jitter, host queue).
        late = (outcome.started_at - source.next_check_at).total_seconds()
        fields["late"] = round(max(0.0, late), 3)
    if outcome.started_at is not None:
        fields["started_at"] = outcome.started_at.isoformat()
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
    elif outcome.status in (FAILED, AUTH_FAILED) and source.status != outcome.status:
        log.warning("poll", transition=outcome.status, **fields)
    elif was_healthy:
        log.warning("poll", transition="failing", **fields)
    else:
        log.info("poll", errors=source.error_count + 1, **fields)


def observe(ctx: PollContext, source: SourceState, outcome: PollOutcome) -> None:
    """Log the poll and tell the observers (metrics)."""
    log_poll(source, outcome)
    for observer in ctx.observers:
        observer(outcome)
