"""Quote cycles against local Naver and Yahoo stand-ins and a real database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from adapters.http import HttpLimits, make_client_session
from adapters.records import Quote
from monitor.config import QuoteSettings, SchedulerSettings
from monitor.db import quotes as quotes_repo
from monitor.db import repo
from monitor.db.schema import QuoteRow
from monitor.ingest.context import HostLimiter, PollContext
from monitor.ingest.quotes import (
    BarsJob,
    QuoteJob,
    check_quote,
    poll_quotes,
    provider_urls,
    refresh_bars,
    source_name,
)
from tests.episode import naver_chart
from tests.servers import FakeSource, Reply

SM = async_sessionmaker[AsyncSession]
# 2025-06-18 10:30 KST, the morning of the surge.
NOW = datetime(2025, 6, 18, 1, 30, tzinfo=UTC)
EPOCH_MS = int(NOW.timestamp() * 1000)


def naver_item(code: str, price: int, prev: int, *, rf: str | None = None) -> dict[str, Any]:
    change = price - prev
    direction = rf or ("2" if change > 0 else "5" if change < 0 else "3")
    return {
        "cd": code, "nv": price, "sv": prev, "pcv": prev, "cv": abs(change),
        "cr": round(abs(change) / prev * 100, 2), "rf": direction, "ms": "OPEN",
        "ov": prev, "hv": max(price, prev), "lv": min(price, prev), "aq": 1_000_000,
    }  # fmt: skip


def naver_body(
    stocks: list[dict[str, Any]], kospi: tuple[int, int] | None = None, *, at_ms: int = EPOCH_MS
) -> bytes:
    areas = [{"name": "SERVICE_ITEM", "datas": stocks}]
    if kospi:
        price, prev = kospi  # the index × 100, as the endpoint sends it
        areas.append(
            {
                "name": "SERVICE_INDEX",
                "datas": [{**naver_item("KOSPI", price, prev), "aq": 700_000}],
            }
        )
    envelope = {"resultCode": "success", "result": {"areas": areas, "time": at_ms}}
    return json.dumps(envelope).encode()


SURGE = naver_body(
    [naver_item("035420", 253_550, 220_000), naver_item("035720", 55_200, 51_900)],
    kospi=(297_085, 295_020),
)


def yahoo_body(symbol: str, price: float, prev: float) -> bytes:
    at = int(NOW.timestamp())
    session_start = int(datetime(2025, 6, 18, 0, 0, tzinfo=UTC).timestamp())
    meta = {
        "currency": "KRW", "symbol": symbol, "gmtoffset": 32400, "timezone": "KST",
        "exchangeTimezoneName": "Asia/Seoul", "regularMarketPrice": price,
        "regularMarketTime": at, "chartPreviousClose": prev, "previousClose": prev,
        "currentTradingPeriod": {
            "regular": {"start": session_start, "end": session_start + 23400, "gmtoffset": 32400}
        },
    }  # fmt: skip
    result = {
        "meta": meta,
        "timestamp": [session_start],
        "indicators": {
            "quote": [
                {"open": [prev], "high": [price], "low": [prev], "close": [price], "volume": [10]}
            ]
        },
    }
    return json.dumps({"chart": {"result": [result], "error": None}}).encode()


@pytest.fixture
def cfg(http_server: FakeSource) -> QuoteSettings:
    return QuoteSettings(
        providers=["naver", "yahoo"],
        naver_polling_url=http_server.url("/naver/realtime"),
        yahoo_chart_url=http_server.url("/yahoo/chart"),
        naver_chart_url=http_server.url("/naver/fchart"),
    )


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def ctx(sessionmaker: SM, cfg: QuoteSettings) -> AsyncIterator[PollContext]:
    clock = Clock(NOW)
    async with sessionmaker.begin() as session:
        await quotes_repo.sync_quote_sources(
            session, provider_urls(cfg), interval=cfg.interval, now=NOW
        )
    async with make_client_session() as http:
        yield PollContext(
            sessionmaker=sessionmaker,
            http=http,
            limits=HttpLimits(total_timeout=5),
            scheduling=SchedulerSettings(jitter=0, backoff_max=3600),
            host_limiter=HostLimiter(4),
            clock=clock,
        )


def serve_yahoo(server: FakeSource) -> None:
    server.serve("/yahoo/chart/035420.KS", yahoo_body("035420.KS", 253_000, 220_000))
    server.serve("/yahoo/chart/035720.KS", yahoo_body("035720.KS", 55_100, 51_900))
    server.serve("/yahoo/chart/^KS11", yahoo_body("^KS11", 2970.5, 2950.2))


async def stored(ctx: PollContext) -> dict[str, QuoteRow]:
    async with ctx.sessionmaker() as session:
        rows = (await session.scalars(select(QuoteRow).order_by(QuoteRow.id))).all()
    return {r.ticker: r for r in rows}


async def test_naver_serves_signed_values_stored_once(
    ctx: PollContext, cfg: QuoteSettings, http_server: FakeSource
) -> None:
    http_server.serve("/naver/realtime", SURGE)
    first = await poll_quotes(ctx, cfg)
    second = await poll_quotes(ctx, cfg)

    assert (first.stored, first.served_by, first.missing) == (3, {"naver": 3}, [])
    assert second.stored == 0  # the same quotes again: unique on ticker, as-of, source
    assert len(http_server.requests_to("/naver/realtime")) == 2  # one request per cycle
    rows = await stored(ctx)
    naver, kakao, kospi = rows["035420"], rows["035720"], rows["KOSPI"]
    assert (naver.price, naver.change, naver.source) == (253_550, 33_550, "naver")
    assert naver.change_pct == pytest.approx(15.25, abs=0.01)
    assert kakao.change_pct == pytest.approx(6.36, abs=0.01)
    assert kospi.price == pytest.approx(2970.85)  # index points, not × 100
    assert kospi.change_pct == pytest.approx(0.70, abs=0.01)
    assert naver.as_of == NOW


async def test_fallback_serves_then_primary_takes_over_again(
    ctx: PollContext, cfg: QuoteSettings, http_server: FakeSource
) -> None:
    http_server.sequence("/naver/realtime", [Reply(status=500), Reply(SURGE)])
    serve_yahoo(http_server)
    clock = ctx.clock
    assert isinstance(clock, Clock)

    with capture_logs() as logs:
        failed_over = await poll_quotes(ctx, cfg)
        clock.now = NOW + timedelta(seconds=30)  # naver still backing off (60 s)
        still_over = await poll_quotes(ctx, cfg)
        clock.now = NOW + timedelta(seconds=61)
        recovered = await poll_quotes(ctx, cfg)

    assert failed_over.served_by == {"yahoo": 3}
    assert "naver" in failed_over.failed
    assert still_over.served_by == {"yahoo": 3}
    assert len(http_server.requests_to("/naver/realtime")) == 2  # not asked while backing off
    assert recovered.served_by == {"naver": 3}
    # The same canonical line as a feed's poll: one flip to failing, one back.
    naver = [e for e in logs if e["event"] == "poll" and e["source"] == source_name("naver")]
    assert [e.get("transition") for e in naver] == ["failing", "recovered"]
    assert naver[0]["log_level"] == "warning"
    async with ctx.sessionmaker() as session:
        rows = await quotes_repo.list_quotes(session, ticker="035420")
        state = (await repo.load_sources(session, names=[source_name("naver")]))[0]
    # Newest first; Yahoo's second answer was the same quote, so it is stored once.
    assert [r.source for r in rows] == ["naver", "yahoo"]
    assert still_over.stored == 0
    assert (state.status, state.error_count) == ("ok", 0)


async def test_a_crashing_provider_is_one_failure_and_the_fallback_serves(
    ctx: PollContext, cfg: QuoteSettings, http_server: FakeSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in a provider's adapter (a KeyError on an answer it did not foresee) is
    that provider's ``internal`` failure: the next provider serves, the quotes are
    stored, and the provider's row backs off like any failing source's."""
    from monitor.ingest import quotes as quotes_module

    async def crashing(*args: object) -> list[Quote]:
        raise KeyError("result")

    monkeypatch.setitem(quotes_module.PROVIDERS, "naver", crashing)
    serve_yahoo(http_server)
    with capture_logs() as logs:
        cycle = await poll_quotes(ctx, cfg)
    assert cycle.served_by == {"yahoo": 3}
    assert cycle.failed == {"naver": "internal: KeyError: 'result'"}
    assert set(await stored(ctx)) == {"035420", "035720", "KOSPI"}
    async with ctx.sessionmaker() as session:
        naver = (await repo.load_sources(session, names=[source_name("naver")]))[0]
    assert (naver.status, naver.error_count) == ("failing", 1)
    assert naver.next_check_at == NOW + timedelta(seconds=cfg.interval)
    crashed = [e for e in logs if e["event"] == "fetch_crashed"]
    assert [e["source"] for e in crashed] == [source_name("naver")]  # the traceback, once
    poll = next(e for e in logs if e["event"] == "poll" and e["source"] == source_name("naver"))
    assert (poll["transition"], poll["error_key"]) == ("failing", "internal")


