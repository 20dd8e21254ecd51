"""A poll of one OpenDART source, every stage in one function.

Order of a poll (:func:`poll_disclosures`):
1. read the source's cursors, the day's spent budget and the known corp codes; with
   the budget spent, fail with ``budget`` until the next KST day and ask nothing;
2. look up the corp codes not known yet (one request for the corp-code file), then
   page the list endpoint per company back to its cursor, within the budget left
   (no database work while waiting on I/O);
3. in one transaction: the corp codes, the new filings as items with their
   disclosure rows, the cursors moved and the requests spent, the source's state
   (success, or the failure that ended the poll) and the signals a failing source
   raises;
4. after the commit, wake the dispatcher when deliveries were written.
Filings found before a failure are stored, but only the companies paged to the end
move their cursors, so the next poll pages the rest again: nothing is skipped, and
the items table's unique key keeps each filing once.
"""

from __future__ import annotations

import time
from datetime import timedelta

from adapters.dart import (
    Corp,
    DartPoll,
    fetch_corp_codes,
    fetch_disclosures,
    seconds_to_next_kst_day,
)
from adapters.errors import FetchError, TransientError
from adapters.records import KST
from monitor import schedule
from monitor.db import disclosures as disclosures_repo
from monitor.db.repo import SourceState
from monitor.ingest.context import PollContext
from monitor.ingest.signals import store_signals
from monitor.ingest.sources import (
    PollOutcome,
    internal_error,
    log,
    observe,
    record_poll,
    record_store_failure,
)


def budget_error(now_seconds: float, budget: int) -> TransientError:
    return TransientError(
        "budget",
        f"the daily budget of {budget} requests is spent; resuming at 00:00 KST",
        retry_after=now_seconds,
    )


async def poll_disclosures(ctx: PollContext, source: SourceState) -> PollOutcome:
    """Poll the dart ``source`` once and record the result; never raises for a fetch
    failure."""
    started = time.perf_counter()
    now = ctx.clock()
    config = ctx.dart_sources[source.name]
    assert config.api_key is not None  # the settings refuse a dart source without one
    key = config.api_key.get_secret_value()
    tickers = list(config.tickers or [])
    today = now.astimezone(KST).date()
    async with ctx.sessionmaker() as session:
        state = await disclosures_repo.load_state(session, source.id)
        corps = await disclosures_repo.known_corps(session, tickers)
    spent = state.used_on(today)
    poll = DartPoll()
    looked_up: list[Corp] = []
    error: FetchError | None = None
    warnings: list[str] = []
    async with ctx.host_limiter.for_url(source.url) as slot:
        try:
            missing = [code for code in tickers if code not in corps]
            if spent >= config.daily_budget:
                error = budget_error(seconds_to_next_kst_day(now), config.daily_budget)
            elif missing:
                spent += 1
                found = await slot.fetch(
                    fetch_corp_codes(ctx.http, source.url, key, missing, now=now, limits=ctx.limits)
                )
                looked_up = list(found.values())
                corps.update(found)
                if unknown := sorted(set(missing) - set(found)):
                    warnings.append(f"not_on_dart:{','.join(unknown)}")
            if error is None:
                poll = await slot.fetch(
                    fetch_disclosures(
                        ctx.http,
                        source.url,
                        key,
                        sorted({corp.corp_code for corp in corps.values()}),
                        state.cursors,
                        now=now,
                        first_since=today - timedelta(days=config.first_lookback_days),
                        budget=config.daily_budget - spent,
                        types=config.types,
                        limits=ctx.limits,
                    )
                )
                spent += poll.requests
                error = poll.error
                if error is None and poll.exhausted:
                    error = budget_error(seconds_to_next_kst_day(now), config.daily_budget)
        except FetchError as exc:
            error = exc
        except Exception as exc:
            log.exception("fetch_crashed", source=source.name)
            error = internal_error(exc)
        next_check = schedule.after_success(
            now, source.interval, jitter=ctx.scheduling.jitter, uniform=ctx.uniform
        )
        try:
            async with ctx.store_turns, ctx.sessionmaker.begin() as session:
                if looked_up:
                    await disclosures_repo.store_corps(session, looked_up, now=now)
                filings = await disclosures_repo.insert_disclosures(
                    session, source, poll.disclosures, fetched_at=now
                )
                await disclosures_repo.save_state(
                    session,
                    source.id,
                    disclosures_repo.DartState(
                        cursors={**state.cursors, **poll.cursors},
                        budget_day=today,
                        budget_used=spent,
                    ),
                )
                outcome, source_signals = await record_poll(
                    ctx,
                    session,
                    source,
                    error,
                    now=now,
                    started=started,
                    next_check_at=next_check,
                    new_item_ids=[filing.item_id for filing in filings],
                    warnings=tuple(warnings),
                )
                signals = ctx.rules.judge_disclosures(filings)
                stored = await store_signals(ctx, session, signals + source_signals, now=now)
        except Exception as exc:
            outcome, stored = await record_store_failure(ctx, source, exc, now=now, started=started)
    if stored:
        ctx.wake_dispatcher()
    observe(ctx, source, outcome)
    return outcome
