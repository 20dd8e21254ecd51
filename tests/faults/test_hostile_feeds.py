"""The real ``kmon run`` against hostile feeds, one source each, next to a healthy one.

The daemon must keep answering ``/healthz`` within a second while it polls them, store
what is good, give every hostile source a status, and keep its memory bounded.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from tests.faults.daemon import Daemon, Line, environment, kmon_json
from tests.feeds import billion_laughs, entries, rss
from tests.servers import FakeSource

pytestmark = pytest.mark.e2e

BODY_CAP = 1024 * 1024
PEAK_RSS_BOUND_KIB = 300 * 1024
SAMPLE_WINDOW = 8.0
SAMPLE_EVERY = 0.1

BAD_REFERENCES = ["&#xD800;", "&#x110000;", "&#99999999999;", "&#0;"]
# Dates no publisher means: an impossible offset, a year before 100, one far ahead.
BAD_DATES = {
    "시간대가 이상한 기사": "Wed, 18 Jun 2025 09:00:00 +2500",
    "서기 99년 기사": "Wed, 18 Jun 0099 09:00:00 +0900",
    "서기 0년 기사": "Wed, 18 Jun 0000 09:00:00 +0900",
    "2199년 기사": "Wed, 18 Jun 2199 09:00:00 +0900",
}


def item_xml(title: str, n: int, *, pub_date: str = "Wed, 18 Jun 2025 09:00:00 +0900") -> str:
    return (
        f"<item><title>{title}</title><link>https://bad.example.kr/{n}</link>"
        f'<guid isPermaLink="false">bad-{n}</guid><pubDate>{pub_date}</pubDate></item>'
    )


def channel(*items: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        "<title>hostile</title><link>https://bad.example.kr/</link>"
        + "".join(items)
        + "</channel></rss>"
    ).encode()


def bad_references_feed() -> tuple[bytes, list[str]]:
    """Good items with an item around each bad character reference between them."""
    parts, good = [], []
    for n, ref in enumerate(BAD_REFERENCES):
        good.append(f"좋은 이웃 {n}")
        parts.append(item_xml(good[-1], 2 * n))
        parts.append(item_xml(f"나쁜 참조 {ref} 뒤", 2 * n + 1))
    good.append("좋은 이웃 끝")
    parts.append(item_xml(good[-1], 99))
    return channel(*parts), good


def one_source(name: str, url: str) -> str:
    return f"  - name: {name}\n    url: {url}\n    interval: 1s\n"


async def sample_healthz(port: int, window: float) -> list[float]:
    """Ask /healthz every SAMPLE_EVERY seconds over ``window``; each answer's latency."""
    latencies: list[float] = []
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        end = time.monotonic() + window
        while time.monotonic() < end:
            started = time.monotonic()
            async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
                assert await resp.json() == {"status": "ok"}
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(SAMPLE_EVERY)
    return latencies


