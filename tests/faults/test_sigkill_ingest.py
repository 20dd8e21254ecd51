"""``kmon run`` SIGKILLed again and again while it ingests a farm of feeds, then restarted:
every item is stored exactly once, and no signal twice."""

from __future__ import annotations

import random
import signal
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import func, select

from monitor.db.engine import make_engine, make_sessionmaker
from monitor.db.schema import Item, SignalItem, SignalRow
from tests.faults.daemon import Daemon, Line, environment
from tests.feeds import entries, rss
from tests.servers import FakeSource

pytestmark = pytest.mark.e2e

FEEDS = 40
ITEMS = 50
KILLS = 3
SEED = 20250618


def polled_ok(lines: list[Line]) -> set[str]:
    return {
        str(x["source"])
        for x in lines
        if x.get("event") == "poll" and x.get("status") in ("ok", "not_modified")
    }


def some_polled(count: int, lines: list[Line]) -> bool:
    return len(polled_ok(lines)) >= count


async def test_sigkill_during_ingestion_stores_each_item_once(
    db_url: str, http_server: FakeSource, tmp_path: Path
) -> None:
    sources = []
    for n in range(FEEDS):
        # Distinct items per feed: each feed's external ids start where the last ended.
        http_server.serve(f"/feed-{n}.xml", rss(entries(ITEMS, start=n * ITEMS)))
        sources.append(
            f"  - name: feed-{n}\n    url: {http_server.url(f'/feed-{n}.xml')}\n    interval: 2s\n"
        )
    config = tmp_path / "kmon.yaml"
    config.write_text(
        f"database:\n  url: {db_url}\nquotes:\n  enabled: false\n"
        "health:\n  enabled: false\nsources:\n" + "".join(sources),
        encoding="utf-8",
    )
    env = environment(config)
    chance = random.Random(SEED)
    for _ in range(KILLS):
        # Killed once a few polls (a seeded number) have finished in this run: the next
        # polls are in flight, some inside their transaction.
        after = chance.randint(1, FEEDS // 2)
        daemon = Daemon(env)
        await daemon.start()
        try:
            await daemon.wait_for(partial(some_polled, after), within=60)
            await daemon.stop(signal.SIGKILL)
        finally:
            await daemon.close()

    daemon = Daemon(env)
    await daemon.start()
    try:
        everyone = {f"feed-{n}" for n in range(FEEDS)}
        await daemon.wait_for(lambda lines: polled_ok(lines) >= everyone, within=60)
        assert await daemon.stop(signal.SIGTERM) == 0
    finally:
        await daemon.close()

    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as session:
            counts = (
                await session.execute(
                    select(Item.external_id, func.count()).group_by(Item.external_id)
                )
            ).all()
            links = (
                await session.execute(
                    select(SignalRow.rule_id, SignalItem.item_id, func.count())
                    .join(SignalItem, SignalItem.signal_id == SignalRow.id)
                    .group_by(SignalRow.rule_id, SignalItem.item_id)
                )
            ).all()
            signals = (await session.execute(select(func.count(SignalRow.id)))).scalar_one()
    finally:
        await engine.dispose()
    assert len(counts) == FEEDS * ITEMS
    assert {count for _, count in counts} == {1}
    assert signals > 0
    assert {count for _, _, count in links} == {1}
