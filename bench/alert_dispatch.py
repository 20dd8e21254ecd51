"""Alert dispatch: signals committed by kmon, delivered to a loopback Slack stand-in.

Run: .venv/bin/python bench/alert_dispatch.py  (prints figures; not a test)

A separate (spawned) process plays Slack's incoming webhook on 127.0.0.1 with aiohttp:
it answers every POST ``200 ok``, notes ``time.monotonic()`` when the body has arrived
(CLOCK_MONOTONIC is one clock for every process on Linux, so the two sides can be
compared) and reads which signals the message carries from the ``kmon-bench-N`` token
that every headline ends with. It also reads the signal count from the message header,
so a signal that the renderer left out cannot go unnoticed.

For each database (a new SQLite file in a temporary directory; PostgreSQL created and
dropped by the script) and each run, kmon gets ``Settings`` built in code: no sources,
no quote polling, the default rules, one Slack channel pointing at the stand-in and one
route with no group wait and no throttle. ``open_runtime(..., migrate_schema=True)``
builds what the daemon builds (engine, HTTP session, channel, dispatcher) and the
dispatcher runs as ``kmon run`` runs it (``monitor.service.run.dispatching``). A
producer task stores news signals the way a poll does: ``monitor.ingest.signals.
store_signals`` (signals and their deliveries) in one transaction, the commit time
taken as soon as it returns, then ``PollContext.wake_dispatcher``.

- paced: ``--signals`` signals at ``--rate`` per second, one per transaction, each
  started on its own schedule slot (start + n / rate: a late commit does not push the
  later ones back);
- burst: the same number, committed back to back, ``--burst-batch`` signals per
  transaction (1 by default); producer and dispatcher share the event loop, as in the
  daemon;
- backlog: the same number committed first (100 per transaction) while the
  dispatcher is not running, then the dispatcher started: how fast it drains a
  backlog on its own.

- flood: no producer; a first cycle of the feed farm (bench/feed_farm.py, every item
  on topic, ``--flood-feeds`` × ``--flood-items``) runs through ``poll_once`` while the
  dispatcher runs beside it on the same loop, as in ``kmon run``: each poll's commit
  time is taken when it reports its outcome (right after its commit), and a signal's
  latency is its receipt − the commit of the poll that stored it (the feed is read
  from the item's link in the message).

Latency = receipt at the stand-in − commit, per signal; deliveries/s = signals
received / (last receipt − first commit), for the backlog / (last receipt −
dispatcher start). For the backlog that is the dispatcher's drain rate; for the
burst, producer and dispatcher together on one loop. In the paced run it would be
the producer's pacing (--rate) again, so the paced row leaves it out: its latencies
say how the dispatcher keeps up. At the end of every run the script checks that
each signal arrived exactly once and that every delivery row is ``sent``, and
stops with a message otherwise. ``--profile`` runs everything again under cProfile
(slower) and prints where the event loop's time went. The server stops when the
script ends, or after ``--lifetime`` s.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import math
import multiprocessing
import os
import pstats
import re
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.engine import make_url

from bench.scratch_db import databases, fresh_postgres

if TYPE_CHECKING:
    from monitor.alerts.dispatch import Dispatcher, MessageOutcome
    from monitor.ingest.context import PollContext
    from monitor.rules.evaluate import Signal

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/kmon_bench_alerts"
HOST = "127.0.0.1"
WEBHOOK_PATH = "/services/T0KMON000/B0KMON000/bench-webhook"
TOKEN = "kmon-bench-"
MODES = ("paced", "burst", "backlog", "flood")
# Signals per transaction when the backlog is written (not timed).
BACKLOG_BATCH = 100

P = ParamSpec("P")
T = TypeVar("T")

# ---------------------------------------------------------------- the stand-in server

_TOKEN = re.compile(re.escape(TOKEN) + r"(\d+)")
# The header says how many signals a message carries: "⚠️ WARNING · 20 signals", or
# "… · kmon alert" for one.
_HEADER_COUNT = re.compile(r"· (\d+) signals")
# The feed farm's links: /article/<feed × 100,000 + n>.
_ARTICLE = re.compile(r"/article/(\d+)")


def serve_slack(conn: Connection, counters: Any, lifetime: float) -> None:
    """Child process: the webhook stand-in on 127.0.0.1; sends its port; stops when
    told or due. ``counters`` is a shared array: [signals received, messages]."""
    from aiohttp import web

    from bench.loopback import serve_until_told

    # (receipt time, signal numbers found, signal count the header declares)
    messages: list[tuple[float, list[int], int]] = []

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        received = time.monotonic()
        try:
            payload = json.loads(body)
            header = payload["blocks"][0]["text"]["text"]
            text = payload["text"]
        except (ValueError, KeyError, IndexError, TypeError):
            return web.Response(status=400, text="invalid_payload")
        # The fallback text lists every signal of the message, one line each.
        found = sorted({int(n) for n in _TOKEN.findall(text)})
        declared = int(match[1]) if (match := _HEADER_COUNT.search(header)) else 1
        articles = sorted({int(n) for n in _ARTICLE.findall(body.decode())})
        messages.append((received, found, declared, articles))
        with counters.get_lock():
            # Farm items carry no token: their signals are counted as declared.
            counters[0] += len(found) if found else declared
            counters[1] += 1
        return web.Response(text="ok")

    async def receipts(request: web.Request) -> web.Response:
        return web.json_response(messages)

    async def reset(request: web.Request) -> web.Response:
        messages.clear()
        with counters.get_lock():
            counters[0] = counters[1] = 0
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post(WEBHOOK_PATH, webhook)
    app.router.add_get("/receipts", receipts)
    app.router.add_post("/reset", reset)
    serve_until_told(app, conn, lifetime)


# ------------------------------------------------------------------ the kmon side


@dataclass
class Phases:
    """Where the dispatcher's rounds spent their time (seconds, summed)."""

    rounds: int = 0
    claimed: int = 0
    round: float = 0.0  # Dispatcher._round, whole
    claim: float = 0.0  # _claim_and_plan: claim UPDATE, rows + signals read, plan
    render: float = 0.0  # render_slack (inside send)
    send: float = 0.0  # SlackChannel.send: render + POST + answer
    mark: float = 0.0  # _started: a send's attempt and the channel's previous mark
    next_due: float = 0.0  # _close: the round's last marks and the next due time
    retried: int = 0  # flood: messages whose first send did not go through


