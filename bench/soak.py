"""Soak: a real ``kmon run`` under sustained load, its memory and liveness over time.

Run: .venv/bin/python bench/soak.py --minutes 30  (prints figures; not a test)

A separate process serves ``--feeds`` RSS feeds on 127.0.0.1 that gain new items at
``--rate`` items a second in all: item ``k`` of a feed is published ``k / per-feed
rate`` seconds after the farm starts, and a feed answers with its newest
``--feed-items`` (an ETag per state, 304 to a matching If-None-Match). ``--topical``
of the items are on-topic: headlines built from the default ruleset's entity names and
theme terms (bench/cluster.py's stories, half of them further copies of a recent story
as another outlet would retitle it), so the rules fire and stories cluster; the rest
are made-up newsroom headlines that match nothing.

``kmon run --migrate`` runs as its own process (``python -m monitor``, the checkout's
code) with a YAML file naming the farm's feeds polled every ``--interval`` seconds,
quotes off, alerts to the default console channel (into its log file), the health
endpoints on a free loopback port. Every ``--every`` seconds the script reads the
process's RSS (VmRSS of /proc/PID/status) and times a GET of /healthz; it prints a row
a minute (RSS, healthz p50/max of the minute, items stored so far from /metrics, the
load average) and, with ``--csv``, writes every sample. At the end: RSS after warm-up,
its slope, healthz p50/p99/max, items and signals stored.

SQLite (a file in a temporary folder) by default; ``--pg-url`` names a PostgreSQL
database instead, dropped and created first and dropped at the end (its name must
contain "bench").
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import math
import multiprocessing
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import dataclass
from email.utils import format_datetime
from multiprocessing.connection import Connection
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
# Stories a copy may be of: the most recent ones (copies come within minutes).
RECENT_STORIES = 200

# ----------------------------------------------------------------- the feed farm


class Headlines:
    """The title of item ``k`` of feed ``n``: on-topic with probability ``topical``."""

    def __init__(self, topical: float, seed: int) -> None:
        from bench.cluster import make_story, newsroom_words, retitle, vocabulary
        from monitor.rules.model import load_rules

        self._make_story, self._retitle = make_story, retitle
        self.rng = random.Random(seed)
        self.vocab = vocabulary(load_rules(None))
        self.words_of = newsroom_words(self.rng, 5000)
        self.topical = topical
        self.stories: list[list[str]] = []

    def title(self) -> str:
        rng = self.rng
        if rng.random() >= self.topical:
            common = self.words_of[True][0]
            # Off-topic: made-up and newsroom words only, no name or term of a rule.
            words = rng.choices(common[200:], k=rng.randint(4, 7))
            return " ".join(words)
        if self.stories and rng.random() < 0.5:
            story = rng.choice(self.stories[-RECENT_STORIES:])
        else:
            story = self._make_story(rng, self.vocab, self.words_of)
            self.stories.append(story)
            del self.stories[:-RECENT_STORIES]
        return str(self._retitle(rng, story))


def serve_farm(
    conn: Connection,
    feeds: int,
    rate: float,
    feed_items: int,
    topical: float,
    lifetime: float,
) -> None:
    """Child process: serve the growing feeds, send the port, stop when told or due."""
    from aiohttp import web

    from bench.loopback import serve_until_told

    per_feed = rate / feeds
    started = time.time()
    headlines = Headlines(topical, seed=20261005)
    # Rendered <item> elements by (feed, k): each is made once, when first served.
    rendered: OrderedDict[tuple[int, int], str] = OrderedDict()
    keep = feeds * feed_items * 2

    def item(n: int, k: int) -> str:
        key = (n, k)
        xml = rendered.get(key)
        if xml is None:
            published = started + k / per_feed
            url = f"https://news{n % 40}.example.kr/article/{n}/{k}"
            title = headlines.title()
            xml = (
                f"<item><title>{escape(title)}</title><link>{url}?utm_source=rss</link>"
                f'<guid isPermaLink="true">{url}</guid>'
                f"<pubDate>{format_datetime(_utc(published))}</pubDate>"
                f"<description>{escape(title)} 관련 기사 {k}번째 보도.</description></item>"
            )
            rendered[key] = xml
            if len(rendered) > keep:
                rendered.popitem(last=False)
        return xml

    async def feed(request: web.Request) -> web.StreamResponse:
        n = int(request.match_info["n"])
        if not 0 <= n < feeds:
            return web.Response(status=404)
        newest = int((time.time() - started) * per_feed)
        etag = f'"soak-{n}-{newest}"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        items = "".join(item(n, k) for k in range(newest, max(-1, newest - feed_items), -1))
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>soak {n}</title><link>https://news{n % 40}.example.kr/</link>"
            f"<description>soak feed</description>{items}</channel></rss>"
        ).encode()
        return web.Response(
            body=body,
            headers={"ETag": etag, "Content-Type": "application/rss+xml; charset=utf-8"},
        )

    app = web.Application()
    app.router.add_get("/feed/{n}.xml", feed)
    serve_until_told(app, conn, lifetime, backlog=4096)


def _utc(epoch: float):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC)


# ------------------------------------------------------------------ the kmon side


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def write_config(
    path: Path, db_url: str, farm_port: int, health_port: int, args: argparse.Namespace
) -> None:
    import yaml

    config = {
        "database": {"url": db_url},
        "health": {"host": HOST, "port": health_port},
        "quotes": {"enabled": False},
        "rules": {"story_headlines": args.story_headlines},
        "http": {"per_host_limit": args.per_host_limit},
        "log_format": "json",
        "sources": [
            {
                "name": f"soak-{n:04d}",
                "url": f"http://{HOST}:{farm_port}/feed/{n}.xml",
                "interval": args.interval,
            }
            for n in range(args.feeds)
        ],
    }
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Sample:
    at: float  # seconds since kmon answered its first /healthz
    rss_mb: float
    healthz_s: float
    load1: float


async def healthz_latency(session, url: str) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    async with session.get(url) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"/healthz answered {response.status}")
    return time.perf_counter() - started


async def items_so_far(session, url: str) -> int:  # type: ignore[no-untyped-def]
    """Sum of kmon_new_items_total over sources, from /metrics."""
    async with session.get(url) as response:
        text = await response.text()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("kmon_new_items_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def wait_ready(session, url: str, proc: subprocess.Popen[bytes], within: float) -> None:  # type: ignore[no-untyped-def]
    import aiohttp

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"kmon run exited with {proc.returncode} before answering")
        try:
            await healthz_latency(session, url)
            return
        except (aiohttp.ClientError, RuntimeError):
            await asyncio.sleep(0.2)  # polling a process that is starting, not a test
    raise SystemExit("kmon run did not answer /healthz in time")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


async def watch(
    proc: subprocess.Popen[bytes], health_port: int, args: argparse.Namespace
) -> list[Sample]:
    import aiohttp

    base = f"http://{HOST}:{health_port}"
    samples: list[Sample] = []
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        await wait_ready(session, f"{base}/healthz", proc, 120)
        start = time.monotonic()
        end = start + args.minutes * 60
        next_row = start + 60
        minute: list[Sample] = []
        print(
            f"{'min':>4} {'RSS MB':>7} {'min..max':>13} {'healthz p50 ms':>15} {'max ms':>7}"
            f" {'items':>10} {'items/s':>8} {'load1':>6}",
            flush=True,
        )
        last_items, last_at = 0, start
        while True:
            now = time.monotonic()
            if now >= end or proc.poll() is not None:
                break
            last = now + args.every >= end
            latency = await healthz_latency(session, f"{base}/healthz")
            sample = Sample(now - start, rss_kib(proc.pid) / 1024, latency, os.getloadavg()[0])
            samples.append(sample)
            minute.append(sample)
            if now >= next_row or last:
                items = await items_so_far(session, f"{base}/metrics")
                rss = [s.rss_mb for s in minute]
                lat = [s.healthz_s * 1e3 for s in minute]
                print(
                    f"{round((now - start) / 60):>4} {rss[-1]:>7.1f}"
                    f" {min(rss):>6.1f}..{max(rss):<6.1f}"
                    f" {statistics.median(lat):>15.1f} {max(lat):>7.1f} {items:>10,}"
                    f" {(items - last_items) / (now - last_at):>8,.0f} {sample.load1:>6.2f}",
                    flush=True,
                )
                last_items, last_at = items, now
                minute = []
                next_row += 60
            await asyncio.sleep(max(0.0, args.every - (time.monotonic() - now)))
    if proc.poll() is not None:
        raise SystemExit(f"kmon run exited with {proc.returncode} during the soak")
    return samples


async def stored_counts(db_url: str) -> tuple[int, int]:
    from sqlalchemy import func, select
    from sqlalchemy.ext.asyncio import create_async_engine

    from monitor.db.schema import Item, SignalRow

    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            items = await conn.scalar(select(func.count()).select_from(Item))
            signals = await conn.scalar(select(func.count()).select_from(SignalRow))
    finally:
        await engine.dispose()
    return int(items or 0), int(signals or 0)


def slope_mb_per_min(samples: list[Sample]) -> float:
    if len(samples) < 2:
        return 0.0
    xs = [s.at / 60 for s in samples]
    ys = [s.rss_mb for s in samples]
    return float(statistics.linear_regression(xs, ys).slope)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--feeds", type=int, default=200)
    ap.add_argument("--rate", type=float, default=1000, help="new items a second, all feeds")
    ap.add_argument("--interval", type=float, default=5, help="each feed's poll interval (s)")
    ap.add_argument("--feed-items", type=int, default=60, help="items a feed answers with")
    ap.add_argument("--topical", type=float, default=0.5, help="share of on-topic items")
    ap.add_argument("--every", type=float, default=5, help="seconds between samples")
    ap.add_argument("--warm-up", type=float, default=5, help="minutes left out of the slope")
    ap.add_argument("--per-host-limit", type=int, default=100)
    ap.add_argument(
        "--story-headlines",
        type=int,
        default=10_000,
        help="rules.story_headlines (10000000: as good as no bound, to compare)",
    )
    ap.add_argument("--pg-url", help="PostgreSQL instead of SQLite (dropped and recreated)")
    ap.add_argument("--csv", type=Path, help="write every sample here")
    ap.add_argument("--keep", type=Path, help="keep the database and log in this folder")
    args = ap.parse_args()
    if args.feed_items < 2 * args.rate / args.feeds * args.interval:
        ap.error("--feed-items: a feed must hold at least two intervals of its new items")
    if args.pg_url:
        from sqlalchemy.engine import make_url

        if "bench" not in (make_url(args.pg_url).database or ""):
            ap.error("--pg-url: the database is dropped and recreated; its name needs 'bench'")

    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    lifetime = args.minutes * 60 + 600
    server = ctx.Process(
        target=serve_farm,
        args=(theirs, args.feeds, args.rate, args.feed_items, args.topical, lifetime),
        daemon=True,
    )
    server.start()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="kmon-soak-"))
    folder.mkdir(parents=True, exist_ok=True)
    proc: subprocess.Popen[bytes] | None = None
    try:
        farm_port = ours.recv()
        if args.pg_url:
            from bench.scratch_db import fresh_postgres

            asyncio.run(fresh_postgres(args.pg_url))
            db_url = args.pg_url
        else:
            db_url = f"sqlite+aiosqlite:///{folder / 'soak.db'}"
        health_port = free_port()
        config = folder / "kmon.yaml"
        write_config(config, db_url, farm_port, health_port, args)
        # None of the machine's KMON_* configuration may reach the daemon.
        env = {k: v for k, v in os.environ.items() if not k.startswith("KMON_")}
        env["PYTHONPATH"] = str(ROOT)
        backend = "postgresql" if args.pg_url else "sqlite"
        print(
            f"soak: {args.feeds} feeds, {args.rate:,.0f} new items/s ({args.topical:.0%} on-topic),"
            f" polled every {args.interval:g} s; story window of {args.story_headlines:,};"
            f" {backend}; {args.minutes:g} min; "
            f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; load at start "
            + " ".join(f"{x:.2f}" for x in os.getloadavg()),
            flush=True,
        )
        with open(folder / "kmon.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "monitor", "--config", str(config), "run", "--migrate"],
                cwd=folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            samples = asyncio.run(watch(proc, health_port, args))
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        items, signals = asyncio.run(stored_counts(db_url))
        if args.csv:
            with open(args.csv, "w", newline="", encoding="utf-8") as out:
                writer = csv.writer(out)
                writer.writerow(["seconds", "rss_mb", "healthz_ms", "load1"])
                for s in samples:
                    writer.writerow(
                        [f"{s.at:.1f}", f"{s.rss_mb:.1f}", f"{s.healthz_s * 1e3:.2f}", s.load1]
                    )
        warm = [s for s in samples if s.at >= args.warm_up * 60]
        latencies = [s.healthz_s * 1e3 for s in samples]
        print(f"stored: {items:,} items, {signals:,} signals; kmon exited {proc.returncode}")
        if warm:
            print(
                f"RSS after {args.warm_up:g} min warm-up: {warm[0].rss_mb:.1f}"
                f" → {warm[-1].rss_mb:.1f} MB"
                f" (min {min(s.rss_mb for s in warm):.1f}, max {max(s.rss_mb for s in warm):.1f});"
                f" slope {slope_mb_per_min(warm):+.3f} MB/min"
            )
        print(
            f"healthz over {len(latencies)} samples: p50 {percentile(latencies, 0.5):.1f} ms,"
            f" p99 {percentile(latencies, 0.99):.1f} ms, max {max(latencies):.1f} ms;"
            f" load average at end " + " ".join(f"{x:.2f}" for x in os.getloadavg())
        )
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        ours.send("stop")
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()
            server.join()
        if args.pg_url:
            from bench.scratch_db import fresh_postgres

            asyncio.run(fresh_postgres(args.pg_url, drop_only=True))
        if args.keep is None:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