async def test_a_rejected_quote_is_asked_of_the_fallback(
    ctx: PollContext, cfg: QuoteSettings, http_server: FakeSource
) -> None:
    broken = naver_body(
        [naver_item("035420", 400_000, 220_000), naver_item("035720", 55_200, 51_900)]
    )
    http_server.serve("/naver/realtime", broken)
    serve_yahoo(http_server)
    with capture_logs() as logs:
        cycle = await poll_quotes(ctx, cfg)
    assert cycle.rejected == [("035420", "change +81.8% is beyond the ±30% daily limit")]
    assert cycle.served_by == {"naver": 1, "yahoo": 2}  # NAVER and the index from Yahoo
    assert [e["ticker"] for e in logs if e["event"] == "quote_rejected"] == ["035420"]
    rows = await stored(ctx)
    assert (rows["035420"].source, rows["035420"].price) == ("yahoo", 253_000)


@pytest.mark.parametrize(
    ("quote", "kind", "reference", "reason"),
    [
        (Quote("035420", NOW, 0, "naver"), "stock", None, "non-positive price 0"),
        (Quote("035420", NOW, -5, "naver"), "stock", None, "non-positive price -5"),
        (
            Quote("035420", NOW, 300_000, "naver", prev_close=220_000),
            "stock",
            None,
            "change +36.4% is beyond the ±30% daily limit",
        ),
        (
            Quote("035420", NOW + timedelta(hours=1), 250_000, "naver"),
            "stock",
            None,
            "as-of 2025-06-18T02:30:00+00:00 is in the future",
        ),
        (
            Quote("035420", datetime(2025, 6, 16, 6, 0, tzinfo=UTC), 250_000, "naver"),
            "stock",
            None,
            "as-of 2025-06-16T06:00:00+00:00 is older than the last session",
        ),
        (
            Quote("KOSPI", NOW, 297_085, "naver"),
            "index",
            2950.2,
            "price 297085 is 101× the last known 2950.2",
        ),
        (Quote("KOSPI", NOW, 2970.85, "naver", prev_close=2950.2), "index", None, None),
        (Quote("035420", NOW, 286_000, "naver", prev_close=220_000), "stock", None, None),
        (Quote("035420", NOW + timedelta(minutes=2), 250_000, "naver"), "stock", None, None),
    ],
)
def test_check_quote(quote: Quote, kind: str, reference: float | None, reason: str | None) -> None:
    got = check_quote(quote, kind=kind, now=NOW, reference=reference)
    assert got == reason or (reason is not None and got is not None and got.startswith(reason))


