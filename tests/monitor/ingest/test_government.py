"""Government press releases: a source of source_type government, its items weighed as
official by the rules (scoring.source_types, a news rule's source_types)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.http import HttpLimits, make_client_session
from monitor.config import SchedulerSettings, Settings, SourceConfig
from monitor.db import repo
from monitor.db import signals as signals_repo
from monitor.db.schema import SignalRow
from monitor.ingest.context import HostLimiter, PollContext
from monitor.ingest.feeds import poll_source
from monitor.rules.engine import RulesEngine
from monitor.rules.explanation import parse
from monitor.rules.model import load_rules
from tests.servers import FakeSource

SM = async_sessionmaker[AsyncSession]
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
RELEASE = "과기정통부, 국가 AI컴퓨팅센터 GPU 1만장 확보 추진"
REPORT = "네이버, 소버린 AI 전략 발표"


def rss(guid: str, title: str) -> bytes:
    item = (
        f"<item><guid>{guid}</guid><title>{escape(title)}</title>"
        f"<pubDate>{format_datetime(T0)}</pubDate></item>"
    )
    return f'<rss version="2.0"><channel><title>t</title>{item}</channel></rss>'.encode()


@pytest.fixture
async def http() -> AsyncIterator[object]:
    async with make_client_session() as session:
        yield session


async def poll_all(sessionmaker: SM, http: object, rules_file: Path | None) -> list[SignalRow]:
    ctx = PollContext(
        sessionmaker=sessionmaker,
        http=http,  # type: ignore[arg-type]
        limits=HttpLimits(total_timeout=5),
        scheduling=SchedulerSettings(jitter=0),
        host_limiter=HostLimiter(2),
        clock=lambda: T0,
        rules=RulesEngine(load_rules(rules_file)),
    )
    async with sessionmaker() as session:
        states = await repo.load_sources(session)
    for state in states:
        await poll_source(ctx, state)
    async with sessionmaker() as session:
        return list((await session.scalars(select(SignalRow).order_by(SignalRow.id))).all())


async def add(sessionmaker: SM, http_server: FakeSource) -> None:
    http_server.serve("/msit", rss("m1", RELEASE))
    http_server.serve("/wire", rss("w1", REPORT))
    configs = [
        SourceConfig(name="msit", url=http_server.url("/msit"), source_type="government"),
        SourceConfig(name="wire", url=http_server.url("/wire")),
    ]
    async with sessionmaker.begin() as session:
        await repo.sync_sources(session, configs, now=T0)
        types = {s.name: s.source_type for s in await repo.load_sources(session)}
    assert types == {"msit": "government", "wire": "news"}


async def test_an_official_release_scores_above_a_report(
    sessionmaker: SM, http_server: FakeSource, http: object
) -> None:
    await add(sessionmaker, http_server)
    rows = await poll_all(sessionmaker, http, None)
    parts = {
        parse("news", r.explanation).title: dict(parse("news", r.explanation).score_parts)
        for r in rows
    }
    assert parts[RELEASE]["a government source"] == 10
    assert "a government source" not in parts[REPORT]


async def test_a_rule_may_take_government_sources_only(
    sessionmaker: SM, http_server: FakeSource, http: object, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - id: official-word\n    kind: news\n    severity: critical\n    score: 90\n"
        "    source_types: [government]\n    terms: {any: [GPU, 소버린 AI]}\n",
        encoding="utf-8",
    )
    await add(sessionmaker, http_server)
    rows = await poll_all(sessionmaker, http, rules)
    fired = {
        parse("news", r.explanation).title: [x.rule_id for x in parse("news", r.explanation).rules]
        for r in rows
    }
    assert "official-word" in fired[RELEASE]
    assert "official-word" not in fired.get(REPORT, [])


def test_the_defaults_hold_the_government_feeds() -> None:
    official = {s.name: s.url for s in Settings().sources if s.source_type == "government"}
    assert official == {
        "korea-kr-press": "https://www.korea.kr/rss/pressrelease.xml",
        "korea-kr-policy": "https://www.korea.kr/rss/policy.xml",
        "msit-press": "https://www.msit.go.kr/user/rss/rss.do?bbsSeqNo=94",
    }


async def test_a_story_takes_the_official_copy_as_its_headline(
    sessionmaker: SM, http_server: FakeSource, http: object
) -> None:
    http_server.serve("/wire", rss("w1", f"[속보] {RELEASE} - 연합뉴스"))
    http_server.serve("/msit", rss("m1", RELEASE))
    configs = [
        SourceConfig(name="wire", url=http_server.url("/wire")),
        SourceConfig(name="msit", url=http_server.url("/msit"), source_type="government"),
    ]
    async with sessionmaker.begin() as session:
        await repo.sync_sources(session, configs, now=T0)
    ctx = PollContext(
        sessionmaker=sessionmaker,
        http=http,  # type: ignore[arg-type]
        limits=HttpLimits(total_timeout=5),
        scheduling=SchedulerSettings(jitter=0),
        host_limiter=HostLimiter(2),
        clock=lambda: T0,
        rules=RulesEngine(load_rules()),
    )
    for name in ("wire", "msit", "wire"):  # the report first, the release, the report again
        async with sessionmaker() as session:
            [state] = await repo.load_sources(session, names=[name])
        await poll_source(ctx, state)
    async with sessionmaker() as session:
        [story] = (await session.scalars(select(SignalRow))).all()
        found = await signals_repo.get_signal(session, story.id)
    exp = parse("news", story.explanation)
    assert (story.headline, exp.source, exp.source_type) == (RELEASE, "msit", "government")
    assert found is not None
    assert [i.source for i in found[1]] == ["wire", "msit"]
