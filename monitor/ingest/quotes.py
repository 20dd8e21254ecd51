"""Quote polling: fetch → validate → store, across a chain of sources on the KRX clock.

A cycle asks the configured sources in order (Naver's polling endpoint first, then the
fallbacks) for every ticker still missing. A source that failed is skipped while it
backs off (the same capped exponential schedule as feeds, kept in its ``sources`` row),
so the fallback serves; when its back-off ends it is asked first again and, if it
answers, takes over. Every stored quote says which source it came from.

Quotes that make no sense are rejected with a logged reason (:func:`check_quote`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import aiohttp
import structlog

from adapters import naver, yahoo
from adapters.errors import FetchError
from adapters.http import HttpLimits
from adapters.records import DailyBar, Quote, Ticker
from monitor import market
from monitor.config import QuoteSettings, TickerConfig
from monitor.db import quotes as quotes_repo
from monitor.db import repo
from monitor.db import signals as signals_repo
from monitor.ingest.context import PollContext
from monitor.ingest.signals import store_signals
from monitor.ingest.sources import (
    PollOutcome,
    internal_error,
    observe,
    record_poll,
    record_store_failures,
    store_error,
)

log = structlog.get_logger("kmon.quotes")

# KRX's daily price limit; a stock quote beyond it is a data error, not news.
DAILY_LIMIT_PCT = 30.0
# Clocks differ a little; a quote stamped a few minutes ahead is still believable.
FUTURE_TOLERANCE = timedelta(minutes=5)

Fetch = Callable[
    [aiohttp.ClientSession, Sequence[Ticker], QuoteSettings, HttpLimits],
    Awaitable[list[Quote]],
]


def source_name(provider: str) -> str:
    """The ``sources`` row that keeps a quote provider's health."""
    return f"quotes-{provider.replace('_', '-')}"


def provider_urls(cfg: QuoteSettings) -> dict[str, str]:
    """The configured providers' ``sources`` rows: name → base URL."""
    urls = {
        "naver": cfg.naver_polling_url,
        "naver_mobile": cfg.naver_mobile_url,
        "yahoo": cfg.yahoo_chart_url,
    }
    return {source_name(p): urls[p] for p in cfg.providers} if cfg.enabled else {}


def late_open_days(cfg: QuoteSettings) -> frozenset[date]:
    """The known exam days plus any the operator configured (new ones each year)."""
    return market.CSAT_DAYS | frozenset(cfg.late_open_days)


def to_ticker(cfg: TickerConfig) -> Ticker:
    return Ticker(code=cfg.code, kind=cfg.kind, market=cfg.market)


def _gathered(answers: Sequence[list[Quote] | BaseException]) -> list[Quote]:
    """Quotes from per-ticker (or per-batch) answers; the provider failed only if all did.

    One unknown or delisted ticker must not take a whole source down with it: its
    error leaves that ticker missing (the next source is asked) and the rest count.
    """
    quotes = [q for answer in answers if not isinstance(answer, BaseException) for q in answer]
    errors = [a for a in answers if isinstance(a, BaseException)]
    for error in errors:
        if not isinstance(error, Exception):
            raise error  # cancellation, KeyboardInterrupt: not a source's answer
    if errors and not quotes:
        raise errors[0]
    return quotes


async def _naver(
    http: aiohttp.ClientSession, tickers: Sequence[Ticker], cfg: QuoteSettings, limits: HttpLimits
) -> list[Quote]:
    # The polling endpoint takes many codes at once: one request per batch.
    batches = [tickers[i : i + cfg.batch_size] for i in range(0, len(tickers), cfg.batch_size)]
    answers = await asyncio.gather(
        *(
            naver.fetch_realtime(http, batch, base_url=cfg.naver_polling_url, limits=limits)
            for batch in batches
        ),
        return_exceptions=True,
    )
    return _gathered(answers)


async def _one_each(
    tickers: Sequence[Ticker], fetch: Callable[[Ticker], Awaitable[Quote | None]]
) -> list[Quote]:
    async def one(t: Ticker) -> list[Quote]:
        quote = await fetch(t)
        return [quote] if quote is not None else []

    return _gathered(await asyncio.gather(*(one(t) for t in tickers), return_exceptions=True))