@dataclass
class Run:
    backend: str
    mode: str
    signals: int
    per_transaction: int
    latencies: list[float]  # seconds, one per signal
    first_commit: float
    last_commit: float
    started: float  # deliveries/s counts from here: first commit, or dispatcher start
    last_receipt: float
    messages: int
    lateness: list[float]  # paced: seconds each transaction started after its slot
    cpu: float
    loop_cpu: float
    phases: Phases
    statuses: dict[str, int] = field(default_factory=dict)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(
    fn: Callable[P, Awaitable[T]], add: Callable[[float, T], None]
) -> Callable[P, Coroutine[Any, Any, T]]:
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        result = await fn(*args, **kwargs)
        add(time.perf_counter() - started, result)
        return result

    return wrapper


def instrument(dispatcher: Dispatcher, phases: Phases) -> Callable[[], None]:
    """Time the phases of each round on this dispatcher; returns the undo."""
    from monitor.alerts import slack

    def add(name: str) -> Callable[[float, Any], None]:
        def to(seconds: float, _result: Any) -> None:
            setattr(phases, name, getattr(phases, name) + seconds)

        return to

    def round_done(seconds: float, _result: Any) -> None:
        phases.rounds += 1
        phases.round += seconds

    def claimed(seconds: float, plan: Any) -> None:
        phases.claim += seconds
        phases.claimed += plan.claimed

    render = slack.render_slack

    def timed_render(message: Any) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            return render(message)
        finally:
            phases.render += time.perf_counter() - started

    d: Any = dispatcher  # instance attributes shadow the methods for this run only
    d._round = _timed(d._round, round_done)
    d._claim_and_plan = _timed(d._claim_and_plan, claimed)
    d._started = _timed(d._started, add("mark"))
    d._close = _timed(d._close, add("next_due"))
    for channel in d.channels.values():
        channel.send = _timed(channel.send, add("send"))
    slack.render_slack = timed_render

    def undo() -> None:
        slack.render_slack = render

    return undo


