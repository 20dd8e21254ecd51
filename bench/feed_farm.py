"""End to end: kmon polls a loopback farm of RSS feeds (fetch → parse → dedup → store).

Run: .venv/bin/python bench/feed_farm.py  (prints figures; not a test)

A separate process serves ``--feeds`` RSS feeds of ``--items`` Korean items each on
127.0.0.1 with aiohttp; every feed has an ETag and answers 304 to a matching
If-None-Match. For each database, a fresh kmon process (spawned, so that its peak RSS
is its own) runs ``--runs`` times: a new database migrated by ``open_runtime``, a first
``poll_once`` over all sources (every item is new), then a second ``poll_once`` naming
every source, which every feed answers with 304. Medians are printed. The server stops
by itself after ``--lifetime`` seconds or when this script exits.

The PostgreSQL database named by ``--pg-url`` is dropped and created for every run and
dropped at the end; its name must contain "bench". An unreachable server skips
PostgreSQL with one line.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.engine import make_url

from bench.scratch_db import fresh_postgres, postgres_problem

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/kmon_bench"
HOST = "127.0.0.1"

# ----------------------------------------------------------------- the feed farm

_ORGS = (
    "과학기술정보통신부",
    "삼성전자",
    "SK하이닉스",
    "네이버",
    "카카오",
    "LG에너지솔루션",
    "현대자동차",
    "한국은행",
    "금융위원회",
    "서울시",
    "국토교통부",
    "산업통상자원부",
)
_TOPICS = (
    "AI 반도체",
    "하이퍼클로바X",
    "소버린 AI",
    "2차전지",
    "기준금리",
    "전세 사기",
    "K-칩스법",
    "원·달러 환율",
    "수출 실적",
    "데이터센터",
    "전기차 보조금",
    "청년 일자리",
)
_VERBS = ("발표", "확대", "추진", "검토", "합의", "철회", "강화", "연기")
_TAGS = ("[속보]", "[단독]", "[종합]", "", "", "")


def _entries(feed: int, count: int, base: datetime) -> list[Any]:
    """``count`` Korean entries with distinct guids, dates spread over two days."""
    from tests.feeds import Entry

    rng = random.Random(feed)
    out = []
    for i in range(count):
        article = feed * 100_000 + i
        org, topic, verb = rng.choice(_ORGS), rng.choice(_TOPICS), rng.choice(_VERBS)
        tag = rng.choice(_TAGS)
        amount = rng.randint(1, 99)
        title = f'{tag} {org}, {topic} {amount}조원 지원 {verb}…"시장 영향 주목"'.strip()
        description = (
            f"<p>{org}는 {rng.randint(1, 28)}일 <b>{topic}</b> 관련 대책을 {verb}했다고 "
            f"밝혔다.&nbsp;업계는 &quot;환영&quot;한다는 입장이지만 일부에서는 "
            f"실효성에 의문을 제기했다.</p><p>정부는 {amount}조원 규모의 예산을 "
            f"투입해 {topic} 경쟁력을 높이겠다는 계획이다. "
            f"<a href='https://news.example.kr/tag/{article % 97}'>관련 기사</a></p>"
            f'<img src="https://img.example.kr/{article}.jpg">'
        )
        published = base - timedelta(seconds=rng.randint(0, 2 * 86400))
        url = f"https://news{feed % 40}.example.kr/article/{article}"
        out.append(
            Entry(
                title=title,
                link=f"{url}?utm_source=rss&utm_medium=feed",
                guid=url,
                published=published,
                description=description,
            )
        )
    return out


def build_farm(feeds: int, items: int) -> list[tuple[bytes, str]]:
    """(body, ETag) of each feed; RSS 2.0 with ``+0900`` dates (see tests/feeds.py)."""
    from tests.feeds import rss

    base = datetime(2026, 10, 5, 3, 0, tzinfo=UTC)
    return [(rss(_entries(n, items, base)), f'"farm-{n}-v1"') for n in range(feeds)]


def serve_farm(conn: Connection, feeds: int, items: int, lifetime: float) -> None:
    """Child process: serve the farm on 127.0.0.1, send the port, stop when told or due."""
    from aiohttp import web

    from bench.loopback import serve_until_told

    farm = build_farm(feeds, items)

    async def feed(request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        if not 0 <= n < len(farm):
            return web.Response(status=404)
        body, etag = farm[n]
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(
            body=body,
            headers={"ETag": etag, "Content-Type": "application/rss+xml; charset=utf-8"},
        )

    app = web.Application()
    app.router.add_get("/feed/{n}.xml", feed)
    size = sum(len(b) for b, _ in farm)
    serve_until_told(app, conn, lifetime, backlog=4096, announce=lambda port: (port, size))


# ------------------------------------------------------------------ the kmon side


@dataclass(frozen=True)
class RunFigures:
    items: int
    first_cycle: float
    first_cpu: float
    first_loop_cpu: float
    not_modified_cycle: float
    not_modified_cpu: float
    signals: int = 0


def _cpu() -> float:
    """CPU seconds (user + system, all threads) of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _one_run(db_url: str, port: int, args: argparse.Namespace) -> RunFigures:
    from monitor.config import DatabaseSettings, HttpSettings, Settings, SourceConfig
    from monitor.service.daemon import open_runtime, poll_once

    names = [f"farm-{n:04d}" for n in range(args.feeds)]
    # Burst mode polls only the news sources; quote polling is off all the same, so
    # that nothing but the farm on 127.0.0.1 is ever asked.
    extra: dict[str, Any] = (
        {"quotes": {"enabled": False}} if "quotes" in Settings.model_fields else {}
    )
    if "rules" in Settings.model_fields:
        extra["rules"] = {"enabled": not args.no_rules}
    settings = Settings(
        database=DatabaseSettings(url=db_url),
        http=HttpSettings(per_host_limit=args.per_host_limit),
        log_format="json",
        sources=[
            SourceConfig(name=name, url=f"http://{HOST}:{port}/feed/{n}.xml", interval=600)
            for n, name in enumerate(names)
        ],
        **extra,
    )
    async with open_runtime(settings, migrate_schema=True) as ctx:
        started, cpu, loop_cpu = time.perf_counter(), _cpu(), time.thread_time()
        first = await poll_once(ctx)
        first_wall, first_cpu = time.perf_counter() - started, _cpu() - cpu
        first_loop_cpu = time.thread_time() - loop_cpu
        if len(first) != args.feeds or any(o.status != "ok" for o in first):
            bad = [o for o in first if o.status != "ok"][:3]
            raise SystemExit(f"first cycle: {len(first)} polls, not all ok: {bad}")
        new = sum(len(o.new_item_ids) for o in first)
        if new != args.feeds * args.items:
            raise SystemExit(f"first cycle stored {new} items, expected {args.feeds * args.items}")
        signals = await _count_signals(ctx)

        started, cpu = time.perf_counter(), _cpu()
        second = await poll_once(ctx, names)
        second_wall, second_cpu = time.perf_counter() - started, _cpu() - cpu
        if len(second) != args.feeds or any(o.status != "not_modified" for o in second):
            bad = [o for o in second if o.status != "not_modified"][:3]
            raise SystemExit(f"second cycle: not every feed answered 304: {bad}")
    return RunFigures(new, first_wall, first_cpu, first_loop_cpu, second_wall, second_cpu, signals)