async def test_no_source_answers_leaves_tickers_missing(
    ctx: PollContext, cfg: QuoteSettings, http_server: FakeSource
) -> None:
    http_server.fail("/naver/realtime", 503, headers={"Retry-After": "120"})
    cycle = await poll_quotes(ctx, cfg)  # yahoo paths are unregistered: 404
    assert cycle.stored == 0
    assert sorted(cycle.missing) == ["035420", "035720", "KOSPI"]
    assert set(cycle.failed) == {"naver", "yahoo"}
    async with ctx.sessionmaker() as session:
        naver = (await repo.load_sources(session, names=[source_name("naver")]))[0]
    assert naver.next_check_at == NOW + timedelta(seconds=120)  # Retry-After honoured


# Triggers that make the database refuse every quote: by raising, or (PostgreSQL) by
# terminating the connection the insert came on, as an administrator or a failover does.
REFUSALS = {
    ("sqlite", "raises"): [
        "CREATE TRIGGER refuse_quotes BEFORE INSERT ON quotes "
        "BEGIN SELECT RAISE(ABORT, 'quotes refused'); END"
    ],
    ("postgresql", "raises"): [
        "CREATE OR REPLACE FUNCTION refuse_quotes() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'quotes refused'; END $$",
        "CREATE TRIGGER refuse_quotes BEFORE INSERT ON quotes "
        "FOR EACH ROW EXECUTE FUNCTION refuse_quotes()",
    ],
    ("postgresql", "terminates"): [
        "CREATE OR REPLACE FUNCTION refuse_quotes() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$",
        "CREATE TRIGGER refuse_quotes BEFORE INSERT ON quotes "
        "FOR EACH ROW EXECUTE FUNCTION refuse_quotes()",
    ],
}


