"""A poll end to end against a real local server and a real database (both dialects)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from structlog.testing import capture_logs

from adapters.http import HttpLimits, make_client_session
from adapters.records import Validators
from monitor.config import SchedulerSettings, SourceConfig
from monitor.db import leases, repo
from monitor.db import signals as signals_repo
from monitor.db.schema import Item
from monitor.ingest.context import HostLimiter, PollContext
from monitor.ingest.feeds import poll_source
from tests.feeds import entries, rss
from tests.monitor.db.test_onetrip import refused_etag
from tests.servers import FakeSource, Reply, truncated_reply

NOW = datetime(2025, 6, 18, 1, 0, tzinfo=UTC)
SM = async_sessionmaker[AsyncSession]
SCHEDULING = SchedulerSettings(jitter=0, backoff_max=3600, permanent_retry=86400)


@pytest.fixture
async def ctx(sessionmaker: SM) -> AsyncIterator[PollContext]:
    async with make_client_session() as http:
        yield PollContext(
            sessionmaker=sessionmaker,
            http=http,
            limits=HttpLimits(total_timeout=5, max_body_bytes=1024 * 1024),
            scheduling=SCHEDULING,
            host_limiter=HostLimiter(4),
            clock=lambda: NOW,
        )


async def add_source(ctx: PollContext, url: str, name: str = "feed") -> None:
    async with ctx.sessionmaker.begin() as session:
        await repo.sync_sources(session, [SourceConfig(name=name, url=url, interval=60)], now=NOW)


async def poll(ctx: PollContext, name: str = "feed") -> object:
    async with ctx.sessionmaker() as session:
        state = (await repo.load_sources(session, names=[name]))[0]
    return await poll_source(ctx, state)


async def state_of(ctx: PollContext, name: str = "feed") -> repo.SourceState:
    async with ctx.sessionmaker() as session:
        return (await repo.load_sources(session, names=[name]))[0]


async def stored_titles(ctx: PollContext) -> list[str]:
    async with ctx.sessionmaker() as session:
        return list((await session.scalars(select(Item.title).order_by(Item.id))).all())


async def test_new_items_then_not_modified(ctx: PollContext, http_server: FakeSource) -> None:
    http_server.serve(
        "/rss", rss(entries(3)), etag='"v1"', last_modified="Wed, 18 Jun 2025 00:00:00 GMT"
    )
    await add_source(ctx, http_server.url("/rss"))

    first = await poll(ctx)
    second = await poll(ctx)

    assert (first.status, len(first.new_item_ids), first.http_status) == ("ok", 3, 200)
    assert (second.status, second.new_item_ids, second.http_status) == ("not_modified", [], 304)
    conditional = http_server.requests_to("/rss")[1].headers
    assert conditional["If-None-Match"] == '"v1"'
    assert conditional["If-Modified-Since"] == "Wed, 18 Jun 2025 00:00:00 GMT"
    state = await state_of(ctx)
    assert (state.status, state.error_count, state.last_success_at) == ("ok", 0, NOW)
    assert state.next_check_at == NOW + timedelta(seconds=60)
    assert len(await stored_titles(ctx)) == 3


async def test_only_new_entries_are_inserted(ctx: PollContext, http_server: FakeSource) -> None:
    http_server.sequence("/rss", [Reply(rss(entries(5))), Reply(rss(entries(8)))])
    await add_source(ctx, http_server.url("/rss"))
    assert len((await poll(ctx)).new_item_ids) == 5
    assert len((await poll(ctx)).new_item_ids) == 3
    assert len(await stored_titles(ctx)) == 8


async def test_server_error_backs_off_then_recovers(
    ctx: PollContext, http_server: FakeSource
) -> None:
    http_server.sequence("/rss", [Reply(status=500), Reply(status=502), Reply(rss(entries(2)))])
    await add_source(ctx, http_server.url("/rss"))
    with capture_logs() as logs:
        first = await poll(ctx)
        second = await poll(ctx)
        third = await poll(ctx)

    assert (first.status, first.error_key) == ("error", "http_500")
    assert first.next_check_at == NOW + timedelta(seconds=60)
    assert second.next_check_at == NOW + timedelta(seconds=120)  # doubled
    assert third.status == "ok"
    state = await state_of(ctx)
    assert (state.status, state.error_count) == ("ok", 0)
    # One warning when it starts failing, one line saying it recovered.
    assert [(e["log_level"], e.get("transition")) for e in logs] == [
        ("warning", "failing"),
        ("info", None),
        ("info", "recovered"),
    ]
    assert all(e["event"] == "poll" and e["source"] == "feed" for e in logs)


async def test_retry_after_is_honoured(ctx: PollContext, http_server: FakeSource) -> None:
    http_server.fail("/rss", 429, headers={"Retry-After": "900"})
    await add_source(ctx, http_server.url("/rss"))
    outcome = await poll(ctx)
    assert (outcome.status, outcome.error_key) == ("error", "http_429")
    assert outcome.next_check_at == NOW + timedelta(seconds=900)
    state = await state_of(ctx)
    assert state.status == "failing"
    assert state.next_check_at == NOW + timedelta(seconds=900)


@pytest.mark.parametrize(
    ("status", "key", "marked"),
    [
        (404, "http_404", "failed"),
        (410, "http_410", "failed"),
        # Refused credentials: a human has to act, so they are a state of their own.
        (401, "http_401", "auth_failed"),
        (403, "http_403", "auth_failed"),
    ],
)
async def test_permanent_failure_marks_the_source(
    ctx: PollContext, http_server: FakeSource, status: int, key: str, marked: str
) -> None:
    http_server.fail("/rss", status)
    await add_source(ctx, http_server.url("/rss"))
    with capture_logs() as logs:
        outcome = await poll(ctx)
        await poll(ctx)
    assert (outcome.status, outcome.error_key) == (marked, key)
    state = await state_of(ctx)
    assert state.status == marked
    assert state.next_check_at == NOW + timedelta(days=1)
    polls = [e for e in logs if e["event"] == "poll"]
    assert [e["log_level"] for e in polls] == ["warning", "info"]  # said once, loudly
    assert polls[0]["transition"] == marked


async def test_auth_failure_raises_one_signal_and_clears_on_success(
    ctx: PollContext, http_server: FakeSource
) -> None:
    http_server.sequence("/rss", [Reply(status=401), Reply(status=403), Reply(rss(entries(1)))])
    await add_source(ctx, http_server.url("/rss"))
    await poll(ctx)
    await poll(ctx)
    async with ctx.sessionmaker() as session:
        rows = await signals_repo.list_signals(session, signals_repo.SignalFilter())
    # One signal for the outage, however often the source refuses.
    assert [(r.kind, r.rule_id, r.severity, r.subject) for r in rows] == [
        ("source_auth", "source-auth", "warning", "feed")
    ]
    assert rows[0].explanation["last_error"].startswith("http_401")
    recovered = await poll(ctx)
    assert getattr(recovered, "status", None) == "ok"
    assert (await state_of(ctx)).status == "ok"


async def test_html_page_is_a_parse_error_and_stores_nothing(
    ctx: PollContext, http_server: FakeSource
) -> None:
    http_server.serve(
        "/rss",
        b"<!DOCTYPE html><html><head><title>Maintenance</title></head>"
        b"<body>Back soon</body></html>",
        headers={"Content-Type": "text/html; charset=utf-8"},
    )
    await add_source(ctx, http_server.url("/rss"))
    outcome = await poll(ctx)
    assert (outcome.status, outcome.error_key) == ("error", "not_a_feed")
    assert await stored_titles(ctx) == []
    assert (await state_of(ctx)).error_count == 1


async def test_truncated_transfer_is_retried_and_loses_nothing(
    ctx: PollContext, http_server: FakeSource
) -> None:
    body = rss(entries(4))
    http_server.sequence("/rss", [truncated_reply(body), Reply(body)])
    await add_source(ctx, http_server.url("/rss"))
    first = await poll(ctx)
    second = await poll(ctx)
    assert (first.status, first.error_key) == ("error", "truncated")
    assert (second.status, len(second.new_item_ids)) == ("ok", 4)


async def test_euc_kr_feed_without_declaration_is_stored_as_hangul(
    ctx: PollContext, http_server: FakeSource
) -> None:
    body = rss(entries(2), encoding="cp949", declare=False)
    http_server.serve("/rss", body, headers={"Content-Type": "application/rss+xml"})
    await add_source(ctx, http_server.url("/rss"))
    outcome = await poll(ctx)
    assert outcome.status == "ok"
    assert await stored_titles(ctx) == [
        "네이버 하이퍼클로바X 소식 0",
        "네이버 하이퍼클로바X 소식 1",
    ]


async def test_entity_bomb_is_defused(ctx: PollContext, http_server: FakeSource) -> None:
    lol = "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    bomb = (
        '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY lol0 "lol">' + lol + "]>"
        '<rss version="2.0"><channel><title>t</title><item><title>폭탄 &lol9;</title>'
        "<guid>b1</guid></item></channel></rss>"
    ).encode()
    http_server.serve("/rss", bomb)
    await add_source(ctx, http_server.url("/rss"))
    outcome = await poll(ctx)
    # The DTD is dropped unexpanded; the entry itself is kept, reference as text.
    assert outcome.status == "ok"
    assert "dtd_removed" in outcome.warnings
    assert await stored_titles(ctx) == ["폭탄 &lol9;"]


def test_host_limiter_shares_a_semaphore_per_host() -> None:
    limiter = HostLimiter(3)
    a = limiter.semaphore_for("https://www.yna.co.kr/rss/news.xml")
    assert a is limiter.semaphore_for("https://WWW.YNA.CO.KR/rss/economy.xml")
    assert a is not limiter.semaphore_for("https://www.koreaherald.com/rss/newsAll")
    assert a._value == 3


def test_host_limiter_keeps_the_slots_of_at_most_max_hosts_least_recent_out() -> None:
    limiter = HostLimiter(2, max_hosts=3)
    slots = {n: limiter.semaphore_for(f"https://h{n}.example/rss") for n in range(3)}
    assert limiter.semaphore_for("https://h0.example/other") is slots[0]  # h0 asked again
    slots[3] = limiter.semaphore_for("https://h3.example/rss")
    assert len(limiter) == 3
    # h1 was the least recently asked: forgotten; h0, h2 and h3 keep theirs.
    assert [limiter.semaphore_for(f"https://h{n}.example/x") is slots[n] for n in (0, 2, 3)] == [
        True,
        True,
        True,
    ]
    assert limiter.semaphore_for("https://h1.example/rss") is not slots[1]
    assert len(limiter) == 3
    with pytest.raises(ValueError):
        HostLimiter(2, max_hosts=0)


async def test_stalled_sources_do_not_starve_a_healthy_one_on_their_host(
    ctx: PollContext, http_server: FakeSource
) -> None:
    """Four slow-loris feeds (headers and a first byte, then nothing) on the host of a
    healthy fifth, with four polls allowed per host: once the stalled fetches pass
    the hold they stop counting, and the healthy feed is polled while they still hang;
    each stalled one is stored when its server finishes."""
    release = asyncio.Event()
    stalled: set[str] = set()
    all_stalled = asyncio.Event()
    body = rss(entries(2))

    async def slow_loris(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        await response.prepare(request)
        await response.write(body[:1])
        stalled.add(request.path)
        if len(stalled) == 4:
            all_stalled.set()
        await release.wait()
        await response.write(body[1:])
        return response

    slow = [f"slow-{n}" for n in range(4)]
    for name in slow:
        http_server.route(f"/{name}", slow_loris)
    http_server.serve("/healthy", rss(entries(3, start=100)))
    async with ctx.sessionmaker.begin() as session:
        configs = [SourceConfig(name=n, url=http_server.url(f"/{n}")) for n in [*slow, "healthy"]]
        await repo.sync_sources(session, configs, now=NOW)
    # Stalls far longer than the test would wait: only the hold can free their slots.
    limited = replace(
        ctx, limits=HttpLimits(total_timeout=120), host_limiter=HostLimiter(4, hold=0.05)
    )

    polls = [asyncio.create_task(poll(limited, name)) for name in slow]
    async with asyncio.timeout(30):
        await all_stalled.wait()
        healthy = await poll(limited, "healthy")
    assert not any(p.done() for p in polls)  # polled while all four still hang
    assert (healthy.status, len(healthy.new_item_ids)) == ("ok", 3)

    release.set()
    async with asyncio.timeout(30):
        outcomes = await asyncio.gather(*polls)
    assert [(o.status, len(o.new_item_ids)) for o in outcomes] == [("ok", 2)] * 4
    assert limited.host_limiter.semaphore_for(http_server.url("/"))._value == 4  # all back


async def test_a_cancelled_slow_fetch_gives_its_slot_back_once() -> None:
    limiter = HostLimiter(1, hold=0.01)
    semaphore = limiter.semaphore_for("https://www.yna.co.kr/rss")
    started, never = asyncio.Event(), asyncio.Event()

    async def stalled() -> None:
        started.set()
        await never.wait()

    async def polled() -> None:
        async with limiter.for_url("https://www.yna.co.kr/rss") as slot:
            await slot.fetch(stalled())

    held = asyncio.create_task(polled())
    await started.wait()
    # The one slot: taken by the stalled fetch, given up when it passes the hold.
    async with limiter.for_url("https://www.yna.co.kr/other"):
        assert semaphore._value == 0
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    assert semaphore._value == 1  # given back once, not twice


async def test_items_and_source_state_commit_together(
    ctx: PollContext, http_server: FakeSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_server.serve("/rss", rss(entries(3)), etag='"v1"')
    await add_source(ctx, http_server.url("/rss"))

    async def state_update_fails(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the database went away after the items were inserted")

    # Fault injection at the last step of the transaction: the items written just
    # before it must not survive, and the validators must not move on.
    monkeypatch.setattr(repo, "record_success", state_update_fails)
    failed = await poll(ctx)
    assert (failed.status, failed.error_key) == ("error", "store")  # recorded, not raised
    assert await stored_titles(ctx) == []
    assert (await state_of(ctx)).validators.etag is None
    monkeypatch.undo()
    assert len((await poll(ctx)).new_item_ids) == 3  # nothing was lost: all three now


async def source_row(ctx: PollContext, name: str = "feed") -> dict[str, object]:
    """The source's row as the database holds it."""
    async with ctx.sessionmaker() as session:
        found = await session.execute(text("SELECT * FROM sources WHERE name = :n"), {"n": name})
        return dict(found.mappings().one())


