"""/metrics scrape cost: the database reading behind each scrape, on a large database.

Run: .venv/bin/python bench/metrics_scrape.py  (prints figures; not a test)

Every scrape of ``/metrics`` reads the stored state (sources, signals by kind and
rule, the outbox per channel) before it renders. This script fills a scratch database
(a new SQLite file; PostgreSQL created and dropped by the script) with ``--sources``
sources, ``--signals`` signals over ``--rules`` rules and two deliveries per signal
(most sent, some pending, some dead), then times ``Metrics.refresh`` plus rendering,
``--scrapes`` times, and prints the median and the worst.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import generate_latest
from sqlalchemy import insert

from bench.scratch_db import fresh_postgres, postgres_problem
from monitor.db import migrate
from monitor.db.engine import make_engine, make_sessionmaker
from monitor.db.schema import Delivery, SignalRow, Source
from monitor.service.metrics import Metrics

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/kmon_bench_metrics"
BATCH = 5_000


async def fill(url: str, *, sources: int, signals: int, rules: int) -> None:
    engine = make_engine(url, null_pool=True)
    await migrate.upgrade(engine)
    now = datetime.now(UTC)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(Source),
                [
                    {
                        "name": f"feed-{n}",
                        "kind": "feed",
                        "url": f"https://feed-{n}.example.kr/rss",
                        "interval_seconds": 600.0,
                        "enabled": True,
                        "status": "ok",
                        "error_count": 0,
                        "created_at": now,
                    }
                    for n in range(sources)
                ],
            )
            for start in range(0, signals, BATCH):
                rows = [
                    {
                        "id": n + 1,
                        "kind": ("news", "move", "policy_move")[n % 3],
                        "rule_id": f"rule-{n % rules}",
                        "severity": "warning",
                        "subject": "naver",
                        "tickers": " 035420 ",
                        "headline": f"headline {n}",
                        "event_time": now - timedelta(seconds=signals - n),
                        "created_at": now - timedelta(seconds=signals - n),
                        "dedup_key": f"bench:{n}",
                        "explanation": {},
                    }
                    for n in range(start, min(signals, start + BATCH))
                ]
                await conn.execute(insert(SignalRow), rows)
                # 1 in 500 pending, 1 in 1000 dead, the rest sent.
                await conn.execute(
                    insert(Delivery),
                    [
                        {
                            "signal_id": row["id"],
                            "route": "default",
                            "channel": channel,
                            "status": "pending"
                            if row["id"] % 500 == 0
                            else "dead"
                            if row["id"] % 1000 == 1
                            else "sent",
                            "due_at": row["created_at"],
                            "attempts": 1,
                            "created_at": row["created_at"],
                        }
                        for row in rows
                        for channel in ("slack", "email")
                    ],
                )
    finally:
        await engine.dispose()


async def time_scrapes(url: str, scrapes: int) -> list[float]:
    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    metrics = Metrics()
    await metrics.seed(sessionmaker)
    took = []
    try:
        for _ in range(scrapes):
            started = time.perf_counter()
            await metrics.refresh(sessionmaker)
            generate_latest(metrics.registry)
            took.append(time.perf_counter() - started)
        assert metrics.stored.database_up, "the database reading failed"
    finally:
        await engine.dispose()
    return took


def report(name: str, took: list[float]) -> None:
    ms = sorted(t * 1000 for t in took)
    print(f"{name:11} median {statistics.median(ms):7.1f} ms   worst {ms[-1]:7.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sources", type=int, default=200)
    ap.add_argument("--signals", type=int, default=200_000)
    ap.add_argument("--rules", type=int, default=40)
    ap.add_argument("--scrapes", type=int, default=30)
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    ap.add_argument("--skip-pg", action="store_true")
    args = ap.parse_args()
    print(
        f"{args.sources} sources, {args.signals} signals over {args.rules} rules, "
        f"{2 * args.signals} deliveries; {args.scrapes} scrapes"
    )
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'kmon.db'}"
        asyncio.run(fill(url, sources=args.sources, signals=args.signals, rules=args.rules))
        report("SQLite", asyncio.run(time_scrapes(url, args.scrapes)))
    if args.skip_pg:
        return
    problem = postgres_problem(args.pg_url)
    if problem:
        print(f"PostgreSQL skipped: {problem}")
        return
    asyncio.run(fresh_postgres(args.pg_url))
    try:
        asyncio.run(fill(args.pg_url, sources=args.sources, signals=args.signals, rules=args.rules))
        report("PostgreSQL", asyncio.run(time_scrapes(args.pg_url, args.scrapes)))
    finally:
        asyncio.run(fresh_postgres(args.pg_url, drop_only=True))


if __name__ == "__main__":
    main()