async def _count_signals(ctx: Any) -> int:
    from sqlalchemy import func, select

    try:
        from monitor.db.schema import SignalRow
    except ImportError:  # a version before the rules
        return 0
    async with ctx.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(SignalRow)) or 0)


def kmon_side(conn: Connection, backend: str, db_url: str, port: int, args: Any) -> None:
    """Child process: the daemon's side only, so that ru_maxrss is the daemon's."""
    # Settings gives KMON_* variables precedence over arguments: none of the machine's
    # configuration (a real database URL above all) may leak into the benchmark.
    for name in [n for n in os.environ if n.startswith("KMON_")]:
        del os.environ[name]
    from monitor.logs import configure_logging

    async def one(run: int, tmp: Path) -> RunFigures:
        if backend == "sqlite":
            return await _one_run(f"sqlite+aiosqlite:///{tmp / f'run{run}.db'}", port, args)
        await fresh_postgres(db_url)
        return await _one_run(db_url, port, args)

    runs: list[RunFigures] = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="kmon-farm-") as tmp,
            # JSON lines to a real file, as a daemon under systemd would write them.
            open(Path(tmp) / "kmon.log", "w", encoding="utf-8") as log,
        ):
            configure_logging("json", "INFO", stream=log)
            try:
                for run in range(args.runs):
                    runs.append(asyncio.run(one(run, Path(tmp))))
                    for leftover in Path(tmp).glob(f"run{run}.db*"):
                        leftover.unlink()
            finally:
                if backend == "postgresql":
                    asyncio.run(fresh_postgres(db_url, drop_only=True))
            log.flush()
            with open(log.name, encoding="utf-8") as lines:
                polls = sum('"event": "poll"' in line for line in lines)
            if polls != 2 * args.runs * args.feeds:
                raise SystemExit(f"expected one log line per poll, found {polls}")
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise
    # Linux reports ru_maxrss in KiB.
    conn.send(("ok", (runs, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))


def _run_child(target: Any, *args: Any) -> Any:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=target, args=(theirs, *args), daemon=True)
    proc.start()
    try:
        status, payload = ours.recv()
    except EOFError:
        raise SystemExit(f"{target.__name__} died (exit code {proc.exitcode})") from None
    finally:
        proc.join(timeout=30)
    if status != "ok":
        raise SystemExit(payload)
    return payload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=1000)
    ap.add_argument("--items", type=int, default=50)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--per-host-limit", type=int, default=100)
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--no-rules", action="store_true", help="store items without tagging them")
    ap.add_argument("--lifetime", type=float, default=900, help="server stops after this (s)")
    args = ap.parse_args()
    if not args.skip_pg and "bench" not in (make_url(args.pg_url).database or ""):
        ap.error("--pg-url: the database is dropped and recreated; its name must contain 'bench'")

    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    server = ctx.Process(
        target=serve_farm, args=(theirs, args.feeds, args.items, args.lifetime), daemon=True
    )
    server.start()
    try:
        port, total_bytes = ours.recv()
        print(
            f"farm: {args.feeds} feeds × {args.items} items on {HOST}:{port} "
            f"({total_bytes / 1e6:.1f} MB of feed XML), server pid {server.pid}; "
            f"per_host_limit={args.per_host_limit}; {args.runs} runs per database; "
            f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
        )
        backends: list[tuple[str, str]] = []
        if not args.skip_sqlite:
            backends.append(("sqlite", ""))
        if not args.skip_pg:
            shown = make_url(args.pg_url).render_as_string(hide_password=True)
            problem = postgres_problem(args.pg_url)
            if problem is None:
                backends.append(("postgresql", args.pg_url))
            else:
                print(f"postgresql: skipped, {shown} not reachable ({problem})")
        for backend, url in backends:
            runs, rss_mb = _run_child(kmon_side, backend, url, port, args)
            rates = [r.items / r.first_cycle for r in runs]
            print(
                f"{backend:<10}: first cycle {statistics.median(rates):>8,.0f} new items/s "
                f"({statistics.median(r.first_cycle for r in runs):.2f} s for "
                f"{runs[0].items:,} items, {runs[0].signals:,} signals); 304 cycle "
                f"{statistics.median(r.not_modified_cycle for r in runs):.3f} s; "
                f"peak RSS {rss_mb:.0f} MB"
            )
            print(
                "            runs: "
                + ", ".join(f"{r:,.0f}/s" for r in rates)
                + " | 304: "
                + ", ".join(f"{r.not_modified_cycle:.3f}s" for r in runs)
                + " | kmon CPU s, 1st (event loop thread) / 304: "
                + ", ".join(
                    f"{r.first_cpu:.2f} ({r.first_loop_cpu:.2f}) / {r.not_modified_cpu:.2f}"
                    for r in runs
                )
            )
    finally:
        ours.send("stop")
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()
            server.join()


if __name__ == "__main__":
    main()