async def test_a_304_records_what_a_poll_records_and_gives_the_lease_back(
    ctx: PollContext, http_server: FakeSource
) -> None:
    modified = "Wed, 18 Jun 2025 00:00:00 GMT"
    http_server.sequence(
        "/rss",
        [
            Reply(rss(entries(2)), etag='"v1"', last_modified=modified),
            Reply(b"down", status=500),
            Reply(rss(entries(2)), etag='"v1"', last_modified=modified),
        ],
    )
    await add_source(ctx, http_server.url("/rss"))
    assert (await poll(ctx)).status == "ok"
    failing = await poll(replace(ctx, clock=lambda: NOW + timedelta(minutes=1)))
    assert failing.status == "error"
    later = NOW + timedelta(minutes=5)
    async with ctx.sessionmaker.begin() as session:
        [claimed] = await leases.claim_sources(session, owner="replica-a", ttl=120, now=later)
    before = await source_row(ctx)
    assert before["lease_owner"] == "replica-a"

    answer = await poll_source(replace(ctx, clock=lambda: later), claimed)

    assert (answer.status, answer.http_status) == ("not_modified", 304)
    after = await source_row(ctx)
    changed = {k: v for k, v in after.items() if v != before[k]}
    async with ctx.sessionmaker() as session:
        state = (await repo.load_sources(session, names=["feed"]))[0]
    assert state.validators == Validators(etag='"v1"', last_modified=modified)
    assert (state.status, state.error_count, state.last_success_at) == ("ok", 0, later)
    assert state.next_check_at == later + timedelta(seconds=60)
    # Exactly what a success writes, and nothing else: the last error stays on record.
    assert set(changed) == {
        "status",
        "error_count",
        "last_success_at",
        "last_polled_at",
        "next_check_at",
        "lease_owner",
        "lease_until",
    }
    assert (after["lease_owner"], after["lease_until"]) == (None, None)
    assert after["last_error"] == before["last_error"] is not None
    assert len(await stored_titles(ctx)) == 2


async def test_a_poll_whose_commit_the_database_refuses_stores_nothing_and_is_retried(
    ctx: PollContext, http_server: FakeSource
) -> None:
    http_server.serve("/rss", rss(entries(3)), etag='"v1"')
    await add_source(ctx, http_server.url("/rss"))
    # The database refuses the source's new state: the last statement of the
    # transaction, run with the commit. The items inserted before it must go too.
    async with refused_etag(ctx.sessionmaker, '"v1"'):
        failed = await poll(ctx)

    assert (failed.status, failed.error_key) == ("error", "store")
    assert "refused by the database" in (failed.error or "")
    assert await stored_titles(ctx) == []
    state = await state_of(ctx)
    assert (state.status, state.error_count, state.validators.etag) == ("failing", 1, None)
    retried = await poll(ctx)
    assert (retried.status, len(retried.new_item_ids)) == ("ok", 3)
    assert len(await stored_titles(ctx)) == 3
    assert (await state_of(ctx)).validators.etag == '"v1"'