def bench_signal(n: int, now: datetime) -> Signal:
    """Signal ``n``: a news signal as the rules engine writes one, its headline ending
    in the token the stand-in looks for."""
    from monitor.rules.evaluate import Signal
    from monitor.rules.explanation import FiredNewsRule, NewsExplanation, TermHit

    title = f"네이버, 소버린 AI 파운데이션 모델 공개…정부 GPU 지원 확대 {TOKEN}{n}"
    hit = TermHit(surface="소버린 AI", term="소버린 AI", field="title", start=4, end=10)
    return Signal(
        kind="news",
        rule_id="ai-policy-platform",
        severity="warning",
        subject="naver",
        event_time=now,
        explanation=NewsExplanation(
            item_id=str(n),
            title=title,
            published_at=now,
            cluster=f"bench-{n}",
            url=f"https://news.example.kr/article/{n}?from=rss",
            source="yonhap-news",
            themes={"sovereign-ai": (hit,)},
            entities={"naver": (TermHit("네이버", "소버린 AI", "title", 0, 3),)},
            tickers=("035420",),
            sectors=("ai-platform",),
            why="AI policy news naming an AI platform company",
            rules=(FiredNewsRule("ai-policy-platform", "warning", "…"),),
        ),
        dedup_key=f"news:bench-{n}",
    )


async def produce(
    ctx: PollContext, count: int, rate: float | None, per_transaction: int
) -> tuple[list[float], list[float]]:
    """Store ``count`` signals and their deliveries, as the rules engine does; return
    each signal's commit time (monotonic) and, when paced, how late each transaction
    started after its slot."""
    from monitor.ingest.signals import store_signals
    from monitor.timefmt import utcnow

    loop = asyncio.get_running_loop()
    commits = [0.0] * count
    lateness: list[float] = []
    start = loop.time()
    for first in range(0, count, per_transaction):
        if rate is not None:
            slot = start + first / rate
            if (wait := slot - loop.time()) > 0:
                await asyncio.sleep(wait)
            lateness.append(loop.time() - slot)
        now = utcnow()
        batch = [bench_signal(n, now) for n in range(first, min(count, first + per_transaction))]
        async with ctx.sessionmaker.begin() as session:
            rows = await store_signals(ctx, session, batch, now=now)  # and the deliveries
        committed = time.monotonic()
        if len(rows) != len(batch):
            raise SystemExit(f"stored {len(rows)} of {len(batch)} signals")
        for n in range(first, first + len(batch)):
            commits[n] = committed
        ctx.wake_dispatcher()
    return commits, lateness


async def wait_for_deliveries(counters: Any, count: int, within: float) -> None:
    deadline = time.monotonic() + within
    while counters[0] < count:
        if time.monotonic() > deadline:
            raise SystemExit(
                f"only {counters[0]} of {count} signals reached the stand-in "
                f"within {within:.0f} s ({counters[1]} messages)"
            )
        await asyncio.sleep(0.01)  # the script's own watch, not part of the dispatch path


