"""Quote cycles: kmon polls a loopback stand-in of Naver's polling endpoint and stores.

Run: .venv/bin/python bench/quote_cycle.py  (prints figures; not a test)

A separate (spawned) process serves ``/api/realtime`` on 127.0.0.1 with aiohttp, the
way ``polling.finance.naver.com`` does: it reads ``query=SERVICE_ITEM:c,c|SERVICE_INDEX:i``
and answers every requested code with a plausible quote in the older ("legacy")
envelope, index prices ×100, ``time`` = now in epoch milliseconds (strictly increasing
from one request to the next), prices within ±8% of a fixed previous close. It counts
requests and codes.

For each database (a new SQLite file in a temporary directory; PostgreSQL created and
dropped by the script) and each batch size, kmon gets ``Settings`` built in code:
``--tickers`` tickers (invented six-digit codes plus the KOSPI index), providers
``[naver]`` pointing at the stand-in, no news sources; ``open_runtime(...,
migrate_schema=True)``, then ``--cycles`` back-to-back ``poll_quotes`` cycles. Every
answer carries a new ``time``, so every cycle stores one new row per ticker; the script
checks that it does. The first cycle is reported apart (warm-up); median and p95 are
over the others. ``--history N`` first stores N earlier cycles (one a minute, untimed),
to see a cycle on a table that has been filling for a while. The server stops when the
script ends, or after ``--lifetime`` s.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch_db import databases, fresh_postgres

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/kmon_bench_quotes"
HOST = "127.0.0.1"
PATH = "/api/realtime"
INDEX = "KOSPI"

if TYPE_CHECKING:
    from monitor.ingest.context import PollContext

P = ParamSpec("P")
T = TypeVar("T")


def stock_codes(count: int) -> list[str]:
    """``count`` invented six-digit codes (99xxxx: no listed KRX company uses them)."""
    return [f"{990000 + n:06d}" for n in range(count)]


# ---------------------------------------------------------------- the stand-in server


def _tick(price: float) -> int:
    """KRX's tick size for a stock price in won."""
    for below, tick in ((2_000, 1), (5_000, 5), (20_000, 10), (50_000, 50), (200_000, 100)):
        if price < below:
            return tick
    return 500 if price < 500_000 else 1_000


def _snap(price: float) -> int:
    tick = _tick(price)
    return max(tick, round(price / tick) * tick)


def _prev_close(code: str) -> int:
    """A fixed previous close per code, log-uniform between 1,000 and 800,000 won
    (×100 index points for the index)."""
    if code == INDEX:
        return 295_020
    rng = random.Random(code)
    return _snap(math.exp(rng.uniform(math.log(1_000), math.log(800_000))))


def _item(code: str, price: int, prev: int, name: str) -> dict[str, Any]:
    """One item of the older envelope (short keys, unsigned change, direction in ``rf``)."""
    change = price - prev
    return {
        "cd": code, "nm": name, "sv": prev, "pcv": prev, "nv": price, "cv": abs(change),
        "cr": round(abs(change) / prev * 100, 2),
        "rf": "2" if change > 0 else "5" if change < 0 else "3",
        "mt": "1", "ms": "OPEN", "tyn": "N",
        "ov": prev, "hv": max(price, prev), "lv": min(price, prev),
        "ul": _snap(prev * 1.3), "ll": _snap(prev * 0.7),
        "aq": 1_000_000 + (price % 7919) * 131, "aa": price * 1_000_000,
        "nav": None, "keps": 1234, "eps": 1234, "bps": 45678.0, "cnsEps": None, "dv": 500.0,
    }  # fmt: skip


