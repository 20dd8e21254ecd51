"""A NAVER filing polled from the loopback OpenDART, then a quote cycle in which NAVER
surges: one disclosure signal, one disclosure_move naming both (both databases)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.http import HttpLimits, make_client_session
from monitor.alerts.outbox import alert_signal
from monitor.config import QuoteSettings, SchedulerSettings, SourceConfig
from monitor.db import quotes as quotes_repo
from monitor.db import repo
from monitor.db.schema import Delivery, SignalRow
from monitor.ingest.context import HostLimiter, PollContext
from monitor.ingest.feeds import poll_source
from monitor.ingest.quotes import poll_quotes, provider_urls
from monitor.rules.engine import RulesEngine
from monitor.rules.explain import describe
from monitor.rules.explanation import DisclosureMoveExplanation, parse
from monitor.rules.model import load_rules
from tests.dart_server import KAKAO, KEY, NAVER, DartStandIn
from tests.monitor.ingest.test_quotes import SURGE
from tests.servers import FakeSource

SM = async_sessionmaker[AsyncSession]
FILED_AT = datetime(2025, 6, 18, 0, 5, tzinfo=UTC)  # 09:05 KST
SURGE_AT = datetime(2025, 6, 18, 1, 30, tzinfo=UTC)  # 10:30 KST, as SURGE is stamped


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_a_naver_filing_then_a_move_is_one_disclosure_move_naming_both(
    sessionmaker: SM, http_server: FakeSource
) -> None:
    dart = DartStandIn(http_server)
    contract = dart.file(NAVER, "단일판매ㆍ공급계약체결", date(2025, 6, 18), rm="유")
    dart.file(NAVER, "[기재정정]기업설명회(IR)개최", date(2025, 6, 18))
    dart.file(KAKAO, "임원ㆍ주요주주특정증권등소유상황보고서", date(2025, 6, 18))
    http_server.serve("/naver/realtime", SURGE)
    source = SourceConfig(
        name="dart",
        kind="dart",
        url=dart.url,
        interval=300,
        api_key=SecretStr(KEY),
        tickers=["035420", "035720"],
    )
    quotes = QuoteSettings(
        providers=["naver"], naver_polling_url=http_server.url("/naver/realtime")
    )
    clock = Clock(FILED_AT)
    async with sessionmaker.begin() as session:
        await repo.sync_sources(session, [source], now=clock.now)
        await quotes_repo.sync_quote_sources(
            session, provider_urls(quotes), interval=60, now=clock.now
        )
    async with make_client_session() as http:
        ctx = PollContext(
            sessionmaker=sessionmaker,
            http=http,
            limits=HttpLimits(total_timeout=5),
            scheduling=SchedulerSettings(jitter=0),
            host_limiter=HostLimiter(4),
            clock=clock,
            rules=RulesEngine(load_rules()),
            dart_sources={"dart": source},
        )
        async with sessionmaker() as session:
            [state] = await repo.load_sources(session, names=["dart"])
        polled = await poll_source(ctx, state)
        clock.now = SURGE_AT
        await poll_quotes(ctx, quotes)
        clock.now += timedelta(minutes=1)
        await poll_quotes(ctx, quotes)  # the same session again: no second signal

    assert len(polled.new_item_ids) == 3
    async with sessionmaker() as session:
        rows = list((await session.scalars(select(SignalRow).order_by(SignalRow.id))).all())
    by_kind = {(r.kind, r.subject): r for r in rows}
    disclosures = [r for r in rows if r.kind == "disclosure"]
    # The contract only: the IR correction is no new event, the insider report routine.
    assert [(r.rule_id, r.subject, r.headline) for r in disclosures] == [
        ("dart-contract-stake", "035420", "[NAVER] 단일판매ㆍ공급계약체결")
    ]
    assert [r for r in rows if r.kind == "disclosure_move"] == [
        by_kind[("disclosure_move", "035420")]
    ]
    joined = by_kind[("disclosure_move", "035420")]
    assert joined.tickers == " 035420 "
    assert joined.headline.startswith("035420 +15.25% after: [NAVER] 단일판매ㆍ공급계약체결")
    exp = parse("disclosure_move", joined.explanation)
    assert isinstance(exp, DisclosureMoveExplanation)
    assert exp.move is not None and exp.move.ticker == "035420"
    [match] = exp.rules
    assert [(f.rcept_no, f.disclosure_rules) for f in match.filings] == [
        (contract.rcept_no, ("dart-contract-stake",))
    ]
    text = "\n".join(describe(exp))
    assert contract.rcept_no in text and "단일판매ㆍ공급계약체결" in text and "+15.25%" in text
    # Nothing joins Kakao's +6.4 %: its filing fired no rule.
    assert ("disclosure_move", "035720") not in by_kind
    async with sessionmaker() as session:
        assert (await session.scalars(select(Delivery))).all() == []  # no routes: stored only
    # As an alert shows them.
    names = {"035420": "NAVER"}
    filed = alert_signal(disclosures[0], names)
    assert (filed.title, filed.url, filed.source) == (
        "NAVER 035420: 단일판매ㆍ공급계약체결",
        f"https://dart.fss.or.kr/dsaf001/main.do?rcpNo={contract.rcept_no}",
        "OpenDART",
    )
    moved = alert_signal(joined, names)
    assert moved.title == "NAVER 035420 +15.25% (KOSPI +0.70%) after a filing"
    assert moved.why == f"after: 단일판매ㆍ공급계약체결 ({contract.rcept_no})"
    assert moved.move is not None and moved.move.change_pct == exp.move.change_pct