def alert_settings(port: int, max_per_message: int | None) -> dict[str, Any]:
    dispatch = {} if max_per_message is None else {"max_per_message": max_per_message}
    return {
        "channels": {
            "slack": {"type": "slack", "webhook_url": f"http://{HOST}:{port}{WEBHOOK_PATH}"}
        },
        "routes": [{"name": "bench", "channels": ["slack"], "group_wait": 0}],
        "dispatch": dispatch,
    }


async def _outcome(ctx: Any, base: str) -> tuple[dict[str, int], list[Any]]:
    """The deliveries by status, and the messages the Slack stand-in received."""
    from sqlalchemy import func, select

    from monitor.db.schema import Delivery

    async with ctx.sessionmaker() as session:
        statuses = dict(
            (
                await session.execute(
                    select(Delivery.status, func.count()).group_by(Delivery.status)
                )
            ).all()
        )
    async with ctx.http.get(base + "/receipts") as resp:
        messages = await resp.json()
    return statuses, messages


async def one_run(backend: str, db_url: str, port: int, mode: str, counters: Any, args: Any) -> Run:
    from monitor.config import DatabaseSettings, Settings
    from monitor.service.daemon import open_runtime
    from monitor.service.run import dispatching

    settings = Settings(
        database=DatabaseSettings(url=db_url),
        log_format="json",
        sources=[],
        quotes={"enabled": False},
        alerts=alert_settings(port, args.max_per_message),
    )
    paced = mode == "paced"
    per_transaction = {"paced": 1, "burst": args.burst_batch, "backlog": BACKLOG_BATCH}[mode]
    phases = Phases()
    base = f"http://{HOST}:{port}"
    async with open_runtime(settings, migrate_schema=True) as ctx:
        if ctx.dispatcher is None:
            raise SystemExit("open_runtime built no dispatcher: alerts or rules are off")
        async with ctx.http.post(base + "/reset") as resp:
            resp.raise_for_status()
        outcomes: list[MessageOutcome] = []
        ctx.dispatcher.observers.append(outcomes.append)
        undo = instrument(ctx.dispatcher, phases)
        try:
            if mode == "backlog":
                # Committed before the dispatcher runs: it finds all of them due.
                commits, lateness = await produce(ctx, args.signals, None, per_transaction)
            cpu, loop_cpu = _cpu(), time.thread_time()
            started = time.monotonic()
            async with dispatching(ctx, grace_period=30.0):
                if mode != "backlog":
                    commits, lateness = await produce(
                        ctx, args.signals, args.rate if paced else None, per_transaction
                    )
                    started = min(commits)
                timeout = 120.0 + (args.signals / args.rate if paced else 0.0)
                await wait_for_deliveries(counters, args.signals, timeout)
            # The dispatcher has stopped: its last round has marked what it sent.
            cpu, loop_cpu = _cpu() - cpu, time.thread_time() - loop_cpu
        finally:
            undo()
        statuses, messages = await _outcome(ctx, base)
    receipts = check(backend, mode, args.signals, messages, statuses, outcomes)
    return Run(
        backend=backend,
        mode=mode,
        signals=args.signals,
        per_transaction=per_transaction,
        latencies=[receipts[n] - commits[n] for n in range(args.signals)],
        first_commit=min(commits),
        last_commit=max(commits),
        started=started,
        last_receipt=max(receipts.values()),
        messages=len(messages),
        lateness=lateness,
        cpu=cpu,
        loop_cpu=loop_cpu,
        phases=phases,
        statuses=statuses,
    )