def answer(query: str, now_ms: int, rng: random.Random) -> tuple[bytes, int]:
    """The polling answer to ``query`` at ``now_ms``, and how many codes it covers."""
    areas: list[dict[str, Any]] = []
    covered = 0
    for part in query.split("|"):
        area, _, codes = part.partition(":")
        wanted = [c for c in codes.split(",") if c]
        if area == "SERVICE_ITEM":
            datas = []
            for code in wanted:
                prev = _prev_close(code)
                price = _snap(prev * (1 + rng.uniform(-0.08, 0.08)))
                datas.append(_item(code, price, prev, f"케이몬{code[-3:]}전자"))
        elif area == "SERVICE_INDEX":
            # Index points ×100 as integers, no ``rf``, volume in thousands of shares.
            datas = []
            for code in wanted:
                prev = _prev_close(code)
                item = _item(code, round(prev * (1 + rng.uniform(-0.02, 0.02))), prev, "코스피")
                del item["rf"]
                datas.append({**item, "aq": 700_000})
        else:
            continue
        covered += len(datas)
        areas.append({"name": area, "datas": datas})
    envelope = {"resultCode": "success", "result": {"pollingInterval": 7000, "areas": areas,
                                                    "time": now_ms}}  # fmt: skip
    return json.dumps(envelope, ensure_ascii=False).encode(), covered


def serve_naver(conn: Connection, counters: Any, lifetime: float) -> None:
    """Child process: the stand-in on 127.0.0.1; sends its port; stops when told or due.

    ``counters`` is a shared array: [requests, codes answered].
    """
    from aiohttp import web

    from bench.loopback import serve_until_told

    rng = random.Random(20250618)
    last_ms = 0

    async def realtime(request: web.Request) -> web.Response:
        nonlocal last_ms
        query = request.query.get("query", "")
        # Strictly increasing: two requests in the same millisecond are two new quotes.
        last_ms = max(int(time.time() * 1000), last_ms + 1)
        body, covered = answer(query, last_ms, rng)
        with counters.get_lock():
            counters[0] += 1
            counters[1] += covered
        if not covered:
            return web.Response(status=400, text="bad query")
        return web.Response(body=body, content_type="application/json", charset="utf-8")

    app = web.Application()
    app.router.add_get(PATH, realtime)
    serve_until_told(app, conn, lifetime)


# ------------------------------------------------------------------ the kmon side


@dataclass
class Phases:
    """Seconds spent in the parts of ``poll_quotes`` that the script can see."""

    fetch: float = 0.0  # provider call: HTTP round trips + parse_realtime
    latest: float = 0.0  # quotes_repo.latest_price (the index reference for check_quote)
    insert: float = 0.0  # quotes_repo.insert_quotes (the statement, not the commit)
    # rule evaluation: the bar figures and KOSPI change (ctx.bars.move_facts), the
    # recent news (signals_repo.recent_news) and ctx.rules.judge_quotes
    judge: float = 0.0


@dataclass
class Cycle:
    wall: float
    cpu: float
    requests: int
    stored: int
    phases: Phases


@dataclass
class Run:
    backend: str
    batch_size: int
    cycles: list[Cycle] = field(default_factory=list)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(
    fn: Callable[P, Awaitable[T]], add: Callable[[float], None]
) -> Callable[P, Coroutine[Any, Any, T]]:
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            add(time.perf_counter() - started)

    return wrapper


