"""``kmon replicas list`` and the lease column of ``kmon sources list``, on real databases."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.config import SourceConfig
from monitor.db import leases, repo
from monitor.db.engine import make_engine, make_sessionmaker
from tests.monitor.cli.test_main import config_file, kmon


async def _two_replicas(db_url: str) -> None:
    now = datetime.now(UTC)
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine).begin() as session:
            await repo.sync_sources(
                session,
                [SourceConfig(name="yna", url="https://www.yna.co.kr/rss/news.xml")],
                now=now,
            )
            await leases.register(session, "kmon-a", host="a", pid=10, version="1", now=now)
            await leases.register(session, "kmon-b", host="b", pid=20, version="1", now=now)
            await leases.claim_sources(session, owner="kmon-a", ttl=600, now=now, due_by=now)
            await leases.claim_task(session, "quotes", owner="kmon-b", ttl=600, now=now, due_by=now)
            await leases.stopped(session, "kmon-b", now=now + timedelta(seconds=1))
    finally:
        await engine.dispose()


def test_replicas_list_says_who_holds_what(db_url: str, tmp_path: Path) -> None:
    cfg = config_file(tmp_path, db_url)
    empty = kmon("replicas", "list", config=cfg)
    assert (empty.exit_code, empty.output.strip()) == (0, "no replica has run on this database")
    asyncio.run(_two_replicas(db_url))
    rows = {r["id"]: r for r in json.loads(kmon("replicas", "list", "--format", "json",
                                                config=cfg).output)}  # fmt: skip
    assert (rows["kmon-a"]["status"], rows["kmon-a"]["sources"], rows["kmon-a"]["alive"]) == (
        "alive", 1, True,
    )  # fmt: skip
    assert (rows["kmon-b"]["status"], rows["kmon-b"]["tasks"]) == ("stopped", ["quotes"])
    table = kmon("replicas", "list", config=cfg).output
    assert "kmon-a" in table and "quotes" in table
    sources = json.loads(kmon("sources", "list", "--format", "json", config=cfg).output)
    polled = {s["name"]: s["polling"] for s in sources}
    assert polled == {"yna": "kmon-a"}
    assert "polled by" in kmon("sources", "list", config=cfg).output