async def flood_run(backend: str, db_url: str, port: int, counters: Any, args: Any) -> Run:
    """A first cycle of the farm, every item on topic, with the dispatcher beside it."""
    from sqlalchemy import func, select

    from bench.feed_farm import feed_url
    from monitor.config import DatabaseSettings, HttpSettings, Settings, SourceConfig
    from monitor.db.schema import Delivery
    from monitor.service.run import dispatching
    from monitor.service.runtime import open_runtime, poll_once

    # As bench/feed_farm.py has it: on PostgreSQL no more polls in flight than the
    # pool's connections (10 and 10 of overflow), else polls wait past its 30 s.
    settings = Settings(
        database=DatabaseSettings(url=db_url),
        http=HttpSettings(per_host_limit=20 if backend == "postgresql" else 100),
        log_format="json",
        sources=[
            SourceConfig(name=f"farm-{n:04d}", url=feed_url(args.farm_port, 1.0, n))
            for n in range(args.flood_feeds)
        ],
        quotes={"enabled": False},
        alerts=alert_settings(port, args.max_per_message),
    )
    phases = Phases()
    base = f"http://{HOST}:{port}"
    commits: dict[int, float] = {}  # feed number → its poll's commit (monotonic)

    def committed(outcome: Any) -> None:
        commits.setdefault(int(outcome.source.removeprefix("farm-")), time.monotonic())

    async with open_runtime(settings, migrate_schema=True) as ctx:
        if ctx.dispatcher is None:
            raise SystemExit("open_runtime built no dispatcher: alerts or rules are off")
        async with ctx.http.post(base + "/reset") as resp:
            resp.raise_for_status()
        outcomes: list[MessageOutcome] = []
        ctx.dispatcher.observers.append(outcomes.append)
        ctx.observers.append(committed)
        undo = instrument(ctx.dispatcher, phases)
        try:
            cpu, loop_cpu = _cpu(), time.thread_time()
            async with dispatching(ctx, grace_period=60.0):
                polls = await poll_once(ctx)
                if any(o.status != "ok" for o in polls):
                    raise SystemExit(f"flood: not every poll ok: {polls[:3]}")
                async with ctx.sessionmaker() as session:
                    expected = int(
                        await session.scalar(select(func.count()).select_from(Delivery)) or 0
                    )
                await wait_for_deliveries(counters, expected, 300.0)
            cpu, loop_cpu = _cpu() - cpu, time.thread_time() - loop_cpu
        finally:
            undo()
        statuses, messages = await _outcome(ctx, base)
    # A send may have been retried on the way (the Slack stand-in under load): what
    # counts is that every delivery ends sent.
    if set(statuses) != {"sent"} or statuses["sent"] < expected:
        raise SystemExit(f"{backend} flood: deliveries by status {statuses}, {expected} expected")
    phases.retried = sum(o.status != "sent" for o in outcomes)
    latencies = [
        received - commits[article // 100_000]
        for received, _, _, articles in messages
        for article in articles
    ]
    if not latencies:
        raise SystemExit(f"{backend} flood: no farm link in any message")
    return Run(
        backend=backend,
        mode="flood",
        signals=expected,
        per_transaction=1,
        latencies=latencies,
        first_commit=min(commits.values()),
        last_commit=max(commits.values()),
        started=min(commits.values()),
        last_receipt=max(m[0] for m in messages),
        messages=len(messages),
        lateness=[],
        cpu=cpu,
        loop_cpu=loop_cpu,
        phases=phases,
        statuses=statuses,
    )


def check(
    backend: str,
    mode: str,
    count: int,
    messages: list[Any],
    statuses: dict[str, int],
    outcomes: list[MessageOutcome],
) -> dict[int, float]:
    """Every signal received exactly once, every message whole, every delivery sent;
    returns each signal's receipt time. Stops the script otherwise."""
    where = f"{backend} {mode}"
    receipts: dict[int, float] = {}
    twice: set[int] = set()
    for received, found, declared, _ in messages:
        if len(found) != declared:
            raise SystemExit(
                f"{where}: a message declares {declared} signals but lists {len(found)}"
            )
        for n in found:
            if n in receipts:
                twice.add(n)
            receipts[n] = received
    missing = set(range(count)) - set(receipts)
    stray = set(receipts) - set(range(count))
    if missing or twice or stray:
        raise SystemExit(
            f"{where}: {len(missing)} signals never received (e.g. {sorted(missing)[:5]}), "
            f"{len(twice)} received more than once (e.g. {sorted(twice)[:5]}), "
            f"{len(stray)} unknown"
        )
    if statuses != {"sent": count}:
        raise SystemExit(f"{where}: deliveries by status {statuses}, expected {count} sent")
    not_sent = [o for o in outcomes if o.status != "sent"]
    if not_sent:
        raise SystemExit(f"{where}: {len(not_sent)} messages not sent, e.g. {not_sent[0]}")
    return receipts


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0–100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


HEADER = (
    "| database   | run          | commits/s | deliveries/s | messages | sig/msg "
    "| p50 ms | p99 ms | max ms | rounds | CPU s (loop) |\n"
    "|------------|--------------|----------:|-------------:|---------:|--------:"
    "|-------:|-------:|-------:|-------:|-------------:|"
)


def report(run: Run) -> str:
    ms = [x * 1000 for x in run.latencies]
    span = run.last_commit - run.first_commit
    commit_rate = (run.signals - run.per_transaction) / span if span > 0 else float("inf")
    label = run.mode if run.per_transaction == 1 else f"{run.mode} ×{run.per_transaction}"
    if run.mode == "backlog":
        # Every signal waited for the dispatcher to start: no latency to speak of.
        latency = f"| {'–':>6} | {'–':>6} | {'–':>6} "
    else:
        latency = f"| {statistics.median(ms):6.1f} | {percentile(ms, 99):6.1f} | {max(ms):6.1f} "
    if run.mode == "paced":
        # The dispatcher keeps up with the producer: signals over the run's span is
        # the pacing (--rate) again, not how fast deliveries can go.
        deliveries = f"| {'–':>12} "
    else:
        deliveries = f"| {run.signals / (run.last_receipt - run.started):12,.0f} "
    return (
        f"| {run.backend:<10} | {label:<12} | {commit_rate:9,.0f} "
        + deliveries
        + f"| {run.messages:8,} | {run.signals / run.messages:7.2f} "
        + latency
        + f"| {run.phases.rounds:6,} | {run.cpu:5.1f} ({run.loop_cpu:4.1f}) |"
    )


def phase_line(run: Run) -> str:
    p = run.phases
    rounds, msgs = max(p.rounds, 1), max(run.messages, 1)
    rest = p.round - p.claim - p.send - p.mark - p.next_due
    line = (
        f"  {run.backend} {run.mode}: {p.claimed / rounds:.2f} signals claimed per round; "
        f"per round {p.round / rounds * 1000:.2f} ms = claim+plan "
        f"{p.claim / rounds * 1000:.2f} + sends {p.send / rounds * 1000:.2f} + attempts "
        f"and marks {p.mark / rounds * 1000:.2f} + closing marks and next due "
        f"{p.next_due / rounds * 1000:.2f} + rest {rest / rounds * 1000:.2f} (claim "
        f"transaction begin/commit, charts, log lines); per message: send "
        f"{p.send / msgs * 1000:.2f} ms (render {p.render / msgs * 1000:.2f}), attempt "
        f"and mark {p.mark / msgs * 1000:.2f} ms; rounds busy "
        f"{p.round:.2f} s of {run.last_receipt - run.started:.2f} s"
    )
    if run.mode == "flood":
        line += f"; {p.retried} message sends retried"
    if run.lateness:
        late = [x * 1000 for x in run.lateness]
        line += (
            f"; producer: slot lateness p50 {statistics.median(late):.1f} ms, "
            f"p99 {percentile(late, 99):.1f} ms, max {max(late):.1f} ms"
        )
    return line


# ------------------------------------------------------------------ profiling

_GROUPS = (
    ("sqlalchemy", "/sqlalchemy/"),
    ("aiosqlite", "/aiosqlite/"),
    ("asyncpg", "/asyncpg/"),
    ("aiohttp/yarl/multidict", ("/aiohttp/", "/yarl/", "/multidict/")),
    ("structlog/logging", ("/structlog/", "/logging/")),
    ("monitor/alerts", "/monitor/alerts/"),
    ("monitor (other)", "/monitor/"),
    ("asyncio", "/asyncio/"),
    ("json", "/json/"),
)


def profile_summary(stats: pstats.Stats, top: int = 12) -> str:
    """Own time by package (the event loop's wait in epoll apart), then the functions
    with the most own time."""
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    groups: dict[str, float] = {}
    idle = 0.0
    for (filename, _line, name), (_cc, _nc, tt, _ct, _callers) in table.items():
        if name == "<method 'poll' of 'select.epoll' objects>":
            idle += tt
            continue
        label = "other (C builtins: greenlet, sockets, queues; stdlib)"
        for group, needles in _GROUPS:
            if any(n in filename for n in ((needles,) if isinstance(needles, str) else needles)):
                label = group
                break
        groups[label] = groups.get(label, 0.0) + tt
    busy = sum(groups.values()) or 1.0
    lines = [
        f"    busy {busy:.2f} s, waiting in epoll {idle:.2f} s; busy time: "
        + ", ".join(f"{g} {t / busy:.0%}" for g, t in sorted(groups.items(), key=lambda g: -g[1]))
    ]
    ranked = sorted(table.items(), key=lambda kv: -kv[1][2])
    shown = 0
    for (filename, line, name), (_cc, nc, tt, ct, _callers) in ranked:
        if name == "<method 'poll' of 'select.epoll' objects>":
            continue
        short = "/".join(Path(filename).parts[-2:]) if filename != "~" else "~"
        lines.append(
            f"    {tt / busy:5.1%} own {ct:7.2f} s cum {nc:>9,} calls  {short}:{line} {name}"
        )
        shown += 1
        if shown == top:
            break
    return "\n".join(lines)


# ------------------------------------------------------------------ the script


def run_backend(
    backend: str, url: str, tmp: Path, port: int, counters: Any, args: Any
) -> list[Run]:
    runs = []
    try:
        for mode in args.modes:
            if backend == "sqlite":
                db_url = f"sqlite+aiosqlite:///{tmp / f'{mode}.db'}"
            else:
                asyncio.run(fresh_postgres(url))
                db_url = url
            profiler = cProfile.Profile() if args.profile else None
            if profiler is not None:
                profiler.enable()
            try:
                if mode == "flood":
                    run = asyncio.run(flood_run(backend, db_url, port, counters, args))
                else:
                    run = asyncio.run(one_run(backend, db_url, port, mode, counters, args))
            finally:
                if profiler is not None:
                    profiler.disable()
                for leftover in tmp.glob(f"{mode}.db*"):
                    leftover.unlink()
            print(report(run), flush=True)
            runs.append(run)
            if profiler is not None:
                print(f"  cProfile, {backend} {mode}, event-loop thread:")
                print(profile_summary(pstats.Stats(profiler)), flush=True)
    finally:
        if backend == "postgresql":
            asyncio.run(fresh_postgres(url, drop_only=True))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--signals", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=100.0, help="paced run: signals per second")
    ap.add_argument("--burst-batch", type=int, default=1, help="burst run: signals per transaction")
    ap.add_argument(
        "--max-per-message",
        type=int,
        default=None,
        help="alerts.dispatch.max_per_message (default: the setting's default)",
    )
    ap.add_argument(
        "--modes",
        default="paced,burst,backlog",
        help="comma-separated: paced, burst, backlog, flood (a first cycle of the feed farm)",
    )
    ap.add_argument("--flood-feeds", type=int, default=1000, help="flood: feeds of the farm")
    ap.add_argument("--flood-items", type=int, default=50, help="flood: items per feed")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--profile", action="store_true", help="run under cProfile (slower)")
    ap.add_argument("--lifetime", type=float, default=900, help="server stops after this (s)")
    args = ap.parse_args()
    if args.signals < 1 or args.rate <= 0 or args.burst_batch < 1:
        ap.error("--signals and --burst-batch must be at least 1, --rate above 0")
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or set(args.modes) - set(MODES):
        ap.error(f"--modes: choose from {', '.join(MODES)}")
    if not args.skip_pg and "bench" not in (make_url(args.pg_url).database or ""):
        ap.error("--pg-url: the database is dropped and recreated; its name must contain 'bench'")

    # Settings gives KMON_* variables precedence over arguments: none of the machine's
    # configuration (a real database URL above all) may leak into the benchmark.
    for name in [n for n in os.environ if n.startswith("KMON_")]:
        del os.environ[name]
    from monitor.alerting import DispatchSettings
    from monitor.logs import configure_logging

    mp = multiprocessing.get_context("spawn")
    counters = mp.Array("q", 2)
    ours, theirs = mp.Pipe()
    server = mp.Process(target=serve_slack, args=(theirs, counters, args.lifetime), daemon=True)
    server.start()
    farm = None
    if "flood" in args.modes:
        from bench.feed_farm import serve_farm

        farm_ours, farm_theirs = mp.Pipe()
        farm = mp.Process(
            target=serve_farm,
            args=(farm_theirs, args.flood_feeds, args.flood_items, [1.0], args.lifetime),
            daemon=True,
        )
        farm.start()
        args.farm_port, sizes = farm_ours.recv()
        print(
            f"feed farm on {HOST}:{args.farm_port}: {args.flood_feeds} feeds × "
            f"{args.flood_items} items, every item on topic ({sum(sizes.values()) / 1e6:.1f} MB)"
        )
    try:
        with open(os.devnull, "w", encoding="utf-8") as devnull:
            # As the CLI would: JSON lines at INFO (one "delivery" line per message).
            configure_logging("json", "INFO", stream=devnull)
            port = ours.recv()
            backends, pg_note = databases(args)
            defaults = DispatchSettings()
            print(
                f"Slack stand-in on {HOST}:{port} (pid {server.pid}); {args.signals:,} "
                f"signals per run; paced at {args.rate:g}/s, one per transaction; burst "
                f"{args.burst_batch} per transaction; backlog written {BACKLOG_BATCH} per "
                "transaction before the dispatcher starts; group_wait 0, no throttle, "
                f"max_per_message {args.max_per_message or defaults.max_per_message}, "
                f"batch {defaults.batch}; Python {sys.version.split()[0]}, "
                f"{os.cpu_count()} CPUs; load average "
                + ", ".join(f"{x:.2f}" for x in os.getloadavg())
                + ("; under cProfile" if args.profile else "")
            )
            if pg_note:
                print(pg_note)
            print(HEADER, flush=True)
            runs: list[Run] = []
            with tempfile.TemporaryDirectory(prefix="kmon-alerts-") as tmp:
                for backend, url in backends:
                    runs += run_backend(backend, url, Path(tmp), port, counters, args)
            print(
                "commits/s = signals committed per second by the producer; deliveries/s "
                "= signals received / (last receipt − first commit; backlog: − dispatcher "
                "start): backlog, the drain rate; burst, producer and dispatcher on one "
                "loop; paced, not shown (it would be --rate); latency = receipt "
                "at the stand-in − commit, per signal; CPU = this process (user+sys, all "
                "threads), loop = the event-loop thread (producer and dispatcher)."
            )
            for run in runs:
                print(phase_line(run))
            print(
                "checked: every signal received exactly once, every message listing "
                "all it declares, every delivery row 'sent'."
            )
    finally:
        if farm is not None:
            farm_ours.send("stop")
            farm.join(timeout=10)
        ours.send("stop")
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()
            server.join()


if __name__ == "__main__":
    main()