async def test_hostile_feeds_leave_the_daemon_responsive(
    db_url: str, http_server: FakeSource, tmp_path: Path
) -> None:
    healthy = entries(5)
    refs_body, good_neighbours = bad_references_feed()
    hostile: dict[str, str] = {}

    def add(name: str, path: str) -> None:
        hostile[name] = http_server.url(path)

    http_server.serve("/healthy.xml", rss(healthy))
    http_server.serve(
        "/long-title.xml", channel(item_xml("&lt;a" + "가나다라" * 5000 + "b" * 40_000, 1))
    )
    add("long-title", "/long-title.xml")
    http_server.serve("/bad-refs.xml", refs_body)
    add("bad-refs", "/bad-refs.xml")
    http_server.serve(
        "/bad-date.xml",
        channel(
            *(
                item_xml(title, n, pub_date=date)
                for n, (title, date) in enumerate(BAD_DATES.items())
            )
        ),
    )
    add("bad-date", "/bad-date.xml")
    # 64 MiB of zeros, about 64 KiB on the wire: only the decompressed count stops it.
    http_server.gzip("/gzip-bomb.xml", bytes(64 * 1024 * 1024))
    add("gzip-bomb", "/gzip-bomb.xml")
    http_server.serve("/entity-bomb.xml", billion_laughs())
    add("entity-bomb", "/entity-bomb.xml")
    http_server.chunked("/oversized.xml", rss(entries(1)) + b" " * (2 * BODY_CAP))
    add("oversized", "/oversized.xml")
    http_server.slow("/slow.xml", asyncio.Event(), rss(entries(1)))
    add("slow", "/slow.xml")
    http_server.truncated("/truncated.xml", rss(entries(20))[:2000])
    add("truncated", "/truncated.xml")
    http_server.fail("/error.xml", 500)
    add("error-500", "/error.xml")
    http_server.fail("/limited.xml", 429, headers={"Retry-After": "3600"})
    add("limited-429", "/limited.xml")

    config = tmp_path / "kmon.yaml"
    config.write_text(
        f"database:\n  url: {db_url}\n"
        "quotes:\n  enabled: false\n"
        f"http:\n  total_timeout: 2s\n  max_body_bytes: {BODY_CAP}\n"
        "sources:\n"
        + one_source("healthy", http_server.url("/healthy.xml"))
        + "".join(one_source(name, url) for name, url in hostile.items()),
        encoding="utf-8",
    )
    env = environment(config)
    daemon = Daemon(env)
    await daemon.start()
    try:
        started = await daemon.wait_for(
            lambda lines: [x for x in lines if x.get("event") == "health_server_started"],
            within=60,
        )
        latencies = await sample_healthz(int(started[0]["port"]), SAMPLE_WINDOW)

        def polled(lines: list[Line]) -> bool:
            seen = {x["source"] for x in lines if x.get("event") == "poll"}
            return seen >= {"healthy", *hostile}

        await daemon.wait_for(polled, within=30)
        peak_kib = daemon.peak_rss_kib()
        code = await daemon.stop(signal.SIGTERM)
    finally:
        await daemon.close()

    assert code == 0
    assert daemon.lines[-1]["event"] == "daemon_stopped"
    assert max(latencies) < 1.0, f"slowest /healthz answer: {max(latencies):.2f} s"
    assert len(latencies) >= SAMPLE_WINDOW / (1 + SAMPLE_EVERY)
    assert peak_kib < PEAK_RSS_BOUND_KIB, f"peak RSS {peak_kib} KiB"
    # The healthy feed was polled again and again while the hostile ones were.
    assert len([x for x in daemon.events("poll") if x["source"] == "healthy"]) >= 3

    items = await kmon_json("items", "list", "--limit", "1000", env=env)
    titles: dict[str, list[str]] = {}
    for item in items:
        titles.setdefault(item["source"], []).append(item["title"])
    assert sorted(titles["healthy"]) == sorted(e.title for e in healthy)
    assert set(good_neighbours) <= set(titles["bad-refs"])

    # A bad reference is dropped from its text; the item and its neighbours are kept.
    assert sorted(titles["bad-refs"]) == sorted([*good_neighbours, *["나쁜 참조 뒤"] * 4])
    # An impossible offset, a year before 100, the year 2199: the date is estimated (the
    # fetch time, this year), the item kept; 2199 does not sort it first for ever.
    bad_dates = [i for i in items if i["source"] == "bad-date"]
    assert sorted(i["title"] for i in bad_dates) == sorted(BAD_DATES)
    assert all(i["date_estimated"] for i in bad_dates)
    this_year = str(time.gmtime().tm_year)
    assert {i["published_at"][:4] for i in bad_dates} <= {this_year, str(int(this_year) + 1)}
    # The unclosed tag is text; the title is clipped, not the poll stopped.
    [long_title] = titles["long-title"]
    assert long_title.startswith("<a가나다라") and len(long_title) <= 1001
    # The entities are never expanded.
    [laughs] = titles["entity-bomb"]
    assert "lollol" not in laughs and len(laughs) < 100

    sources = {s["name"]: s for s in await kmon_json("sources", "list", env=env)}
    status = {n: (s["status"], (s["last_error"] or "").split(":")[0]) for n, s in sources.items()}
    assert status == {
        "healthy": ("ok", ""),
        "long-title": ("ok", ""),
        "bad-refs": ("ok", ""),
        "bad-date": ("ok", ""),
        "entity-bomb": ("ok", ""),
        "gzip-bomb": ("failing", "too_large"),
        "oversized": ("failing", "too_large"),
        "slow": ("failing", "timeout"),
        "truncated": ("failing", "truncated"),
        "error-500": ("failing", "http_500"),
        "limited-429": ("failing", "http_429"),
    }
    assert all(sources[n]["errors"] >= 1 for n, (st, _) in status.items() if st == "failing")
    # Retry-After: 3600 is honoured: the source was asked once.
    assert len(http_server.requests_to("/limited.xml")) == 1