async def _naver_mobile(
    http: aiohttp.ClientSession, tickers: Sequence[Ticker], cfg: QuoteSettings, limits: HttpLimits
) -> list[Quote]:
    return await _one_each(
        tickers,
        lambda t: naver.fetch_mobile_basic(http, t, base_url=cfg.naver_mobile_url, limits=limits),
    )


async def _yahoo(
    http: aiohttp.ClientSession, tickers: Sequence[Ticker], cfg: QuoteSettings, limits: HttpLimits
) -> list[Quote]:
    async def quote(t: Ticker) -> Quote | None:
        answer, _ = await yahoo.fetch_chart(
            http, t, range_="1d", base_url=cfg.yahoo_chart_url, limits=limits
        )
        return answer

    return await _one_each(tickers, quote)


PROVIDERS: dict[str, Fetch] = {"naver": _naver, "naver_mobile": _naver_mobile, "yahoo": _yahoo}


def check_quote(
    quote: Quote,
    *,
    kind: str,
    now: datetime,
    reference: float | None,
    late_open_days: Collection[date] = market.CSAT_DAYS,
) -> str | None:
    """Why ``quote`` cannot be trusted, or None when it can.

    For an index, ``reference`` (its last stored level) or its previous close catches
    a value reported in hundredths (×100): no index moves that far in a day. Stocks
    need no such reference: the ±30 % daily limit against the quote's own previous
    close covers them, and a split, which the source adjusts for, does not trip it.
    """
    if quote.price <= 0:
        return f"non-positive price {quote.price:g}"
    if quote.as_of > now + FUTURE_TOLERANCE:
        return f"as-of {quote.as_of.isoformat()} is in the future"
    last = market.previous_session(now, late_open_days=late_open_days)
    if quote.as_of < last.opens_at:
        return f"as-of {quote.as_of.isoformat()} is older than the last session ({last.day})"
    if kind == "stock" and quote.prev_close and quote.prev_close > 0:
        pct = (quote.price / quote.prev_close - 1) * 100
        if abs(pct) > DAILY_LIMIT_PCT + 0.5:  # limit prices are rounded to the tick
            return f"change {pct:+.1f}% is beyond the ±{DAILY_LIMIT_PCT:g}% daily limit"
    base = (reference or quote.prev_close) if kind == "index" else None
    if base and base > 0 and not 0.5 < quote.price / base < 2.0:
        return f"price {quote.price:g} is {quote.price / base:.3g}× the last known {base:g}"
    return None


@dataclass
class QuoteCycle:
    """What one quote cycle did."""

    stored: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    served_by: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    duration: float = 0.0


