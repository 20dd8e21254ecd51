"""Backfill storage and a replay on daily bars: what a past year costs.

Run: .venv/bin/python bench/replay_bars.py  (prints figures; not a test)

For each database (a new SQLite file in a temporary directory; PostgreSQL created and
dropped by the script), kmon's schema is made and ``--tickers`` tickers (invented
six-digit codes, NAVER, Kakao and the KOSPI) get ``--days`` trading days of synthetic
daily bars each, ending 2025-06-19. Timed:

- ``store_bars`` of all of them on the empty table (what ``kmon quotes backfill``
  stores), then again (the idempotent re-run: nothing new, nothing corrected);
- ``replay`` with the default rules over the last month and over the last year of the
  bars, no quote stored: every ticker's sessions are judged on their bars as closing
  quotes (bar figures, 52-week range, volume average per ticker and session).

Each figure is the median of ``--runs`` runs (the store once per database: the second
store is the idempotent one). The script checks the replay judged every bar it should.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.records import DailyBar
from bench.scratch_db import fresh_postgres, postgres_problem

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/kmon_bench_replay"
LAST = date(2025, 6, 19)


def synthetic_bars(tickers: list[str], days: list[date]) -> list[DailyBar]:
    """A seeded random walk of OHLCV bars per ticker."""
    bars = []
    for ticker in tickers:
        rng = random.Random(ticker)
        close = 2_900.0 if ticker == "KOSPI" else rng.uniform(5_000, 300_000)
        for day in days:
            opened = close
            close = round(close * (1 + rng.uniform(-0.03, 0.03)), 2)
            high = max(opened, close) * (1 + rng.uniform(0, 0.02))
            low = min(opened, close) * (1 - rng.uniform(0, 0.02))
            volume = rng.randint(100_000, 5_000_000)
            bars.append(DailyBar(ticker, day, opened, high, low, close, volume, "naver"))
    return bars


async def run(url: str, tickers: list[str], days: list[date], runs: int) -> dict[str, float]:
    from monitor.db import quotes as quotes_repo
    from monitor.db.engine import make_engine, make_sessionmaker
    from monitor.db.migrate import upgrade
    from monitor.ingest.replay import replay
    from monitor.rules.model import load_rules
    from monitor.timefmt import KST

    engine = make_engine(url)
    await upgrade(engine)
    sessionmaker = make_sessionmaker(engine)
    bars = synthetic_bars(tickers, days)
    figures: dict[str, float] = {}
    now = datetime.now(UTC)
    try:
        for label in ("store", "store again"):
            started = time.perf_counter()
            async with sessionmaker.begin() as session:
                new, corrected = await quotes_repo.store_bars(session, bars, fetched_at=now)
            figures[label] = time.perf_counter() - started
            expected = (len(bars), 0) if label == "store" else (0, 0)
            assert (new, corrected) == expected, (label, new, corrected)
        ruleset = load_rules(None)
        for label, first in (("replay month", days[-21]), ("replay year", days[-250])):
            since = datetime.combine(first, datetime.min.time(), KST)
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                async with sessionmaker() as session:
                    result = await replay(session, ruleset, since=since, until=None)
                times.append(time.perf_counter() - started)
            judged = len([d for d in days if d >= first]) * len(tickers)
            assert result.bar_quotes == judged, (result.bar_quotes, judged)
            figures[label] = statistics.median(times)
            figures[f"{label} bars"] = judged
    finally:
        await engine.dispose()
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tickers", type=int, default=50, help="tickers in all (3 real ones)")
    ap.add_argument("--days", type=int, default=500, help="trading days of bars each")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    args = ap.parse_args()

    from monitor import market

    days = market.trading_days_between(date(2021, 1, 4), LAST)[-args.days :]
    invented = [f"{990000 + n:06d}" for n in range(args.tickers - 3)]
    tickers = ["035420", "035720", "KOSPI", *invented]
    print(f"{len(tickers)} tickers × {len(days)} days ({days[0]} to {days[-1]}), {args.runs} runs")
    targets: list[tuple[str, str]] = []
    if not args.skip_sqlite:
        folder = tempfile.mkdtemp(prefix="kmon-bench-replay-")
        targets.append(("SQLite", f"sqlite+aiosqlite:///{folder}/bench.db"))
    if not args.skip_pg:
        problem = postgres_problem(args.pg_url)
        if problem:
            print(f"PostgreSQL skipped: {problem}")
        else:
            targets.append(("PostgreSQL", args.pg_url))
    print("| database | bars | store s | store again s | replay month s (bars) | year s (bars) |")
    print("|---|--:|--:|--:|--:|--:|")
    for name, url in targets:
        if name == "PostgreSQL":
            asyncio.run(fresh_postgres(url))
        try:
            f = asyncio.run(run(url, tickers, days, args.runs))
        finally:
            if name == "PostgreSQL":
                asyncio.run(fresh_postgres(url, drop_only=True))
        print(
            f"| {name} | {len(tickers) * len(days):,} | {f['store']:.2f} | {f['store again']:.2f}"
            f" | {f['replay month']:.2f} ({f['replay month bars']:,.0f})"
            f" | {f['replay year']:.2f} ({f['replay year bars']:,.0f}) |"
        )


if __name__ == "__main__":
    main()
