"""A poll of one feed source, every stage in one function.

Order of a poll (:func:`poll_source`):
1. fetch through the source kind's adapter (no database work while waiting on I/O);
2. in one transaction (monitor/db/onetrip.py: on SQLite one or two trips to the
   driver's thread): store the new items, tag them, store the signals they raise
   and those signals' deliveries, record the source's state (or its failure, and the
   signals a failing source raises);
3. after the commit, wake the dispatcher when deliveries were written;
4. one summary log line; failures become source state, never exceptions.
The poll keeps its host's slot (:class:`HostLimiter`) through steps 1 and 2, but for
a fetch that runs past ``http.per_host_hold`` (:meth:`HostSlot.fetch`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from typing import Protocol

import aiohttp

from adapters.errors import FetchError
from adapters.feed import ParsedFeed
from adapters.http import HttpLimits
from adapters.records import FeedResult, Validators
from adapters.rss import BodyParser, fetch_feed
from monitor import schedule
from monitor.config import DART_KIND
from monitor.db import repo
from monitor.db import signals as signals_repo
from monitor.db.onetrip import poll_transaction
from monitor.db.repo import SourceState
from monitor.ingest.context import PollContext
from monitor.ingest.disclosures import poll_disclosures
from monitor.ingest.signals import store_signals
from monitor.ingest.sources import (
    PollOutcome,
    internal_error,
    log,
    observe,
    record_poll,
    record_store_failure,
)


class FeedFetcher(Protocol):
    def __call__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        validators: Validators,
        limits: HttpLimits,
        fetched_at: datetime,
        parse: BodyParser | None = None,
    ) -> Awaitable[FeedResult]: ...


# One adapter per source kind of feed.
FETCHERS: dict[str, FeedFetcher] = {"rss": fetch_feed}


async def poll_source(ctx: PollContext, source: SourceState) -> PollOutcome:
    """Poll ``source`` once and record the result; never raises for a fetch failure."""
    if source.kind == DART_KIND:
        return await poll_disclosures(ctx, source)
    started = time.perf_counter()
    fetcher = FETCHERS[source.kind]
    now = ctx.clock()
    result: FeedResult | None = None
    error: FetchError | None = None
    # What the worker that parsed the body told of its firing items (parse_workers).
    told: list[set[str] | None] = []
    # The host's slot is held until the result is stored: when the database is the
    # slower side, new fetches wait for it instead of piling parsed feeds up in
    # memory, and parsing them does not crowd the writes out of the event loop.
    async with ctx.host_limiter.for_url(source.url) as slot:
        try:
            result = await slot.fetch(
                fetcher(
                    ctx.http,
                    source.url,
                    validators=source.validators,
                    limits=ctx.limits,
                    fetched_at=now,
                    parse=_parser(ctx, source, told),
                )
            )
        except FetchError as exc:
            error = exc
        except BrokenProcessPool as exc:
            # A parse worker died (killed, out of memory): nothing of the poll is kept,
            # it is retried at its back-off, and the next parse starts fresh workers.
            log.error("parse_worker_died", source=source.name, error=str(exc))
            error = internal_error(exc)
        except Exception as exc:
            # An adapter bug: back off like any failure, and keep the traceback once,
            # instead of retrying it every interval.
            log.exception("fetch_crashed", source=source.name)
            error = internal_error(exc)
        if told:
            firing = told[0] if ctx.rules.judges_news else None
        else:
            firing, result, error = await _firing(ctx, source, result, error)
        next_check = schedule.after_success(
            now, source.interval, jitter=ctx.scheduling.jitter, uniform=ctx.uniform
        )
        try:
            async with ctx.store_turns, poll_transaction(ctx.sessionmaker) as session:
                items = []
                if result is not None and not result.not_modified:
                    items = await repo.insert_items(session, source, result.items, fetched_at=now)
                if items and not ctx.rules.restored:
                    since = now - ctx.rules.clusters.window
                    copies = await signals_repo.recent_story_copies(
                        session, since=since, limit=ctx.rules.clusters.max_headlines
                    )
                    ctx.rules.restore(copies, now=now)
                    stories = len({copy.cluster for copy in copies})
                    log.info("clusters_restored", copies=len(copies), stories=stories)
                news = ctx.rules.judge_items(
                    items, now=now, source_type=source.source_type, firing=firing
                )
                outcome, source_signals = await record_poll(
                    ctx,
                    session,
                    source,
                    error,
                    now=now,
                    started=started,
                    next_check_at=next_check,
                    validators=result.validators if result else None,
                    new_item_ids=[item.id for item in items],
                    not_modified=bool(result and result.not_modified),
                    http_status=result.http_status if result else None,
                    warnings=result.warnings if result else (),
                )
                stored = await store_signals(
                    ctx, session, news.signals + source_signals, now=now, links=news.links
                )
        except Exception as exc:
            outcome, stored = await record_store_failure(ctx, source, exc, now=now, started=started)
    if stored:
        ctx.wake_dispatcher()
    observe(ctx, source, outcome)
    return outcome


def _parser(
    ctx: PollContext, source: SourceState, told: list[set[str] | None]
) -> BodyParser | None:
    """The workers' parse of ``source``'s body (None: no workers parse, a thread of
    this process does); what they tell of its firing items goes to ``told``."""
    workers = ctx.workers
    if workers is None or not workers.parses:
        return None

    async def parse(
        body: bytes, content_type: str | None, fetched_at: datetime, parse_timeout: float
    ) -> ParsedFeed:
        parsed, firing = await workers.parse(
            body,
            content_type=content_type,
            fetched_at=fetched_at,
            source=source.name,
            source_type=source.source_type,
            parse_timeout=parse_timeout,
        )
        told.append(firing)
        return parsed

    return parse


async def _firing(
    ctx: PollContext, source: SourceState, result: FeedResult | None, error: FetchError | None
) -> tuple[set[str] | None, FeedResult | None, FetchError | None]:
    """Which fetched items fire a rule, from the workers (None: no pool, the rules tag
    every new item), for a body parsed in this process. A worker that died fails the
    poll as ``internal``, its result dropped: nothing is stored, the next poll fetches
    it all again."""
    workers = ctx.workers
    if workers is None or not workers.tags or result is None or not result.items:
        return None, result, error
    if not ctx.rules.judges_news:
        return None, result, error
    try:
        firing = await workers.firing(
            result.items, source=source.name, source_type=source.source_type
        )
    except Exception as exc:
        log.exception("tagging_crashed", source=source.name)
        return None, None, internal_error(exc)
    return firing, result, error