async def poll_quotes(ctx: PollContext, cfg: QuoteSettings) -> QuoteCycle:
    """One cycle over every configured ticker; stores what passes the checks.

    Stages: ask the providers down the chain (:func:`_ask_chain`) → in one
    transaction store the new quotes, judge them against the KOSPI, the daily bars and
    the news, store the signals and their deliveries, record each provider's poll →
    commit → wake the dispatcher. When that transaction fails, nothing of it is kept
    and the providers that answered are recorded as failing (``store``), in a fresh
    transaction (:func:`record_store_failures`); the cycle does not raise.
    """
    started = time.perf_counter()
    now = ctx.clock()
    async with ctx.sessionmaker() as session:
        states = {
            s.name: s
            for s in await repo.load_sources(session, names=[source_name(p) for p in cfg.providers])
        }
        # Only indices are checked against their last level (see check_quote).
        references = {
            t.code: await quotes_repo.latest_price(session, t.code)
            for t in cfg.tickers
            if t.kind == "index"
        }
    cycle, accepted, answers = await _ask_chain(ctx, cfg, states, references, now)
    outcomes: list[tuple[repo.SourceState, PollOutcome]] = []
    try:
        async with ctx.sessionmaker.begin() as session:
            quotes = await quotes_repo.insert_quotes(session, accepted, fetched_at=now)
            cycle.stored = len(quotes)
            # What a quote is compared with, read only when some rule compares it.
            moves = await ctx.bars.move_facts(session, quotes) if ctx.rules.judges_quotes else []
            since = ctx.rules.news_since(min(m.quote.as_of for m in moves)) if moves else None
            news = await signals_repo.recent_news(session, since=since) if since else []
            filings = await signals_repo.recent_disclosures(session, since=since) if since else []
            signals = ctx.rules.judge_quotes(moves, news, filings)
            for state, error, answer_started in answers:
                outcome, source_signals = await record_poll(
                    ctx,
                    session,
                    state,
                    error,
                    now=now,
                    started=answer_started,
                    next_check_at=now,
                )
                outcomes.append((state, outcome))
                signals += source_signals
            stored = await store_signals(ctx, session, signals, now=now)
    except Exception as exc:
        # The database refused the cycle (a value it cannot store, a dropped
        # connection): nothing of it was stored, and the providers that answered
        # fail with it and back off, as after a fetch failure.
        cycle.stored = 0
        providers = {source_name(p): p for p in cfg.providers}
        failure = store_error(exc)
        for state, error, _ in answers:
            if error is None:
                cycle.failed[providers[state.name]] = f"{failure.key}: {failure}"
        outcomes, stored = await record_store_failures(ctx, answers, exc, now=now)
    if stored:
        ctx.wake_dispatcher()
    for state, outcome in outcomes:
        observe(ctx, state, outcome)
    cycle.duration = time.perf_counter() - started
    log.info(
        "quotes",
        stored=cycle.stored,
        served_by=cycle.served_by,
        failed=cycle.failed or None,
        rejected=len(cycle.rejected),
        missing=cycle.missing or None,
        duration_ms=round(cycle.duration * 1000, 1),
    )
    return cycle


async def _ask_chain(
    ctx: PollContext,
    cfg: QuoteSettings,
    states: Mapping[str, repo.SourceState],
    references: Mapping[str, float | None],
    now: datetime,
) -> tuple[QuoteCycle, list[Quote], list[tuple[repo.SourceState, FetchError | None, float]]]:
    """Ask the providers in order for the tickers still missing; every provider's answer
    (None, or its failure) for :func:`record_poll`. A provider that fails, whatever
    the reason (a bug in its adapter too), leaves its tickers to the next one."""
    cycle = QuoteCycle()
    kinds = {t.code: t.kind for t in cfg.tickers}
    remaining = [to_ticker(t) for t in cfg.tickers]
    accepted: list[Quote] = []
    answers: list[tuple[repo.SourceState, FetchError | None, float]] = []
    chain = [p for p in cfg.providers if source_name(p) in states]
    due = [p for p in chain if _due(states[source_name(p)], now)]
    # Every source backing off: still ask the one whose back-off ends first.
    for provider in (
        due or sorted(chain, key=lambda p: states[source_name(p)].next_check_at or now)[:1]
    ):
        if not remaining:
            break
        state = states[source_name(provider)]
        asked = time.perf_counter()
        try:
            got = await PROVIDERS[provider](ctx.http, remaining, cfg, ctx.limits)
        except FetchError as exc:
            answers.append((state, exc, asked))
            cycle.failed[provider] = f"{exc.key}: {exc}"
            continue
        except Exception as exc:
            log.exception("fetch_crashed", source=state.name)
            error = internal_error(exc)
            answers.append((state, error, asked))
            cycle.failed[provider] = f"{error.key}: {error}"
            continue
        answers.append((state, None, asked))
        # Only trusted quotes count as answered: a rejected ticker goes on down the chain.
        answered = set()
        for quote in got:
            reason = check_quote(
                quote,
                kind=kinds.get(quote.ticker, "stock"),
                now=now,
                reference=references.get(quote.ticker),
                late_open_days=late_open_days(cfg),
            )
            if reason:
                cycle.rejected.append((quote.ticker, reason))
                log.warning(
                    "quote_rejected", ticker=quote.ticker, source=quote.source, reason=reason
                )
            else:
                answered.add(quote.ticker)
                accepted.append(quote)
                cycle.served_by[provider] = cycle.served_by.get(provider, 0) + 1
        remaining = [t for t in remaining if t.code not in answered]
    cycle.missing = [t.code for t in remaining]
    return cycle, accepted, answers


