"""Items/s of the two feed parsing paths on a 50-item Korean RSS 2.0 feed.

Every figure but the "cold dates" ones is taken with the date cache warm (the same
date strings parsed before, as when a poll re-reads a feed); the lxml path and the
public parse_feed are given cold too, every date string new, as at a first poll.

Run: .venv/bin/python bench/parse_feed.py  (prints figures; not a test)
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapters.feed import (
    _fast_path,
    _feedparser_path,
    _parse_date,
    _prepare,
    parse_feed,
)

ITEMS = 50
NOW = datetime(2026, 10, 5, 3, 0, tzinfo=UTC)


def make_feed(n: int = ITEMS) -> bytes:
    """A realistic feed: CDATA + HTML descriptions, dc:creator, +0900 dates."""
    items = "".join(
        f"""<item>
<title><![CDATA[[속보] 정부, AI 반도체 지원 {i}조원 확대…"K-칩스 2.0" 발표]]></title>
<link>https://news.example.kr/article/{1000 + i}?from=rss&amp;ref=main</link>
<guid isPermaLink="false">kmon-{1000 + i}</guid>
<description><![CDATA[<p>과학기술정보통신부는 5일 <b>인공지능</b> 반도체 지원을&nbsp;확대한다고
밝혔다. 업계는 &quot;환영&quot;한다는 입장이다.</p><img src="https://img.example.kr/{i}.jpg">]]></description>
<dc:creator>김하늘 기자</dc:creator>
<pubDate>Mon, 05 Oct 2026 {i % 24:02d}:{i % 60:02d}:00 +0900</pubDate>
</item>
"""
        for i in range(n)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">\n'
        "<channel><title>케이몬 벤치마크</title><link>https://news.example.kr/</link>"
        f"<language>ko</language>{items}</channel></rss>"
    ).encode()


def rate(fn: Callable[[], object], number: int = 20, repeat: int = 15) -> float:
    """Items per second of ``fn`` (one ITEMS-item feed per call), best of ``repeat``.

    The best round, not the mean: on a shared machine the noise only ever adds time.
    """
    fn()  # warm-up: imports, regex caches
    best = min(timeit.repeat(fn, number=number, repeat=repeat))
    return number * ITEMS / best


def main() -> None:
    body = make_feed()
    data = _prepare(body, "application/rss+xml; charset=utf-8").data
    fast = _fast_path(data, NOW)
    assert fast is not None and len(fast.items) == ITEMS
    assert fast == _feedparser_path(data, NOW)
    print(f"feed: {ITEMS} items, {len(body):,} bytes")

    def cold() -> None:
        _parse_date.cache_clear()  # as if every date string were new
        _fast_path(data, NOW)

    print(f"lxml fast path      : {rate(lambda: _fast_path(data, NOW)):>10,.0f} items/s")
    print(f"  same, cold dates  : {rate(cold):>10,.0f} items/s")
    print(f"feedparser path     : {rate(lambda: _feedparser_path(data, NOW)):>10,.0f} items/s")

    def public_cold() -> None:
        _parse_date.cache_clear()
        parse_feed(body, fetched_at=NOW)

    # Warm: a poll that sees the feed's items again (the date cache answers).
    # Cold: a feed whose every date string is new, as at the first poll.
    print(f"parse_feed (public) : {rate(lambda: parse_feed(body, fetched_at=NOW)):>10,.0f} items/s")
    print(f"  same, cold dates  : {rate(public_cold):>10,.0f} items/s")


if __name__ == "__main__":
    main()
