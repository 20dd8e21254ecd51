"""The store path of a first cycle alone: ``insert_items`` and ``record_success``, in a
poll's transaction (``poll_transaction``, as ``poll_source`` opens it).

Run: .venv/bin/python bench/store_items.py [--feeds 1000] [--pg-url URL]

The feed farm's items (bench/feed_farm.py, 50 a feed) are parsed before the clock
starts; then every source's poll transaction stores its items and its state, all at
once as ``poll_once`` runs them, on a fresh SQLite file (or the PostgreSQL database of
``--pg-url``, dropped and created; its name must contain "bench"). Prints the items/s,
the process's CPU and the event-loop thread's: no HTTP, no parsing, no rules. Then
every source's poll transaction once more with its state alone, as a poll answered 304
records it: the figures of the unchanged cycle's store path.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(url: str, feeds: int) -> str:
    from adapters.feed import parse_feed
    from adapters.records import RawItem, Validators
    from bench.feed_farm import build_farm
    from monitor.config import SourceConfig
    from monitor.db import migrate, repo
    from monitor.db.engine import make_engine, make_sessionmaker

    now = datetime(2026, 10, 5, 3, 0, tzinfo=UTC)
    parsed = [
        parse_feed(body, content_type="application/rss+xml", fetched_at=now).items
        for body, _ in build_farm(feeds, 50, None)
    ]
    engine = make_engine(url)
    try:
        await migrate.upgrade(engine)
        sessionmaker = make_sessionmaker(engine)
        configs = [SourceConfig(name=f"farm-{n:04d}", url=f"http://x/{n}") for n in range(feeds)]
        async with sessionmaker.begin() as session:
            await repo.sync_sources(session, configs, now=now)
        async with sessionmaker() as session:
            states = await repo.load_sources(session)

        try:
            from monitor.db.onetrip import poll_transaction
        except ImportError:  # a checkout from before it, for a side-by-side comparison
            poll_transaction = type(sessionmaker).begin

        async def one(state: repo.SourceState, items: list[RawItem]) -> int:
            async with poll_transaction(sessionmaker) as session:
                new = await repo.insert_items(session, state, items, fetched_at=now)
                await repo.record_success(
                    session,
                    state.id,
                    now=now,
                    validators=Validators(etag='"v1"'),
                    next_check_at=now + timedelta(minutes=10),
                )
            return len(new)

        started, cpu, loop = time.perf_counter(), _cpu(), time.thread_time()
        stored = sum(await asyncio.gather(*map(one, states, parsed)))
        wall, cpu, loop = time.perf_counter() - started, _cpu() - cpu, time.thread_time() - loop
        # Then the unchanged cycle's store path: every source's poll answered 304.
        started304, cpu304, loop304 = time.perf_counter(), _cpu(), time.thread_time()
        await asyncio.gather(*(one(state, []) for state in states))
        wall304 = time.perf_counter() - started304
        cpu304, loop304 = _cpu() - cpu304, time.thread_time() - loop304
    finally:
        await engine.dispose()
    return (
        f"{engine.dialect.name}: {stored:,} items stored in {wall:.2f} s "
        f"({stored / wall:,.0f}/s); CPU {cpu:.2f} s ({cpu / stored * 1e6:.0f} µs an item), "
        f"event loop {loop:.2f} s; {len(states):,} polls answered 304: {wall304:.2f} s, "
        f"CPU {cpu304:.2f} s, event loop {loop304:.2f} s; load {os.getloadavg()[0]:.1f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--pg-url", default=None)
    args = ap.parse_args()
    for name in [n for n in os.environ if n.startswith("KMON_")]:
        del os.environ[name]
    if args.pg_url:
        from sqlalchemy.engine import make_url

        from bench.scratch_db import fresh_postgres

        if "bench" not in (make_url(args.pg_url).database or ""):
            ap.error("--pg-url: its database is recreated; the name must contain 'bench'")
        asyncio.run(fresh_postgres(args.pg_url))
        try:
            print(asyncio.run(run(args.pg_url, args.feeds)))
        finally:
            asyncio.run(fresh_postgres(args.pg_url, drop_only=True))
        return
    with tempfile.TemporaryDirectory(prefix="kmon-store-") as tmp:
        print(asyncio.run(run(f"sqlite+aiosqlite:///{Path(tmp) / 'kmon.db'}", args.feeds)))


if __name__ == "__main__":
    main()