def _due(state: repo.SourceState, now: datetime) -> bool:
    return state.error_count == 0 or state.next_check_at is None or state.next_check_at <= now


async def refresh_bars(ctx: PollContext, cfg: QuoteSettings) -> int:
    """Fetch about a year of daily bars per ticker (Naver, else Yahoo) and upsert those
    of sessions closed by now."""
    now = ctx.clock()

    async def one(t: Ticker) -> list[DailyBar]:
        try:
            return await naver.fetch_daily_bars(
                ctx.http, t, count=cfg.bar_days, base_url=cfg.naver_chart_url, limits=ctx.limits
            )
        except FetchError as exc:
            log.info("bars_fallback", ticker=t.code, error_key=exc.key)
        try:
            _, bars = await yahoo.fetch_chart(
                ctx.http, t, range_="1y", base_url=cfg.yahoo_chart_url, limits=ctx.limits
            )
            return bars
        except FetchError as exc:
            log.warning("bars_failed", ticker=t.code, error_key=exc.key, error=str(exc))
            return []

    answers = await asyncio.gather(*(one(to_ticker(t)) for t in cfg.tickers))
    # A bar of the session trading now is not that day's bar yet: kept after its close.
    closed = market.last_closed_session(now, late_open_days=late_open_days(cfg)).day
    bars = [b for answer in answers for b in answer if b.day <= closed]
    async with ctx.sessionmaker.begin() as session:
        count = await quotes_repo.upsert_bars(session, bars, fetched_at=now)
    ctx.bars.changed()
    log.info("bars", stored=count, tickers=sum(1 for a in answers if a))
    return count


class QuoteJob:
    """The daemon's quote task: a cycle while KRX is open, one just after the close."""

    name = "quotes"

    def __init__(
        self,
        ctx: PollContext,
        cfg: QuoteSettings,
        observers: list[Callable[[QuoteCycle], None]] | None = None,
    ) -> None:
        self.ctx, self.cfg = ctx, cfg
        self.observers = observers if observers is not None else []

    def first_run(self, now: datetime) -> datetime:
        return (
            now
            if market.is_open(now, late_open_days=late_open_days(self.cfg))
            else self.next_run(now)
        )

    def next_run(self, now: datetime) -> datetime:
        return market.next_quote_poll(
            now,
            interval=self.cfg.interval,
            after_close=self.cfg.after_close,
            late_open_days=late_open_days(self.cfg),
        )

    async def run(self) -> datetime:
        cycle = await poll_quotes(self.ctx, self.cfg)
        for observer in self.observers:
            observer(cycle)
        return self.next_run(self.ctx.clock())


class BarsJob:
    """Daily bars: at start-up, then half an hour after each session's close."""

    name = "bars"
    AFTER_CLOSE = timedelta(minutes=30)

    def __init__(self, ctx: PollContext, cfg: QuoteSettings) -> None:
        self.ctx, self.cfg = ctx, cfg
        # Claimed per ticker list (monitor/service/daemon.py): after a ticker is added
        # the refresh is due at once, instead of after the next close.
        followed = ",".join(sorted(t.code for t in cfg.tickers)) + f"/{cfg.bar_days}"
        self.lease_key = f"bars:{hashlib.sha256(followed.encode()).hexdigest()[:12]}"

    def first_run(self, now: datetime) -> datetime:
        return now

    def next_run(self, now: datetime) -> datetime:
        # The session open now or next; its close is always after ``now``.
        session = market.next_session(now, late_open_days=late_open_days(self.cfg))
        return session.closes_at + self.AFTER_CLOSE

    async def run(self) -> datetime:
        await refresh_bars(self.ctx, self.cfg)
        return self.next_run(self.ctx.clock())


def quote_tasks(
    ctx: PollContext,
    cfg: QuoteSettings,
    observers: list[Callable[[QuoteCycle], None]] | None = None,
) -> list[QuoteJob | BarsJob]:
    """The daemon's timed tasks for quotes (none when quotes are switched off).

    ``observers`` (e.g. metrics) see every finished quote cycle.
    """
    if not (cfg.enabled and cfg.tickers):
        return []
    return [QuoteJob(ctx, cfg, observers), BarsJob(ctx, cfg)]
