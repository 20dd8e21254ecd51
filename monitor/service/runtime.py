"""What one poll of every source needs, and nothing more: the rules, the engine and
the schema check, the sources synced, the HTTP session and the alert channels
(:func:`open_runtime`), and burst mode (:func:`poll_once`).

``kmon poll`` imports only this module; the scheduler around it (APScheduler) is in
``monitor.service.daemon``. Alembic is imported only when the schema is not the one
this kmon ships (:data:`monitor.db.SCHEMA_HEADS`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime

import aiohttp
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.http import USER_AGENT, HttpLimits, make_client_session
from monitor.alerts.channels import build_channel
from monitor.alerts.dispatch import Dispatcher
from monitor.alerts.message import Channel
from monitor.config import POLLED_KINDS, Settings
from monitor.db import SCHEMA_HEADS, SchemaNotCurrent, leases, repo
from monitor.db import quotes as quotes_repo
from monitor.db.dialect import one_at_a_time
from monitor.db.engine import make_engine, make_sessionmaker, stored_revisions
from monitor.db.repo import SourceState
from monitor.db.turns import StoreTurns
from monitor.ingest.context import HostLimiter, PollContext
from monitor.ingest.feeds import poll_source
from monitor.ingest.moves import MoveFactsReader
from monitor.ingest.quotes import provider_urls
from monitor.ingest.sources import PollOutcome
from monitor.ingest.workers import worker_pool
from monitor.rules.engine import RulesEngine
from monitor.service.replica import DatabaseClock, read_offset, replica_id
from monitor.service.rulecache import cached_rules

log = structlog.get_logger("kmon.daemon")


class UnknownSource(Exception):
    """A source named on the command line is not configured (or not enabled)."""


async def check_schema(engine: AsyncEngine, *, upgrade: bool) -> None:
    """Refuse to run on a database that is behind, or upgrade it when asked to."""
    if await stored_revisions(engine) == SCHEMA_HEADS:
        return  # current: the usual start, without loading Alembic
    from monitor.db import migrate

    current, heads = await migrate.current_revisions(engine), migrate.head_revisions()
    if current == heads:
        return
    unknown = current - migrate.known_revisions()
    if unknown:
        raise SchemaNotCurrent(
            f"the database is at revision {', '.join(sorted(unknown))}, which this kmon "
            "does not know: run the newer kmon that migrated it"
        )
    if upgrade:
        await migrate.upgrade(engine)
        log.info("database_upgraded", from_revision=sorted(current), to_revision=sorted(heads))
        return
    have = ", ".join(sorted(current)) or "empty"
    raise SchemaNotCurrent(
        f"the database is at revision {have}, this kmon needs {', '.join(sorted(heads))}: "
        "run `kmon db upgrade` first (or start with `kmon run --migrate`)"
    )


# Polls in their store transaction at once on PostgreSQL while the rules judge news.
RULES_STORE_TURNS = 2


def store_turns(pool_size: int, several: bool, judges_news: bool) -> int:
    """How many polls may be in their store transaction at once.

    SQLite: its one connection. PostgreSQL with the rules judging news: two. A poll's
    transaction then holds tens of milliseconds of tagging and clustering on the one
    event loop, so more polls inside at once only queue on the loop, and the
    dispatcher's transactions wait behind all of them: in a flood of on-topic items
    commit→Slack p99 was 12.1 s with the pool's ten turns and 0.24 s with two, and the
    first cycle ran faster with two, not slower (docs/benchmarks.md, "Alert dispatch").
    With the rules off a poll's transaction is the database's work, and the pool's
    connections, without the overflow left to the dispatcher, the heartbeat and the
    metrics, overlap it.
    """
    if not several:
        return 1
    return min(pool_size, RULES_STORE_TURNS) if judges_news else pool_size


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    migrate_schema: bool = False,
    clock: Callable[[], datetime] | None = None,
    replica: str | None = None,
    start_workers: bool = False,
) -> AsyncIterator[PollContext]:
    """Rules, engine, schema check, source sync and the shared HTTP session; closed on exit.

    ``clock`` defaults to the database's (:class:`DatabaseClock`); ``replica`` is the
    id this process claims leases under (a fresh one by default); ``start_workers``:
    the parse and tagging workers (``http.parse_workers``, ``rules.workers``) start
    now, as the daemon wants them, else at the first body or items they are given.
    Raises :class:`monitor.rules.model.RulesError` for a rules file that cannot be used.
    """
    # The rules first: a broken rules file stops the start before anything is opened.
    rules = (
        RulesEngine(
            cached_rules(settings.rules.file), story_headlines=settings.rules.story_headlines
        )
        if settings.rules.enabled
        else RulesEngine.off()
    )
    db = settings.database
    engine = make_engine(db.url.get_secret_value(), pool_size=db.pool_size, echo=db.echo)
    workers = worker_pool(
        rules.ruleset if rules.judges_news else None,
        parse_workers=settings.http.parse_workers,
        tag_workers=settings.rules.workers,
        start=start_workers,
    )
    try:
        await check_schema(engine, upgrade=migrate_schema)
        sessionmaker = make_sessionmaker(engine)
        if clock is None:
            clock = DatabaseClock()
            await read_offset(sessionmaker, clock)
        several = engine.dialect.name == "postgresql"
        async with sessionmaker.begin() as session:
            await one_at_a_time(session, "kmon sync")
            await repo.sync_sources(session, settings.sources, now=clock())
            await quotes_repo.sync_quote_sources(
                session,
                provider_urls(settings.quotes),
                interval=settings.quotes.interval,
                now=clock(),
            )
        http = settings.http
        async with (
            make_client_session(
                user_agent=http.user_agent or USER_AGENT,
                connection_limit=max(100, http.per_host_limit),
            ) as client,
            alert_channels(settings, client) as channels,
        ):
            ctx = PollContext(
                sessionmaker=sessionmaker,
                http=client,
                limits=HttpLimits(
                    connect_timeout=http.connect_timeout,
                    total_timeout=http.total_timeout,
                    max_body_bytes=http.max_body_bytes,
                    max_redirects=http.max_redirects,
                ),
                scheduling=settings.scheduler,
                host_limiter=HostLimiter(
                    http.per_host_limit, http.per_host_hold, http.limited_hosts
                ),
                clock=clock,
                rules=rules,
                bars=MoveFactsReader(settings.quotes.bar_figures_cached),
                dart_sources=settings.dart_sources(),
                replica=replica or replica_id(settings.replicas),
                lease=settings.replicas.lease,
                # Only where several replicas can race for a row (one process on SQLite).
                claim_jitter=settings.replicas.claim_jitter if several else 0.0,
                workers=workers,
                store_turns=StoreTurns(store_turns(db.pool_size, several, rules.judges_news)),
            )
            if channels is not None:
                ctx.alerts = settings.alerts
                ctx.dispatcher = Dispatcher(
                    ctx.sessionmaker,
                    channels,
                    settings.alerts,
                    ctx.clock,
                    ctx.uniform,
                    names={t.code: t.name_en for t in settings.quotes.tickers},
                    # Its rounds go ahead of the polls waiting for a turn: on SQLite
                    # it needs their one connection; on PostgreSQL it has the overflow,
                    # and what its rounds wait for is the polls' work on the event loop.
                    turns=ctx.store_turns,
                )
            yield ctx
    finally:
        if workers is not None:
            await workers.aclose()
        await engine.dispose()


@contextlib.asynccontextmanager
async def alert_channels(
    settings: Settings, http: aiohttp.ClientSession
) -> AsyncIterator[dict[str, Channel] | None]:
    """The configured alert channels (None when alerts are off), closed on exit."""
    if not settings.alerts.enabled or not settings.rules.enabled:
        yield None
        return
    channels = {
        name: build_channel(name, config, http) for name, config in settings.alerts.channels.items()
    }
    try:
        yield channels
    finally:
        for channel in channels.values():
            with contextlib.suppress(Exception):
                await channel.close()


async def poll_once(ctx: PollContext, names: Sequence[str] | None = None) -> list[PollOutcome]:
    """Burst mode: poll the named sources, or every due one, concurrently, once.

    The sources are claimed first, in one statement (monitor/db/leases.py): one that a
    running daemon is polling right now is left to it, as a ``held`` outcome when it
    was named.
    """
    now = ctx.clock()
    held: list[PollOutcome] = []
    async with ctx.sessionmaker.begin() as session:
        if names:
            states = await repo.load_sources(session, names=names, kind=POLLED_KINDS)
            missing = sorted(set(names) - {s.name for s in states})
            if missing:
                raise UnknownSource(f"no enabled source named {', '.join(missing)}")
            claimed = await leases.claim_sources(
                session, owner=ctx.replica, ttl=ctx.lease, now=now, ids=[s.id for s in states]
            )
            taken = {s.name for s in claimed}
            for state in states:
                if state.name not in taken:
                    holder = await leases.holder(session, state.id, now=now)
                    held.append(_held(state, holder, now))
        else:
            claimed = await leases.claim_sources(
                session, owner=ctx.replica, ttl=ctx.lease, now=now, due_by=now, kinds=POLLED_KINDS
            )
    return held + list(await asyncio.gather(*(poll_source(ctx, s) for s in claimed)))


def _held(state: SourceState, holder: leases.Holder | None, now: datetime) -> PollOutcome:
    by = holder.owner if holder is not None and holder.owner else "another replica"
    return PollOutcome(
        source=state.name,
        status="held",
        new_item_ids=[],
        next_check_at=state.next_check_at or now,
        duration=0.0,
        error=f"being polled by {by}",
    )
