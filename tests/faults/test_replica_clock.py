"""Two real replicas on one PostgreSQL, one of them with its machine clock two hours fast
(libfaketime): the fast one neither polls a source twice per due time nor writes its
own time into the schedule, so nobody's sources starve."""

from __future__ import annotations

import asyncio
import itertools
import os
import platform
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import select

from monitor.db.engine import make_engine
from monitor.db.schema import Source
from tests.faults.daemon import Daemon, environment
from tests.feeds import entries, rss
from tests.servers import FakeSource

FEEDS = 12
INTERVAL = 3.0
POLLS_EACH = 5  # wait until every feed was fetched this many times
SKEW = "+2h"


def _libfaketime() -> str | None:
    path = Path(f"/usr/lib/{platform.machine()}-linux-gnu/faketime/libfaketime.so.1")
    return str(path) if path.exists() else None


async def test_a_replica_with_a_fast_clock_neither_steals_nor_starves(
    db_url: str, http_server: FakeSource, tmp_path: Path
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("several replicas need PostgreSQL")
    lib = _libfaketime()
    if lib is None:
        if os.environ.get("KMON_TEST_REQUIRE_PG") == "1":  # CI installs it (.ci/run)
            pytest.fail("libfaketime is not installed (Debian package faketime)")
        pytest.skip("libfaketime is not installed (Debian package faketime)")

    fetched: dict[str, list[float]] = defaultdict(list)
    enough = asyncio.Event()

    def feed(path: str, body: bytes) -> None:
        async def answer(request: web.Request) -> web.Response:
            fetched[path].append(time.monotonic())
            if len(fetched) == FEEDS and all(len(v) >= POLLS_EACH for v in fetched.values()):
                enough.set()
            return web.Response(body=body, content_type="application/rss+xml")

        http_server.route(path, answer)

    lines = []
    for i in range(FEEDS):
        feed(f"/f{i}", rss(entries(2, start=10 * i)))
        url = http_server.url(f"/f{i}")
        lines.append(f"  - {{name: f{i}, kind: rss, url: '{url}', interval: {INTERVAL}}}")
    config = tmp_path / "kmon.yaml"
    config.write_text(
        f"database:\n  url: {db_url}\nquotes:\n  enabled: false\n"
        "scheduler:\n  jitter: 0\n"
        "replicas:\n  lease: 6\n  heartbeat: 1\n  claim_jitter: 0.2\n"
        "sources:\n" + "\n".join(lines) + "\n",
        encoding="utf-8",
    )
    env = environment(config)
    fast_env = {**env, "LD_PRELOAD": lib, "FAKETIME": SKEW, "FAKETIME_DONT_RESET": "1"}
    replicas = [Daemon(env), Daemon(fast_env)]
    try:
        for replica in replicas:
            await replica.start()
        async with asyncio.timeout(90):
            await enough.wait()
        for replica in replicas:
            assert await replica.stop() == 0
    finally:
        for replica in replicas:
            await replica.close()

    # Both did work: the fast one was not shut out, and did not shut the other out.
    polled_by = [len(r.events("poll")) for r in replicas]
    assert all(count > 0 for count in polled_by), polled_by
    # Once per due time: no feed fetched again before its interval, less the second a
    # job may fire early and the claim jitter (scheduler.jitter is 0).
    shortest = min(b - a for times in fetched.values() for a, b in itertools.pairwise(times))
    assert shortest >= INTERVAL - 1.0 - 0.2 - 0.1, shortest
    # The schedule is on the database's clock: no next check two hours out.
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            checks = (await conn.execute(select(Source.name, Source.next_check_at))).all()
    finally:
        await engine.dispose()
    latest = datetime.now(UTC) + timedelta(seconds=INTERVAL + 5)
    assert all(at is not None and at <= latest for _, at in checks), checks