@pytest.mark.parametrize("refusal", ["raises", "terminates"])
async def test_a_store_failure_is_a_failure_of_the_provider_that_answered(
    ctx: PollContext, cfg: QuoteSettings, http_server: FakeSource, db_url: str, refusal: str
) -> None:
    """The database refusing a cycle's transaction fails the provider whose quotes it
    was storing, as a fetch failure would: the cycle returns, one line says why, the
    provider's row is ``failing`` (``store``) and backs off, so the fallback serves;
    nothing of the refused cycle is kept, and nothing is stored twice after."""
    dialect = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    if (dialect, refusal) not in REFUSALS:
        pytest.skip("SQLite has no connection to terminate")
    http_server.serve("/naver/realtime", SURGE)
    serve_yahoo(http_server)
    clock = ctx.clock
    assert isinstance(clock, Clock)
    async with ctx.sessionmaker.begin() as session:
        for statement in REFUSALS[dialect, refusal]:
            await session.execute(text(statement))

    with capture_logs() as logs:
        after = await QuoteJob(ctx, cfg).run()  # returns its next run: no crash
    assert after == NOW + timedelta(seconds=cfg.interval)
    assert [e["source"] for e in logs if e["event"] == "store_failed"] == [source_name("naver")]
    poll = next(e for e in logs if e["event"] == "poll")
    assert (poll["source"], poll["transition"], poll["error_key"]) == (
        source_name("naver"),
        "failing",
        "store",
    )
    assert await stored(ctx) == {}
    async with ctx.sessionmaker() as session:
        rows = {r.name: r for r in await repo.list_sources(session)}
    naver_row = rows[source_name("naver")]
    assert (naver_row.status, naver_row.error_count) == ("failing", 1)
    assert naver_row.last_error is not None and naver_row.last_error.startswith("store: ")
    assert naver_row.next_check_at == NOW + timedelta(seconds=cfg.interval)
    assert rows[source_name("yahoo")].status == "new"  # not asked: nothing was missing

    drop = "DROP TRIGGER refuse_quotes" + (" ON quotes" if dialect == "postgresql" else "")
    async with ctx.sessionmaker.begin() as session:
        await session.execute(text(drop))
    clock.now = NOW + timedelta(seconds=30)  # naver backing off: the fallback serves
    fallback = await poll_quotes(ctx, cfg)
    clock.now = NOW + timedelta(seconds=61)
    recovered = await poll_quotes(ctx, cfg)

    assert (fallback.served_by, fallback.stored) == ({"yahoo": 3}, 3)
    assert (recovered.served_by, recovered.stored) == ({"naver": 3}, 3)
    async with ctx.sessionmaker() as session:
        rows = (await session.scalars(select(QuoteRow))).all()
        naver = (await repo.load_sources(session, names=[source_name("naver")]))[0]
    assert sorted((r.ticker, r.source) for r in rows) == sorted(
        (ticker, source)
        for ticker in ("035420", "035720", "KOSPI")
        for source in ("naver", "yahoo")
    )
    assert (naver.status, naver.error_count) == ("ok", 0)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # Open: the next cycle one interval on.
        (datetime(2025, 6, 18, 1, 30, tzinfo=UTC), datetime(2025, 6, 18, 1, 31, tzinfo=UTC)),
        # Saturday: Monday's open.
        (datetime(2025, 6, 21, 3, 0, tzinfo=UTC), datetime(2025, 6, 23, 0, 0, tzinfo=UTC)),
        # Just after Wednesday's close: the closing-price poll two minutes on.
        (datetime(2025, 6, 18, 6, 30, 30, tzinfo=UTC), datetime(2025, 6, 18, 6, 32, tzinfo=UTC)),
    ],
)
def test_quote_job_follows_the_krx_clock(now: datetime, expected: datetime) -> None:
    job = QuoteJob(ctx=None, cfg=QuoteSettings())  # type: ignore[arg-type]
    assert job.next_run(now) == expected


