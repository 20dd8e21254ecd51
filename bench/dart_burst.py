"""A burst of filings between two polls of a dart source: requests, pages and time.

Run: .venv/bin/python bench/dart_burst.py  (prints figures; not a test)

The loopback OpenDART of the tests (``tests/dart_server.py``: ``list.json`` paged as
OpenDART pages it, ``corpCode.xml``) serves NAVER and Kakao. A first poll stores
``--before`` filings of each; then ``--bursts`` filings per company arrive, and the
second poll, through ``monitor.ingest.feeds.poll_source`` with the default rules on, is
timed: the requests it made, the filings it stored (the script checks: every one, once)
and its duration. The stand-in runs in the same process and event loop, so the time
includes serving the pages. For each database: a new SQLite file; PostgreSQL created
and dropped by the script (skipped with one line when unreachable). Logging as the CLI
sets it up, to /dev/null.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import SecretStr
from sqlalchemy import func, select

from adapters.http import HttpLimits, make_client_session
from bench.scratch_db import fresh_postgres, postgres_problem
from monitor.config import SchedulerSettings, SourceConfig
from monitor.db import migrate, repo
from monitor.db.engine import make_engine, make_sessionmaker
from monitor.db.schema import DisclosureRow
from monitor.ingest.context import HostLimiter, PollContext
from monitor.ingest.feeds import poll_source
from monitor.rules.engine import RulesEngine
from monitor.rules.model import load_rules
from tests.dart_server import KAKAO, KEY, NAVER, DartStandIn
from tests.servers import FakeSource

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/kmon_bench_dart"
NOW = datetime(2025, 6, 18, 6, 0, tzinfo=UTC)  # 15:00 KST
REPORTS = ["단일판매ㆍ공급계약체결", "임원ㆍ주요주주특정증권등소유상황보고서", "유상증자결정"]


async def one(url: str, before: int, burst: int) -> dict[str, object]:
    engine = make_engine(url, null_pool=True)
    await migrate.upgrade(engine)
    sessionmaker = make_sessionmaker(engine)
    server = FakeSource()
    await server.start()
    try:
        dart = DartStandIn(server)
        today = date(2025, 6, 18)
        for n in range(before):
            for corp in (NAVER, KAKAO):
                dart.file(corp, REPORTS[n % 3], today - timedelta(days=1))
        source = SourceConfig(
            name="dart",
            kind="dart",
            url=dart.url,
            interval=300,
            api_key=SecretStr(KEY),
            tickers=["035420", "035720"],
        )
        async with sessionmaker.begin() as session:
            await repo.sync_sources(session, [source], now=NOW)
        async with make_client_session() as http:
            ctx = PollContext(
                sessionmaker=sessionmaker,
                http=http,
                limits=HttpLimits(total_timeout=30),
                scheduling=SchedulerSettings(jitter=0),
                host_limiter=HostLimiter(4),
                clock=lambda: NOW,
                rules=RulesEngine(load_rules()),
                dart_sources={"dart": source},
            )

            async def poll() -> object:
                async with sessionmaker() as session:
                    [state] = await repo.load_sources(session, names=["dart"])
                return await poll_source(ctx, state)

            await poll()
            for n in range(burst):
                for corp in (NAVER, KAKAO):
                    dart.file(corp, REPORTS[n % 3], today)
            asked = len(server.requests)
            started = time.perf_counter()
            outcome = await poll()
            elapsed = time.perf_counter() - started
        async with sessionmaker() as session:
            stored = await session.scalar(select(func.count()).select_from(DisclosureRow))
            distinct = await session.scalar(
                select(func.count(func.distinct(DisclosureRow.rcept_no)))
            )
        expected = 2 * (before + burst)
        if stored != expected or distinct != expected:
            raise SystemExit(f"stored {stored} ({distinct} distinct), expected {expected}")
        return {
            "burst": 2 * burst,
            "requests": len(server.requests) - asked,
            "new": len(outcome.new_item_ids),  # type: ignore[attr-defined]
            "ms": elapsed * 1000,
        }
    finally:
        await server.close()
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=int, default=150)
    parser.add_argument("--bursts", default="5,125,1250", help="filings per company")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    # Logging as the CLI sets it up, to /dev/null (one line per signal and poll).
    from monitor.logs import configure_logging

    devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 (for the whole run)
    configure_logging("json", "INFO", stream=devnull)
    bursts = [int(b) for b in args.bursts.split(",")]
    print("| database | filings in the burst | requests | stored | ms |")
    print("|---|--:|--:|--:|--:|")
    with tempfile.TemporaryDirectory() as tmp:
        for burst in bursts:
            url = f"sqlite+aiosqlite:///{Path(tmp) / f'dart{burst}.db'}"
            row = asyncio.run(one(url, args.before, burst))
            print(
                f"| SQLite | {row['burst']} | {row['requests']} | {row['new']} | {row['ms']:.1f} |"
            )
    if args.skip_pg:
        return
    if problem := postgres_problem(args.pg_url):
        print(f"PostgreSQL skipped: {problem}")
        return
    for burst in bursts:
        asyncio.run(fresh_postgres(args.pg_url))
        try:
            row = asyncio.run(one(args.pg_url, args.before, burst))
        finally:
            asyncio.run(fresh_postgres(args.pg_url, drop_only=True))
        print(
            f"| PostgreSQL | {row['burst']} | {row['requests']} | {row['new']} | {row['ms']:.1f} |"
        )


if __name__ == "__main__":
    main()