@contextmanager
def instrumented(ctx: PollContext, phases: list[Phases]) -> Iterator[None]:
    """Wrap the provider call, the two quote queries and the rule evaluation to time
    them (``phases[-1]``)."""
    from monitor.db import quotes as quotes_repo
    from monitor.db import signals as signals_repo
    from monitor.ingest import quotes

    naver, latest, insert = (
        quotes.PROVIDERS["naver"],
        quotes_repo.latest_price,
        quotes_repo.insert_quotes,
    )

    def add(name: str) -> Callable[[float], None]:
        def to(seconds: float) -> None:
            setattr(phases[-1], name, getattr(phases[-1], name) + seconds)

        return to

    recent_news = signals_repo.recent_news
    rules: Any = ctx.rules  # instance attributes shadow the methods for this run only
    bars: Any = ctx.bars
    judge_quotes = rules.judge_quotes

    def timed_judge(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return judge_quotes(*args, **kwargs)
        finally:
            add("judge")(time.perf_counter() - started)

    quotes.PROVIDERS["naver"] = _timed(naver, add("fetch"))
    quotes_repo.latest_price = _timed(latest, add("latest"))
    quotes_repo.insert_quotes = _timed(insert, add("insert"))
    signals_repo.recent_news = _timed(recent_news, add("judge"))
    bars.move_facts = _timed(bars.move_facts, add("judge"))
    rules.judge_quotes = timed_judge
    try:
        yield
    finally:
        quotes.PROVIDERS["naver"] = naver
        quotes_repo.latest_price = latest
        quotes_repo.insert_quotes = insert
        signals_repo.recent_news = recent_news
        del bars.move_facts, rules.judge_quotes


async def run_cycles(
    backend: str, db_url: str, port: int, batch_size: int, counters: Any, args: Any
) -> Run:
    from monitor.config import DatabaseSettings, QuoteSettings, Settings, TickerConfig
    from monitor.ingest.quotes import poll_quotes
    from monitor.service.daemon import open_runtime

    base = f"http://{HOST}:{port}"
    tickers = [
        TickerConfig(code=code, name_ko=f"케이몬{code[-3:]}전자", name_en=f"Kmon {code}")
        for code in stock_codes(args.tickers - 1)
    ] + [TickerConfig(code=INDEX, kind="index", name_ko="코스피", name_en="KOSPI")]
    settings = Settings(
        database=DatabaseSettings(url=db_url),
        log_format="json",
        sources=[],
        quotes=QuoteSettings(
            providers=["naver"],
            batch_size=batch_size,
            tickers=tickers,
            # Only naver is asked; the others point here too, so that nothing but
            # 127.0.0.1 could ever be.
            naver_polling_url=base + PATH,
            naver_mobile_url=base + "/unused/mobile",
            naver_chart_url=base + "/unused/fchart",
            yahoo_chart_url=base + "/unused/yahoo",
        ),
    )
    run = Run(backend, batch_size)
    phases: list[Phases] = []
    async with open_runtime(settings, migrate_schema=True) as ctx:
        if args.history:
            await prefill(ctx, [t.code for t in tickers], args.history)
        with instrumented(ctx, phases):
            for n in range(args.cycles):
                phases.append(Phases())
                requests_before = counters[0]
                started, cpu = time.perf_counter(), _cpu()
                cycle = await poll_quotes(ctx, settings.quotes)
                wall, used = time.perf_counter() - started, _cpu() - cpu
                if cycle.stored != args.tickers or cycle.rejected or cycle.missing or cycle.failed:
                    raise SystemExit(
                        f"{backend} batch {batch_size} cycle {n + 1}: stored {cycle.stored} "
                        f"of {args.tickers}; rejected {cycle.rejected[:3]}, missing "
                        f"{cycle.missing[:3]}, failed {cycle.failed}"
                    )
                run.cycles.append(
                    Cycle(wall, used, counters[0] - requests_before, cycle.stored, phases[-1])
                )
    return run


async def prefill(ctx: PollContext, codes: list[str], cycles: int) -> None:
    """Store ``cycles`` earlier cycles, one a minute back from now, as the daemon would
    have over ``cycles`` minutes of trading (not timed)."""
    from sqlalchemy import insert, text

    from monitor.db.schema import Base

    table = Base.metadata.tables["quotes"]
    now = datetime.now(UTC)
    prices = {code: _prev_close(code) / (100 if code == INDEX else 1) for code in codes}

    def row(code: str, price: float, at: datetime) -> dict[str, Any]:
        return {
            "ticker": code, "as_of": at, "source": "naver", "price": price,
            "prev_close": price, "change": 0.0, "change_pct": 0.0, "open": price,
            "high": price, "low": price, "volume": 1_000_000, "currency": "KRW",
            "market_open": True, "fetched_at": at,
        }  # fmt: skip

    rows = (
        row(code, price, now - timedelta(minutes=cycles - k))
        for k in range(cycles)
        for code, price in prices.items()
    )
    async with ctx.sessionmaker.begin() as session:
        conn = await session.connection()
        while chunk := list(itertools.islice(rows, 20_000)):
            await conn.execute(insert(table), chunk)
    if conn.dialect.name == "postgresql":
        # As autovacuum would have by then: the planner knows the table's size.
        async with ctx.sessionmaker.begin() as session:
            await session.execute(text("ANALYZE quotes"))


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def report(run: Run) -> str:
    first, rest = run.cycles[0], run.cycles[1:] or run.cycles[:1]
    walls = [c.wall for c in rest]
    requests = sorted({c.requests for c in run.cycles})
    rate = sum(c.stored for c in rest) / sum(walls)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:6.1f}"

    other = [
        c.wall - c.phases.fetch - c.phases.latest - c.phases.insert - c.phases.judge for c in rest
    ]
    return (
        f"| {run.backend:<10} | {run.batch_size:>5} | {'/'.join(map(str, requests)):>8} "
        f"| {first.wall * 1000:7.1f} | {ms(walls)} | {p95(walls) * 1000:6.1f} "
        f"| {rate:8,.0f} | {ms([c.cpu for c in rest])} "
        f"| {ms([c.phases.fetch for c in rest])} | {ms([c.phases.latest for c in rest])} "
        f"| {ms([c.phases.insert for c in rest])} | {ms([c.phases.judge for c in rest])} "
        f"| {ms(other)} |"
    )


