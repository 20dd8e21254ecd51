"""The rules engine in the pipeline: stale sources, restarts, copies of a story."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.http import HttpLimits, make_client_session
from monitor.alerting import AlertSettings
from monitor.config import SchedulerSettings, SourceConfig
from monitor.db import repo
from monitor.db import signals as signals_repo
from monitor.db.schema import Delivery, SignalRow
from monitor.ingest.context import HostLimiter, PollContext
from monitor.ingest.feeds import poll_source
from monitor.rules.engine import RulesEngine
from monitor.rules.model import Ruleset, load_rules
from tests.servers import FakeSource, Reply

SM = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
STORY = "대통령실 첫 AI미래기획수석에 하정우 네이버 AI센터장 임명"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def ruleset() -> Ruleset:
    return load_rules(None)


def rss(*items: tuple[str, str, datetime]) -> bytes:
    body = "".join(
        f"<item><guid>{guid}</guid><title>{escape(title)}</title>"
        f"<pubDate>{format_datetime(when)}</pubDate></item>"
        for guid, title, when in items
    )
    return f'<rss version="2.0"><channel><title>t</title>{body}</channel></rss>'.encode()


@pytest.fixture
async def http() -> AsyncIterator[object]:
    async with make_client_session() as session:
        yield session


def context(sessionmaker: SM, http: object, clock: Clock, ruleset: Ruleset) -> PollContext:
    return PollContext(
        sessionmaker=sessionmaker,
        http=http,  # type: ignore[arg-type]
        limits=HttpLimits(total_timeout=5),
        scheduling=SchedulerSettings(jitter=0, backoff_max=600),
        host_limiter=HostLimiter(2),
        clock=clock,
        rules=RulesEngine(ruleset),
    )


async def add_sources(sessionmaker: SM, *sources: tuple[str, str], interval: float = 60) -> None:
    configs = [SourceConfig(name=name, url=url, interval=interval) for name, url in sources]
    async with sessionmaker.begin() as session:
        await repo.sync_sources(session, configs, now=T0)


async def source(sessionmaker: SM, name: str) -> repo.SourceState:
    async with sessionmaker() as session:
        return (await repo.load_sources(session, names=[name]))[0]


async def signals(sessionmaker: SM) -> list[SignalRow]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(SignalRow).order_by(SignalRow.id))).all())


async def test_a_source_silent_for_six_intervals_is_stale_once_per_outage(
    sessionmaker: SM, http_server: FakeSource, http: object, ruleset: Ruleset
) -> None:
    clock = Clock()
    ctx = context(sessionmaker, http, clock, ruleset)
    http_server.sequence(
        "/feed",
        [Reply(rss(("a", "날씨", T0))), *[Reply(status=503)] * 8, Reply(rss(("a", "날씨", T0)))]
        + [Reply(status=503)] * 10,
    )
    await add_sources(sessionmaker, ("wx", http_server.url("/feed")), interval=60)
    assert (await poll_source(ctx, await source(sessionmaker, "wx"))).status == "ok"
    stale_after: list[int] = []
    # Eight failures, each a 100 s later: stale once 6 × 60 s have passed, and only once.
    for n in range(1, 9):
        clock.now = T0 + timedelta(seconds=100 * n)
        assert (await poll_source(ctx, await source(sessionmaker, "wx"))).status == "error"
        if await signals(sessionmaker):
            stale_after.append(n)
    assert stale_after[0] == 4  # 400 s ≥ 360 s
    (signal,) = await signals(sessionmaker)
    assert (signal.kind, signal.rule_id, signal.subject) == ("source_stale", "source-stale", "wx")
    assert signal.explanation["since"] == T0.isoformat()
    assert signal.explanation["last_error"].startswith("http_503")
    # It recovers, then fails again for long enough: a second outage, a second signal.
    clock.now = T0 + timedelta(seconds=1000)
    assert (await poll_source(ctx, await source(sessionmaker, "wx"))).status == "ok"
    for n in range(1, 8):
        clock.now = T0 + timedelta(seconds=1000 + 100 * n)
        await poll_source(ctx, await source(sessionmaker, "wx"))
    stale = [s for s in await signals(sessionmaker) if s.kind == "source_stale"]
    assert [s.explanation["since"] for s in stale] == [
        T0.isoformat(),
        (T0 + timedelta(seconds=1000)).isoformat(),
    ]


async def test_a_source_that_never_worked_counts_its_failures(
    sessionmaker: SM, http_server: FakeSource, http: object, ruleset: Ruleset
) -> None:
    clock = Clock()
    ctx = context(sessionmaker, http, clock, ruleset)
    http_server.fail("/down", 500)
    await add_sources(sessionmaker, ("down", http_server.url("/down")))
    for n in range(6):
        clock.now = T0 + timedelta(hours=n)
        await poll_source(ctx, await source(sessionmaker, "down"))
        assert bool(await signals(sessionmaker)) == (n == 5)
    (signal,) = await signals(sessionmaker)
    assert signal.dedup_key == "source_stale:source-stale:down:never"
    assert signal.explanation["failures"] == 6


async def test_after_a_restart_a_late_copy_joins_its_story(
    sessionmaker: SM, http_server: FakeSource, http: object, ruleset: Ruleset
) -> None:
    clock = Clock()
    http_server.serve("/wire", rss(("w1", f"[속보] {STORY}", T0)))
    http_server.serve("/portal", rss(("p1", f"{STORY} - 한국경제", T0 + timedelta(minutes=20))))
    await add_sources(
        sessionmaker, ("wire", http_server.url("/wire")), ("portal", http_server.url("/portal"))
    )
    first = context(sessionmaker, http, clock, ruleset)
    await poll_source(first, await source(sessionmaker, "wire"))
    # A new process: nothing in memory, the clusters come back from the stored signals.
    clock.now = T0 + timedelta(hours=1)
    second = context(sessionmaker, http, clock, ruleset)
    outcome = await poll_source(second, await source(sessionmaker, "portal"))
    assert len(outcome.new_item_ids) == 1
    (story,) = await signals(sessionmaker)
    async with sessionmaker() as session:
        found = await signals_repo.get_signal(session, story.id)
    assert found is not None
    assert [i.source for i in found[1]] == ["wire", "portal"]


async def test_after_a_restart_the_english_report_joins_the_korean_story(
    sessionmaker: SM, http_server: FakeSource, http: object, ruleset: Ruleset
) -> None:
    clock = Clock()
    english = "Naver's Ha Jung-woo named presidential AI secretary - Reuters"
    http_server.serve("/wire", rss(("w1", f"[속보] {STORY}", T0)))
    http_server.serve("/wire-en", rss(("e1", english, T0 + timedelta(hours=5))))
    await add_sources(
        sessionmaker, ("wire", http_server.url("/wire")), ("wire-en", http_server.url("/wire-en"))
    )
    await poll_source(
        context(sessionmaker, http, clock, ruleset), await source(sessionmaker, "wire")
    )
    clock.now = T0 + timedelta(hours=6)
    second = context(sessionmaker, http, clock, ruleset)
    outcome = await poll_source(second, await source(sessionmaker, "wire-en"))
    assert len(outcome.new_item_ids) == 1
    # One story in two languages: one signal (so one alert), both copies linked to it.
    (story,) = await signals(sessionmaker)
    async with sessionmaker() as session:
        found = await signals_repo.get_signal(session, story.id)
    assert found is not None
    assert [(i.source, i.title) for i in found[1]] == [
        ("wire", f"[속보] {STORY}"),
        ("wire-en", english),
    ]


async def test_without_a_restart_the_window_still_separates_stories(
    sessionmaker: SM, http_server: FakeSource, http: object, ruleset: Ruleset
) -> None:
    clock = Clock()
    # Both dates in the past of the poll: a date far ahead of it is no date at all.
    earlier = T0 - timedelta(days=30)
    http_server.serve("/wire", rss(("w1", STORY, earlier), ("w2", STORY, T0)))
    await add_sources(sessionmaker, ("wire", http_server.url("/wire")))
    ctx = context(sessionmaker, http, clock, ruleset)
    await poll_source(ctx, await source(sessionmaker, "wire"))
    # The same words a month apart: two stories, two signals.
    assert len(await signals(sessionmaker)) == 2


async def test_a_failing_store_loses_neither_items_nor_signals(
    sessionmaker: SM, http_server: FakeSource, http: object, ruleset: Ruleset
) -> None:
    """An outbox write that fails (its table is gone) rolls the poll back as a whole."""
    clock = Clock()
    http_server.serve("/wire", rss(("w1", STORY, T0)))
    await add_sources(sessionmaker, ("wire", http_server.url("/wire")))
    ctx = context(sessionmaker, http, clock, ruleset)
    ctx.alerts = AlertSettings()  # the default: one console channel, every signal
    async with sessionmaker.begin() as session:
        await session.execute(text("ALTER TABLE deliveries RENAME TO deliveries_away"))
    failed = await poll_source(ctx, await source(sessionmaker, "wire"))
    assert (failed.status, failed.error_key) == ("error", "store")
    async with sessionmaker() as session:
        assert await repo.list_items(session, repo.ItemFilter()) == []
    assert await signals(sessionmaker) == []
    # The next poll, with the outbox back, stores all three.
    async with sessionmaker.begin() as session:
        await session.execute(text("ALTER TABLE deliveries_away RENAME TO deliveries"))
    outcome = await poll_source(ctx, await source(sessionmaker, "wire"))
    assert len(outcome.new_item_ids) == 1
    assert len(await signals(sessionmaker)) == 1
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Delivery)) == 1


STORIES = [
    "배경훈 과기정통부 장관 후보자 지명",
    "정부, 국가 AI컴퓨팅센터 사업자 공모 착수",
    "네이버 하이퍼클로바X 정부 소버린 AI 사업 참여",
    "과기정통부 AI 기본법 시행령 입법예고",
    "카카오, 정부 AI 바우처 사업 선정",
]


async def test_a_restart_restores_at_most_the_window_bound_newest_first(
    sessionmaker: SM, http_server: FakeSource, http: object, ruleset: Ruleset
) -> None:
    clock = Clock()
    http_server.serve(
        "/wire",
        rss(*((f"w{n}", title, T0 + timedelta(minutes=n)) for n, title in enumerate(STORIES))),
    )
    http_server.serve("/portal", rss(("p1", f"{STORY} - 한국경제", T0 + timedelta(minutes=30))))
    await add_sources(
        sessionmaker, ("wire", http_server.url("/wire")), ("portal", http_server.url("/portal"))
    )
    first = context(sessionmaker, http, clock, ruleset)
    await poll_source(first, await source(sessionmaker, "wire"))
    assert len(first.rules.clusters) == len(STORIES)
    # A new process whose window holds three: the three latest stored copies come back.
    clock.now = T0 + timedelta(hours=1)
    second = context(sessionmaker, http, clock, ruleset)
    second.rules = RulesEngine(ruleset, story_headlines=3)
    await poll_source(second, await source(sessionmaker, "portal"))
    assert len(second.rules.clusters) == 3
    # The portal's copy (at 30 min) and the two latest wire stories (3 and 4 min).
    assert second.rules.clusters.oldest() == T0 + timedelta(minutes=3)
