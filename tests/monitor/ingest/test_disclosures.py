"""OpenDART polls end to end: a loopback stand-in, real databases (both dialects)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from adapters.http import HttpLimits, make_client_session
from monitor.config import SchedulerSettings, SourceConfig
from monitor.db import disclosures as disclosures_repo
from monitor.db import repo
from monitor.db.schema import DisclosureRow, Item
from monitor.ingest.context import HostLimiter, PollContext
from monitor.ingest.feeds import poll_source
from monitor.ingest.sources import PollOutcome
from tests.dart_server import KAKAO, KEY, NAVER, DartStandIn
from tests.servers import FakeSource

# 10:00 KST on Wednesday 18 June 2025.
NOW = datetime(2025, 6, 18, 1, 0, tzinfo=UTC)
TODAY = date(2025, 6, 18)
SM = async_sessionmaker[AsyncSession]
SCHEDULING = SchedulerSettings(jitter=0, backoff_max=3600, permanent_retry=86400)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def dart(http_server: FakeSource) -> DartStandIn:
    return DartStandIn(http_server)


def dart_config(url: str, **extra: object) -> SourceConfig:
    values: dict[str, object] = {
        "name": "dart",
        "kind": "dart",
        "url": url,
        "interval": 300,
        "api_key": SecretStr(KEY),
        "tickers": ["035420", "035720"],
        **extra,
    }
    return SourceConfig.model_validate(values)


@asynccontextmanager
async def running(
    sessionmaker: SM, config: SourceConfig, clock: Callable[[], datetime]
) -> AsyncIterator[PollContext]:
    """One process's poll context: what a restart throws away and builds again."""
    async with make_client_session() as http:
        ctx = PollContext(
            sessionmaker=sessionmaker,
            http=http,
            limits=HttpLimits(total_timeout=5, max_body_bytes=1024 * 1024),
            scheduling=SCHEDULING,
            host_limiter=HostLimiter(4),
            clock=clock,
            dart_sources={config.name: config},
        )
        async with sessionmaker.begin() as session:
            await repo.sync_sources(session, [config], now=clock())
        yield ctx


async def poll(ctx: PollContext) -> PollOutcome:
    async with ctx.sessionmaker() as session:
        [state] = await repo.load_sources(session, names=["dart"])
    return await poll_source(ctx, state)


async def stored_receipts(sessionmaker: SM) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(DisclosureRow.rcept_no).order_by(DisclosureRow.rcept_no)
        )
        return list(rows.all())


async def state_of(sessionmaker: SM) -> repo.SourceState:
    async with sessionmaker() as session:
        [state] = await repo.load_sources(session, names=["dart"])
        return state


async def test_a_poll_stores_the_filings_of_the_watched_companies(
    sessionmaker: SM, dart: DartStandIn
) -> None:
    contract = dart.file(NAVER, "단일판매ㆍ공급계약체결", TODAY, rm="유")
    dart.file(KAKAO, "[기재정정]유상증자결정", TODAY)
    older = dart.file(NAVER, "기업설명회(IR)개최", TODAY - timedelta(days=2))

    async with running(sessionmaker, dart_config(dart.url), Clock(NOW)) as ctx:
        outcome = await poll(ctx)

    assert (outcome.status, len(outcome.new_item_ids)) == ("ok", 3)
    async with sessionmaker() as session:
        found = await disclosures_repo.list_disclosures(session, ticker="035420")
        item = await session.get(Item, found[0].item_id)
    assert [(d.rcept_no, d.report_nm, d.flags) for d in found] == [
        (contract.rcept_no, "단일판매ㆍ공급계약체결", "유"),
        (older.rcept_no, "기업설명회(IR)개최", ""),
    ]
    assert item is not None
    assert item.url == f"https://dart.fss.or.kr/dsaf001/main.do?rcpNo={contract.rcept_no}"
    assert (item.title, item.published_at, item.date_estimated) == (
        "[NAVER] 단일판매ㆍ공급계약체결",
        NOW,
        False,
    )
    older_item = next(d for d in found if d.rcept_no == older.rcept_no)
    # Only the date is known: the start of that KST day, estimated.
    assert older_item.published_at == datetime(2025, 6, 15, 15, 0, tzinfo=UTC)
    async with sessionmaker() as session:
        [kakao] = await disclosures_repo.list_disclosures(session, ticker="035720")
    assert (kakao.report_nm, kakao.correction) == ("[기재정정]유상증자결정", True)
    # The first poll reads back first_lookback_days (7); one request per company.
    assert [(q["corp_code"], q["bgn_de"], q["end_de"]) for q in dart.list_requests()] == [
        ("00258801", "20250611", "20250618"),
        ("00266961", "20250611", "20250618"),
    ]