HEADER = (
    "| database   | batch | req/cyc  | 1st ms  | med ms | p95 ms | quotes/s | CPU ms "
    "| fetch  | latest | insert | judge  | rest   |\n"
    "|------------|------:|---------:|--------:|-------:|-------:|---------:|-------:"
    "|-------:|-------:|-------:|-------:|-------:|"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickers", type=int, default=200, help="including the KOSPI index")
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--batch-sizes", default="50,200,1", help="comma-separated, 1–200")
    ap.add_argument(
        "--history",
        type=int,
        default=0,
        help="earlier cycles stored before the timed ones (one a minute; 390 = a session)",
    )
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--lifetime", type=float, default=600, help="server stops after this (s)")
    args = ap.parse_args()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    if args.tickers < 2 or args.cycles < 2:
        ap.error("--tickers and --cycles must be at least 2")

    # Settings gives KMON_* variables precedence over arguments: none of the machine's
    # configuration (a real database URL above all) may leak into the benchmark.
    for name in [n for n in os.environ if n.startswith("KMON_")]:
        del os.environ[name]
    from monitor.logs import configure_logging

    mp = multiprocessing.get_context("spawn")
    counters = mp.Array("q", 2)
    ours, theirs = mp.Pipe()
    server = mp.Process(target=serve_naver, args=(theirs, counters, args.lifetime), daemon=True)
    server.start()
    try:
        with open(os.devnull, "w", encoding="utf-8") as devnull:
            # As the CLI would: JSON lines at INFO (one "quotes" line per cycle).
            configure_logging("json", "INFO", stream=devnull)
            port = ours.recv()
            backends, pg_note = databases(args)
            print(
                f"stand-in Naver polling endpoint on {HOST}:{port} (pid {server.pid}); "
                f"{args.tickers} tickers ({args.tickers - 1} stocks + {INDEX}); "
                f"{args.cycles} cycles per run; history {args.history:,} cycles "
                f"({args.history * args.tickers:,} rows) stored first; "
                f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
            )
            if pg_note:
                print(pg_note)
            print(HEADER)
            with tempfile.TemporaryDirectory(prefix="kmon-quotes-") as tmp:
                for backend, url in backends:
                    for batch in batch_sizes:
                        if backend == "sqlite":
                            db_url = f"sqlite+aiosqlite:///{Path(tmp) / f'batch{batch}.db'}"
                        else:
                            asyncio.run(fresh_postgres(url))
                            db_url = url
                        try:
                            run = asyncio.run(
                                run_cycles(backend, db_url, port, batch, counters, args)
                            )
                        finally:
                            if backend == "postgresql":
                                asyncio.run(fresh_postgres(url, drop_only=True))
                        print(report(run), flush=True)
            print(
                f"server total: {counters[0]:,} requests, {counters[1]:,} codes answered. "
                "Times are per poll_quotes call; 1st = first cycle (warm-up), med/p95 over "
                "the others; quotes/s = stored rows / their time; CPU = this process "
                "(user+sys, all threads); fetch/latest/insert = medians of the provider "
                "call, latest_price and insert_quotes; judge = rule evaluation (move_facts: "
                "bar figures and the KOSPI change, recent_news, judge_quotes); rest = the "
                "remainder (sessions, load_sources, check_quote, store_signals, commit, "
                "source row, log line)."
            )
    finally:
        ours.send("stop")
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()
            server.join()


if __name__ == "__main__":
    main()
