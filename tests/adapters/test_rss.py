"""adapters.rss against a real loopback server: parsing stays off the event loop."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import pytest

from adapters.errors import ParseError
from adapters.http import HttpLimits
from adapters.records import Validators
from adapters.rss import fetch_feed
from tests.servers import FakeSource

NOW = datetime(2026, 10, 5, 3, 0, tzinfo=UTC)
HOSTILE_TITLE = "&lt;a" + "b" * 60_000  # once 30 s of regex backtracking per poll


def rss(*items: str) -> bytes:
    body = "".join(f"<item><title>{t}</title><guid>g{i}</guid></item>" for i, t in enumerate(items))
    return f"<rss><channel><title>t</title>{body}</channel></rss>".encode()


async def test_hostile_title_is_fetched_and_parsed_quickly(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve("/feed", rss(HOSTILE_TITLE, "정상 기사"))
    started = time.perf_counter()
    result = await fetch_feed(
        session,
        http_server.url("/feed"),
        validators=Validators(),
        limits=HttpLimits(),
        fetched_at=NOW,
    )
    assert time.perf_counter() - started < 1.0
    assert [i.guid for i in result.items] == ["g0", "g1"]
    assert "field_truncated" in result.warnings


async def test_event_loop_keeps_its_turn_while_a_big_feed_parses(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve("/big", rss(*(f"<b>기사</b> {n} &amp; 시장" for n in range(12_000))))
    task = asyncio.create_task(
        fetch_feed(
            session,
            http_server.url("/big"),
            validators=Validators(),
            limits=HttpLimits(),
            fetched_at=NOW,
        )
    )
    longest = 0.0
    while not task.done():
        before = time.perf_counter()
        await asyncio.sleep(0)  # one turn of the loop, as a /healthz request would get
        longest = max(longest, time.perf_counter() - before)
    assert len((await task).items) == 12_000
    assert longest < 0.25


async def test_parse_over_its_time_bound_is_a_parse_error(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve("/feed", rss("제목"))
    with pytest.raises(ParseError) as caught:
        await fetch_feed(
            session,
            http_server.url("/feed"),
            validators=Validators(),
            limits=HttpLimits(),
            fetched_at=NOW,
            parse_timeout=0,
        )
    assert caught.value.key == "parse_timeout"


async def test_a_stray_byte_in_a_declared_utf8_feed_garbles_nothing(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    body = rss("정부, 반도체 지원 확대", "코스피 상승 마감").replace(
        "확대".encode(), b"\xff\xed\x99\x95\xeb\x8c\x80"
    )
    http_server.serve("/feed", body, headers={"Content-Type": "application/rss+xml; charset=UTF-8"})
    result = await fetch_feed(
        session,
        http_server.url("/feed"),
        validators=Validators(),
        limits=HttpLimits(),
        fetched_at=NOW,
    )
    assert [i.title for i in result.items] == ["정부, 반도체 지원 \ufffd확대", "코스피 상승 마감"]
    assert "encoding_errors" in result.warnings
