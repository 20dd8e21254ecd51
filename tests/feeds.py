"""Builders for the project's own test feeds, modelled on the Korean feeds we poll."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

KST_OFFSET = timedelta(hours=9)


@dataclass(frozen=True)
class Entry:
    title: str
    link: str | None
    guid: str | None
    published: datetime | None
    description: str = ""


def entries(count: int, *, start: int = 0, base: datetime | None = None) -> list[Entry]:
    """``count`` distinct Korean entries, newest first, one minute apart."""
    base = base or datetime(2025, 6, 18, 0, 0, tzinfo=UTC)
    return [
        Entry(
            title=f"네이버 하이퍼클로바X 소식 {n}",
            link=f"https://news.example.kr/article/{n}?utm_source=rss",
            guid=f"https://news.example.kr/article/{n}",
            published=base - timedelta(minutes=n),
            description=f"<p>정부의 <b>소버린 AI</b> 전략 {n}번째 기사 &amp; 분석</p>",
        )
        for n in range(start, start + count)
    ]


def rss(items: Sequence[Entry], *, encoding: str = "utf-8", declare: bool = True) -> bytes:
    """An RSS 2.0 document with ``+0900`` dates, encoded as ``encoding``."""
    parts = []
    for e in items:
        fields = [f"<title>{escape(e.title)}</title>"]
        if e.link:
            fields.append(f"<link>{escape(e.link)}</link>")
        if e.guid:
            fields.append(f'<guid isPermaLink="false">{escape(e.guid)}</guid>')
        if e.published:
            kst = e.published.astimezone(UTC) + KST_OFFSET
            stamp = format_datetime(kst.replace(tzinfo=None)).replace("-0000", "+0900")
            fields.append(f"<pubDate>{stamp}</pubDate>")
        fields.append(f"<description>{escape(e.description)}</description>")
        parts.append("<item>" + "".join(fields) + "</item>")
    prolog = f'<?xml version="1.0" encoding="{encoding}"?>\n' if declare else ""
    doc = (
        f'{prolog}<rss version="2.0"><channel><title>테스트 뉴스</title>'
        "<link>https://news.example.kr/</link><language>ko</language>"
        + "".join(parts)
        + "</channel></rss>\n"
    )
    return doc.encode(encoding)


def billion_laughs(levels: int = 10) -> bytes:
    """An entity bomb: ~30 bytes * 10**levels once expanded (300 GB at 10)."""
    decls = ['<!ENTITY lol0 "lollollollollollollollollollol">']
    decls += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels)]
    return (
        f'<?xml version="1.0"?><!DOCTYPE rss [{"".join(decls)}]>'
        '<rss version="2.0"><channel><title>t</title>'
        f"<item><title>a &lol{levels - 1}; b</title><link>http://x.example/1</link></item>"
        "</channel></rss>"
    ).encode()
