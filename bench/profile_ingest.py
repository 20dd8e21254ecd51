"""Where a first cycle of ``kmon poll`` spends its time: one profiled cycle, in-process.

Run: .venv/bin/python bench/profile_ingest.py [--topical 0.1] [--no-rules] [--profile cprofile]

A child process serves ``--feeds`` RSS feeds of ``--items`` Korean items each on
127.0.0.1 (as bench/feed_farm.py does); this process migrates a fresh SQLite database
(or the PostgreSQL one of ``--pg-url``, dropped and created; its name must contain
"bench") and runs one first ``poll_once`` over every source, optionally under cProfile
(``--profile cprofile``: the top functions by cumulative and own time are printed).
Without a profiler it prints the cycle's figures: new items/s, signals, CPU of the
process and of the event-loop thread; run it under ``py-spy record`` for a flame graph
of every thread.

``--topical SHARE``: the share of items on a topic the default rules fire on (AI
chips, sovereign AI, data centres); every headline is its own story (distinct words),
so at 1.0 every item raises a signal. Without it the items are feed_farm's own: its
one-template headlines, or with ``--farm SHARE`` its realistic text of the whole-process
figures (bench/farm_text.py), that share on topic.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import multiprocessing
import os
import pstats
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.feed_farm import _ORGS, _VERBS, HOST, _entries

# Topics the default rules fire on, and ones they do not (checked by tagging them).
ON_TOPIC = ("AI 반도체", "소버린 AI", "데이터센터")
OFF_TOPIC = ("2차전지", "기준금리", "전세 사기", "원·달러 환율", "수출 실적", "청년 일자리")
# Made-up words of common Hangul syllables: distinct stories share few bigrams.
_SYLLABLES = [chr(c) for c in range(0xAC00, 0xD7A4, 28)]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4)))


def topical_entries(feed: int, count: int, base: datetime, share: float) -> list[Any]:
    """``count`` entries, ``share`` of them on a fired topic, each headline distinct
    enough (four made-up words) to be a story of its own."""
    from tests.feeds import Entry

    rng = random.Random(feed)
    out = []
    for i in range(count):
        article = feed * 100_000 + i
        topic = rng.choice(ON_TOPIC if rng.random() < share else OFF_TOPIC)
        org, verb = rng.choice(_ORGS), rng.choice(_VERBS)
        words = " ".join(_word(rng) for _ in range(4))
        amount = rng.randint(1, 99)
        title = f"{org}, {topic} {amount}조원 지원 {verb}…{words}"
        description = (
            f"<p>{org}는 <b>{topic}</b> 관련 대책을 {verb}했다고 밝혔다.&nbsp;정부는 "
            f"{amount}조원 규모의 예산을 투입해 {topic} 경쟁력을 높이겠다는 계획이다.</p>"
        )
        url = f"https://news{feed % 40}.example.kr/article/{article}"
        out.append(
            Entry(
                title=title,
                link=f"{url}?utm_source=rss",
                guid=url,
                published=base - timedelta(seconds=rng.randint(0, 2 * 86400)),
                description=description,
            )
        )
    return out


def serve(
    conn: Connection, feeds: int, items: int, topical: float | None, farm: float | None = None
) -> None:
    """Child process: serve the farm on 127.0.0.1 until told to stop."""
    from aiohttp import web

    from bench.loopback import serve_until_told
    from tests.feeds import rss

    base = datetime(2026, 10, 5, 3, 0, tzinfo=UTC)
    farm = [
        rss(
            _entries(n, items, base, farm)
            if topical is None
            else topical_entries(n, items, base, topical)
        )
        for n in range(feeds)
    ]

    async def feed(request: web.Request) -> web.StreamResponse:
        body = farm[int(request.match_info["n"])]
        return web.Response(body=body, content_type="application/rss+xml", charset="utf-8")

    app = web.Application()
    app.router.add_get("/feed/{n}.xml", feed)
    serve_until_told(app, conn, 900, backlog=4096)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def cycle(db_url: str, port: int, args: argparse.Namespace) -> dict[str, float]:
    from sqlalchemy import func, select

    from monitor.config import DatabaseSettings, HttpSettings, Settings, SourceConfig
    from monitor.db.schema import SignalRow
    from monitor.service.daemon import open_runtime, poll_once

    settings = Settings(
        database=DatabaseSettings(url=db_url),
        http=HttpSettings(per_host_limit=100),
        log_format="json",
        quotes={"enabled": False},
        # Without --workers the setting is left out, so the script also runs on a
        # checkout from before it existed (for a side-by-side comparison).
        rules={"enabled": not args.no_rules}
        | ({} if args.workers is None else {"workers": args.workers}),
        sources=[
            SourceConfig(name=f"farm-{n:04d}", url=f"http://{HOST}:{port}/feed/{n}.xml")
            for n in range(args.feeds)
        ],
    )
    async with open_runtime(settings, migrate_schema=True) as ctx:
        profiler = cProfile.Profile() if args.profile == "cprofile" else None
        started, cpu, loop_cpu = time.perf_counter(), _cpu(), time.thread_time()
        if profiler:
            profiler.enable()
        outcomes = await poll_once(ctx)
        if profiler:
            profiler.disable()
        wall, cpu, loop_cpu = (
            time.perf_counter() - started,
            _cpu() - cpu,
            time.thread_time() - loop_cpu,
        )
        bad = [o for o in outcomes if o.status != "ok"]
        if bad:
            raise SystemExit(f"{len(bad)} polls not ok, e.g. {bad[0]}")
        new = sum(len(o.new_item_ids) for o in outcomes)
        async with ctx.sessionmaker() as session:
            signals = await session.scalar(select(func.count()).select_from(SignalRow))
    if profiler:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())
    return {"items": new, "signals": signals or 0, "wall": wall, "cpu": cpu, "loop": loop_cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--topical", type=float, default=None, help="share of on-topic items")
    ap.add_argument(
        "--farm",
        type=float,
        default=None,
        help="feed_farm's realistic text with this share on topic (bench/farm_text.py)",
    )
    ap.add_argument("--no-rules", action="store_true")
    ap.add_argument("--workers", type=int, default=None, help="rules.workers (0: in-process)")
    ap.add_argument("--profile", choices=("none", "cprofile"), default="none")
    ap.add_argument("--top", type=int, default=45)
    ap.add_argument("--pg-url", default=None, help="PostgreSQL instead of SQLite")
    args = ap.parse_args()
    for name in [n for n in os.environ if n.startswith("KMON_")]:
        del os.environ[name]

    from monitor.logs import configure_logging

    mp = multiprocessing.get_context("spawn")
    ours, theirs = mp.Pipe()
    server = mp.Process(
        target=serve,
        args=(theirs, args.feeds, args.items, args.topical, args.farm),
        daemon=True,
    )
    server.start()
    try:
        port = ours.recv()
        with (
            tempfile.TemporaryDirectory(prefix="kmon-profile-") as tmp,
            open(Path(tmp) / "kmon.log", "w", encoding="utf-8") as log,
        ):
            configure_logging("json", "INFO", stream=log)
            if args.pg_url:
                from sqlalchemy.engine import make_url

                from bench.scratch_db import fresh_postgres

                if "bench" not in (make_url(args.pg_url).database or ""):
                    ap.error("--pg-url: its database is recreated; the name must say 'bench'")
                asyncio.run(fresh_postgres(args.pg_url))
                url = args.pg_url
            else:
                url = f"sqlite+aiosqlite:///{Path(tmp) / 'kmon.db'}"
            try:
                figures = asyncio.run(cycle(url, port, args))
            finally:
                if args.pg_url:
                    asyncio.run(fresh_postgres(args.pg_url, drop_only=True))
        print(
            f"{'postgresql' if args.pg_url else 'sqlite'}, rules "
            f"{'off' if args.no_rules else 'on'}, topical {args.topical}, "
            f"farm {args.farm}, workers {args.workers}: "
            f"{figures['items'] / figures['wall']:,.0f} new items/s "
            f"({figures['wall']:.2f} s for {figures['items']:,} items, "
            f"{figures['signals']:,} signals); kmon CPU {figures['cpu']:.2f} s, "
            f"event loop {figures['loop']:.2f} s; {os.getloadavg()[0]:.2f} load"
        )
    finally:
        ours.send("stop")
        server.join(timeout=10)


if __name__ == "__main__":
    main()