async def test_corp_codes_are_looked_up_once_and_kept(sessionmaker: SM, dart: DartStandIn) -> None:
    dart.file(NAVER, "자기주식취득결정", TODAY)
    clock = Clock(NOW)
    async with running(sessionmaker, dart_config(dart.url), clock) as ctx:
        await poll(ctx)
        clock.now += timedelta(minutes=5)
        await poll(ctx)
    async with running(sessionmaker, dart_config(dart.url), clock) as ctx:
        await poll(ctx)
    assert dart.corp_code_requests() == 1


async def test_a_burst_of_250_filings_between_polls_is_stored_once_across_a_restart(
    sessionmaker: SM, dart: DartStandIn
) -> None:
    clock = Clock(NOW)
    config = dart_config(dart.url)
    for _ in range(150):
        dart.file(NAVER, "임원ㆍ주요주주특정증권등소유상황보고서", TODAY - timedelta(days=1))
    for _ in range(150):
        dart.file(NAVER, "임원ㆍ주요주주특정증권등소유상황보고서", TODAY)
    async with running(sessionmaker, config, clock) as ctx:
        assert len((await poll(ctx)).new_item_ids) == 300
        burst = [
            dart.file(NAVER, "주요사항보고서(자기주식취득결정)", TODAY).rcept_no for _ in range(250)
        ]
        clock.now += timedelta(minutes=5)
        outcome = await poll(ctx)
    assert (outcome.status, len(outcome.new_item_ids)) == ("ok", 250)
    # Three pages at first; then from the cursor's day (400 listed), up to the page
    # after the one holding the newest filing seen last time.
    naver = [
        (q["bgn_de"], q["page_no"]) for q in dart.list_requests() if q["corp_code"] == NAVER[0]
    ]
    assert naver == [("20250611", "1"), ("20250611", "2"), ("20250611", "3")] + [
        ("20250618", page) for page in "1234"
    ]

    # A new process: the cursors come from the database, not from memory.
    more = [dart.file(NAVER, "최대주주변경", TODAY).rcept_no for _ in range(120)]
    clock.now += timedelta(minutes=5)
    async with running(sessionmaker, config, clock) as ctx:
        after_restart = await poll(ctx)
        clock.now += timedelta(minutes=5)
        quiet = await poll(ctx)
    assert len(after_restart.new_item_ids) == 120
    assert quiet.new_item_ids == []
    receipts = await stored_receipts(sessionmaker)
    assert len(receipts) == len(set(receipts)) == 300 + 250 + 120
    assert set(burst + more) <= set(receipts)
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Item)) == 670


@pytest.mark.parametrize(
    ("answer", "status", "key"),
    [
        ({"status": "013", "message": "조회된 데이타가 없습니다."}, "ok", None),
        (
            {"status": "800", "message": "시스템 점검 중입니다."},
            "error",
            "dart_800",
        ),
        ({"status": "010", "message": "등록되지 않은 키입니다."}, "auth_failed", "dart_010"),
        ({"status": "011", "message": "사용할 수 없는 키입니다."}, "auth_failed", "dart_011"),
        ({"status": "012", "message": "접근할 수 없는 IP입니다."}, "auth_failed", "dart_012"),
        ({"status": "100", "message": "필드의 부적절한 값입니다."}, "error", "dart_100"),
        (b'{"status": "000", "list": [{"rcept_no": "12"}]}', "error", "dart_parse"),
        (b"<html><body>Service Unavailable</body></html>", "error", "dart_parse"),
        (b'{"status": "000", "list": [', "error", "dart_parse"),
    ],
)
async def test_statuses_map_to_the_error_family(
    sessionmaker: SM,
    dart: DartStandIn,
    answer: dict[str, object] | bytes,
    status: str,
    key: str | None,
) -> None:
    dart.file(NAVER, "유상증자결정", TODAY)
    dart.fail_next(answer)
    config = dart_config(dart.url, tickers=["035420"])
    with capture_logs() as logs:
        async with running(sessionmaker, config, Clock(NOW)) as ctx:
            outcome = await poll(ctx)
    assert (outcome.status, outcome.error_key) == (status, key)
    state = await state_of(sessionmaker)
    assert KEY not in (state.status + str(outcome.error) + repr(logs))
    if status == "auth_failed":
        assert outcome.next_check_at == NOW + timedelta(days=1)