def test_bars_refresh_half_an_hour_after_each_close() -> None:
    job = BarsJob(ctx=None, cfg=QuoteSettings())  # type: ignore[arg-type]
    # Wednesday 10:30 KST → Wednesday 16:00 KST; Friday evening → Monday 16:00 KST.
    assert job.next_run(NOW) == datetime(2025, 6, 18, 7, 0, tzinfo=UTC)
    friday_night = datetime(2025, 6, 20, 12, 0, tzinfo=UTC)
    assert job.next_run(friday_night) == datetime(2025, 6, 23, 7, 0, tzinfo=UTC)


async def test_one_unknown_ticker_does_not_take_the_fallback_down(
    ctx: PollContext, cfg: QuoteSettings, http_server: FakeSource
) -> None:
    http_server.fail("/naver/realtime", 500)
    serve_yahoo(http_server)
    http_server.fail("/yahoo/chart/^KS11", 404)  # e.g. a symbol Yahoo does not carry
    cycle = await poll_quotes(ctx, cfg)
    assert cycle.served_by == {"yahoo": 2}
    assert cycle.missing == ["KOSPI"]
    async with ctx.sessionmaker() as session:
        yahoo = (await repo.load_sources(session, names=[source_name("yahoo")]))[0]
    assert (yahoo.status, yahoo.error_count) == ("ok", 0)


def test_a_split_stock_is_not_refused_for_its_old_price() -> None:
    after_split = Quote("035420", NOW, 51_000, "naver", prev_close=50_000)
    assert check_quote(after_split, kind="stock", now=NOW, reference=250_000) is None


async def test_daily_bars_give_previous_close_range_and_volume(sessionmaker: SM) -> None:
    from datetime import date

    from adapters.records import DailyBar

    days = [date(2025, 6, d) for d in (9, 10, 11, 12, 13, 16, 17)]
    bars = [
        DailyBar("035420", day, None, 200_000 + i * 1000, 190_000 + i * 1000, 195_000 + i * 1000,
                 1_000 * (i + 1), "naver")
        for i, day in enumerate(days)
    ]  # fmt: skip
    async with sessionmaker.begin() as session:
        await quotes_repo.upsert_bars(session, bars, fetched_at=NOW)
    # A refresh replaces the last day's bar instead of adding one.
    revised = DailyBar("035420", days[-1], None, 230_000, 180_000, 220_000, 9_000, "yahoo")
    async with sessionmaker.begin() as session:
        await quotes_repo.upsert_bars(session, [revised], fetched_at=NOW)
    async with sessionmaker() as session:
        stats = await quotes_repo.bar_stats(session, "035420", before=date(2025, 6, 18))
        earlier = await quotes_repo.bar_stats(session, "035420", before=date(2025, 6, 12))
    assert (stats.prev_close, stats.prev_day) == (220_000, date(2025, 6, 17))
    assert (stats.high_52w, stats.low_52w) == (230_000, 180_000)
    assert stats.avg_volume_20d == pytest.approx(
        (1000 + 2000 + 3000 + 4000 + 5000 + 6000 + 9000) / 7
    )
    assert (earlier.prev_close, earlier.high_52w) == (197_000, 202_000)


async def test_a_bar_of_the_session_still_trading_is_not_stored(
    ctx: PollContext, cfg: QuoteSettings, http_server: FakeSource
) -> None:
    async def fchart(request: web.Request) -> web.Response:
        # Naver's chart at 10:30 already has a 06-18 row: the morning's figures so far.
        return web.Response(body=naver_chart(request.query["symbol"], through=date(2025, 6, 18)))

    http_server.route("/naver/fchart", fchart)
    clock = ctx.clock
    assert isinstance(clock, Clock)

    async def newest() -> date | None:
        async with ctx.sessionmaker() as session:
            return (
                await quotes_repo.bar_stats(session, "035420", before=date(2025, 7, 1))
            ).prev_day

    await refresh_bars(ctx, cfg)
    assert await newest() == date(2025, 6, 17)
    clock.now = datetime(2025, 6, 18, 6, 30, tzinfo=UTC)  # 15:30 KST, the close
    await refresh_bars(ctx, cfg)
    assert await newest() == date(2025, 6, 18)
