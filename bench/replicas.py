"""1, 2 and 3 ``kmon run`` replicas on one PostgreSQL database, polling a loopback farm.

Run: .venv/bin/python bench/replicas.py  (prints a table; not a test)

For each replica count, a fresh database, a fresh farm of ``--feeds`` growing feeds
(tests/farm.py, in a child process, every ``--on-topic-every``-th item a signal) and
that many ``kmon run --migrate`` processes with JSON logs, all sources at
``--interval``. Once every replica has started, ``--warmup`` seconds pass (the first
round fetches every feed at once), then ``--duration`` seconds are measured:

- polls/s: ``poll`` lines of all replicas in the window, per second;
- lateness p50/p99: the ``late`` field of those lines (seconds from the source's due
  time to the poll: scheduler, claim jitter, host queue);
- statements per poll: ``kmon_db_statements_total`` of every replica, scraped from
  ``/metrics`` at both ends of the window, the difference over the polls in it (the
  heartbeats and the dispatcher's rounds included: everything the replicas cost the
  database);
- the lease overhead: statements per poll against the one-replica run.

The database named by ``--pg-url`` is dropped and created for every run and dropped at
the end; its name must contain "bench".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from bench.scratch_db import fresh_postgres, postgres_problem

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/kmon_bench_replicas"
HOST = "127.0.0.1"


def serve_farm(conn: Connection, feeds: int, grow_every: float, on_topic: int) -> None:
    """Child process: the farm on 127.0.0.1 until the parent says stop."""
    from bench.loopback import serve_until_told
    from tests.farm import FeedFarm

    farm = FeedFarm(feeds, grow_every=grow_every, on_topic_every=on_topic)
    serve_until_told(farm.app, conn, 3600, backlog=4096)


@dataclass(frozen=True)
class RunFigures:
    replicas: int
    window: float
    polls: int
    late_p50: float
    late_p99: float
    statements: float
    by_replica: dict[str, int]

    @property
    def polls_per_second(self) -> float:
        return self.polls / self.window

    @property
    def statements_per_poll(self) -> float:
        return self.statements / self.polls if self.polls else float("nan")


async def statements(port: int) -> float:
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"http://{HOST}:{port}/metrics") as response,
    ):
        text = await response.text()
    for family in text_string_to_metric_families(text):
        if family.name == "kmon_db_statements":
            return sum(s.value for s in family.samples if s.name.endswith("_total"))
    raise SystemExit("no kmon_db_statements_total in /metrics")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def one_run(replicas: int, port: int, args: argparse.Namespace, tmp: Path) -> RunFigures:
    from tests.faults.daemon import Daemon, environment

    config = tmp / f"kmon-{replicas}.yaml"
    settings: dict[str, Any] = {
        "database": {"url": args.pg_url, "pool_size": 6},
        "http": {"per_host_limit": 100},
        "quotes": {"enabled": False},
        "health": {"enabled": True},
        "alerts": {"channels": {"log": {"type": "console"}}},
        "sources": [
            {
                "name": f"farm-{n:04d}",
                "url": f"http://{HOST}:{port}/feed/{n}.xml",
                "interval": args.interval,
            }
            for n in range(args.feeds)
        ],
    }
    config.write_text(json.dumps(settings), encoding="utf-8")
    daemons = []
    for n in range(replicas):
        env = {**environment(config), "KMON_REPLICAS__NAME": f"replica-{n}"}
        # Nothing of the machine's own configuration may leak in.
        env = {k: v for k, v in env.items() if not k.startswith("KMON_TEST_")}
        daemons.append(Daemon(env))
    try:
        for daemon in daemons:
            await daemon.start()
            # One at a time: the first migrates the fresh database.
            await daemon.wait_for(lambda ls: any(x.get("event") == "daemon_started" for x in ls),
                                  within=120)  # fmt: skip
        ports = [int(d.events("health_server_started")[0]["port"]) for d in daemons]
        await asyncio.sleep(args.warmup)  # the benchmark's fixed wall time, not a wait
        begun = time.time()
        before = [await statements(p) for p in ports]
        await asyncio.sleep(args.duration)
        after = [await statements(p) for p in ports]
        ended = time.time()
        await asyncio.gather(*(d.stop(signal.SIGTERM) for d in daemons))
    finally:
        for daemon in daemons:
            await daemon.close()

    def stamp(line: dict[str, Any]) -> float:
        return datetime.fromisoformat(str(line["timestamp"])).timestamp()

    window = [
        (n, x) for n, d in enumerate(daemons) for x in d.events("poll") if begun <= stamp(x) < ended
    ]
    late = [float(x["late"]) for _, x in window if "late" in x]
    by_replica: dict[str, int] = {}
    for n, _ in window:
        by_replica[f"replica-{n}"] = by_replica.get(f"replica-{n}", 0) + 1
    return RunFigures(
        replicas=replicas,
        window=ended - begun,
        polls=len(window),
        late_p50=percentile(late, 0.5),
        late_p99=percentile(late, 0.99),
        statements=sum(after) - sum(before),
        by_replica=by_replica,
    )


def run_with_farm(replicas: int, args: argparse.Namespace, tmp: Path) -> RunFigures:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    farm = ctx.Process(
        target=serve_farm,
        args=(theirs, args.feeds, args.grow_every, args.on_topic_every),
        daemon=True,
    )
    farm.start()
    try:
        port = ours.recv()
        asyncio.run(fresh_postgres(args.pg_url))
        return asyncio.run(one_run(replicas, port, args, tmp))
    finally:
        ours.send("stop")
        farm.join(timeout=10)
        if farm.is_alive():
            farm.terminate()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=300)
    ap.add_argument("--interval", type=float, default=3.0)
    ap.add_argument("--grow-every", type=float, default=6.0)
    ap.add_argument("--on-topic-every", type=int, default=20)
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--replicas", default="1,2,3", help="the counts to run, in order")
    ap.add_argument("--pg-url", default=DEFAULT_PG_URL)
    args = ap.parse_args()
    if "bench" not in (make_url(args.pg_url).database or ""):
        ap.error("--pg-url: the database is dropped and recreated; its name must contain 'bench'")
    problem = postgres_problem(args.pg_url)
    if problem is not None:
        raise SystemExit(f"PostgreSQL not reachable: {problem}")
    for name in [n for n in os.environ if n.startswith("KMON_")]:
        del os.environ[name]
    load = os.getloadavg()
    print(
        f"farm: {args.feeds} feeds at {args.interval:g}s, an item per feed every "
        f"{args.grow_every:g}s; {args.warmup:g}s warm-up, {args.duration:g}s measured; "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    expected = args.feeds / args.interval
    runs: list[RunFigures] = []
    with tempfile.TemporaryDirectory(prefix="kmon-replicas-") as tmp:
        try:
            for count in (int(c) for c in args.replicas.split(",")):
                runs.append(run_with_farm(count, args, Path(tmp)))
        finally:
            asyncio.run(fresh_postgres(args.pg_url, drop_only=True))
    base = runs[0].statements_per_poll
    print(
        f"{'replicas':>8} | {'polls/s':>7} | {'of due':>6} | {'late p50':>8} | "
        f"{'late p99':>8} | {'stmts/poll':>10} | {'vs first':>8} | polls by replica"
    )
    for r in runs:
        print(
            f"{r.replicas:>8} | {r.polls_per_second:>7.1f} | "
            f"{r.polls_per_second / expected:>6.0%} | {r.late_p50:>7.3f}s | "
            f"{r.late_p99:>7.3f}s | {r.statements_per_poll:>10.2f} | "
            f"{r.statements_per_poll / base - 1:>+8.0%} | "
            + ", ".join(f"{v}" for _, v in sorted(r.by_replica.items()))
        )
    load = os.getloadavg()
    print(f"load at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