async def test_a_poll_after_a_failure_pages_back_to_the_old_cursor(
    sessionmaker: SM, dart: DartStandIn
) -> None:
    clock = Clock(NOW)
    config = dart_config(dart.url, tickers=["035420"])
    dart.file(NAVER, "유상증자결정", TODAY)
    async with running(sessionmaker, config, clock) as ctx:
        await poll(ctx)
        for _ in range(150):
            dart.file(NAVER, "단일판매ㆍ공급계약체결", TODAY)
        # Page 1 answers, page 2 is under maintenance.
        newest = [f.row() for f in reversed(dart.filings[-100:])]
        dart.fail_next(
            {"status": "000", "message": "정상", "total_page": 2, "list": newest},
            {"status": "800", "message": "점검"},
        )
        clock.now += timedelta(minutes=5)
        failed = await poll(ctx)
        clock.now = failed.next_check_at
        recovered = await poll(ctx)
    assert (failed.status, failed.error_key) == ("error", "dart_800")
    assert recovered.status == "ok"
    receipts = await stored_receipts(sessionmaker)
    assert len(receipts) == len(set(receipts)) == 151


async def test_020_waits_for_the_next_kst_day(sessionmaker: SM, dart: DartStandIn) -> None:
    dart.fail_next({"status": "020", "message": "요청 제한을 초과하였습니다."})
    async with running(sessionmaker, dart_config(dart.url), Clock(NOW)) as ctx:
        outcome = await poll(ctx)
    assert (outcome.status, outcome.error_key) == ("error", "dart_020")
    # 00:00 KST on 19 June.
    assert outcome.next_check_at == datetime(2025, 6, 18, 15, 0, tzinfo=UTC)


async def test_the_budget_stops_requests_and_resumes_the_next_kst_day(
    sessionmaker: SM, dart: DartStandIn
) -> None:
    clock = Clock(NOW)
    # The corp-code file and two pages of the list: the third page waits a day.
    config = dart_config(dart.url, tickers=["035420"], daily_budget=3)
    filed = [dart.file(NAVER, "타법인주식및출자증권취득결정", TODAY).rcept_no for _ in range(230)]
    async with running(sessionmaker, config, clock) as ctx:
        spent = await poll(ctx)
        assert (spent.status, spent.error_key) == ("error", "budget")
        assert spent.next_check_at == datetime(2025, 6, 18, 15, 0, tzinfo=UTC)
        requests = len(dart.server.requests)
        clock.now += timedelta(hours=2)
        again = await poll(ctx)
        assert (again.error_key, len(dart.server.requests)) == ("budget", requests)
        async with ctx.sessionmaker() as session:
            used = await disclosures_repo.budget_used_today(session, now=clock.now)
        assert used == {"dart": 3}
        clock.now = datetime(2025, 6, 18, 15, 0, tzinfo=UTC)
        resumed = await poll(ctx)
    assert resumed.status == "ok"
    receipts = await stored_receipts(sessionmaker)
    assert sorted(filed) == receipts
    # The company had no cursor yet: the new day pages it again from the top.
    assert [q["page_no"] for q in dart.list_requests()] == ["1", "2", "1", "2", "3"]


async def test_types_are_queried_each_with_its_own_cursor(
    sessionmaker: SM, dart: DartStandIn
) -> None:
    config = dart_config(dart.url, tickers=["035420"], types=["B", "I"])
    async with running(sessionmaker, config, Clock(NOW)) as ctx:
        await poll(ctx)
    assert sorted(q["pblntf_ty"] for q in dart.list_requests()) == ["B", "I"]


async def test_a_ticker_unknown_to_dart_is_a_warning(sessionmaker: SM, dart: DartStandIn) -> None:
    config = dart_config(dart.url, tickers=["035420", "999990"])
    async with running(sessionmaker, config, Clock(NOW)) as ctx:
        outcome = await poll(ctx)
    assert (outcome.status, outcome.warnings) == ("ok", ("not_on_dart:999990",))
