"""Property: whatever bytes arrive, parse_feed gives a ParsedFeed or ParseError, never
another exception, and what it gives can be stored. KMON_FUZZ_EXAMPLES raises the
number of examples (default 300)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.errors import ParseError
from adapters.feed import SUMMARY_MAX, TITLE_MAX, parse_feed

NOW = datetime(2026, 10, 5, 3, 0, tzinfo=UTC)
EXAMPLES = int(os.environ.get("KMON_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # timing is asserted on the corpus; shared CI cores jitter
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("KMON_FUZZ_EXAMPLES") is None,  # the suite stays stable
)
UNSTORABLE = set("\x00\ufffe\uffff") | {chr(c) for c in range(0xD800, 0xE000)}

char_refs = st.one_of(
    st.integers(0, 0x10FFFF + 10).map(lambda c: f"&#{c};"),
    st.integers(0, 0x7FFFFFFF).map(lambda c: f"&#x{c:X};"),
    st.text("0123456789", min_size=1, max_size=40).map(lambda d: f"&#{d};"),
    st.sampled_from(["&amp;", "&lt;", "&gt;", "&nbsp;", "&e;", "&", "&#;", "&#x;", "&amp;#0;"]),
)
fragments = st.one_of(
    st.text(max_size=20),
    char_refs,
    st.sampled_from(
        [
            "<",
            ">",
            "</",
            "<b>",
            "</b>",
            "<a href='",
            "<![CDATA[",
            "]]>",
            "<!--",
            "-->",
            "<!DOCTYPE x [<!ENTITY e 'boom'>]>",
            "&lt;a",
            "&lt;AI 기본법&gt;",
            "<script>",
            "<p>",
            "<br/>",
            "\x00",
            "\x01",
            "\ufffe",
            "삼성전자",
            "<title>",
            "</title>",
            "<item>",
            "</item>",
            "<link>",
            "</link>",
            "<description>",
            "</description>",
            "<pubDate>Tue, 09 Feb 2021 15:22:43 +25:00</pubDate>",
            "<guid>",
            "</guid>",
            "<entry>",
            "</entry>",
            '<title type="html">',
            '<title mode="base64">',
            "<media:title>",
            "<dc:title>",
            "<image>",
            "</image>",
        ]
    ),
)
markup = st.lists(fragments, max_size=60).map("".join)
huge = st.tuples(
    st.sampled_from(["&lt;a", "<b>", "x", "가", "&#0;", "<!--"]), st.integers(1, 30_000)
)


def rss(items: list[str]) -> str:
    return "<rss><channel><title>t</title>" + "".join(items) + "</channel></rss>"


def atom(items: list[str]) -> str:
    return '<feed xmlns="http://www.w3.org/2005/Atom">' + "".join(items) + "</feed>"


item = st.builds(
    lambda t, d, g: (
        f"<item><title>{t}</title><description>{d}</description><guid>{g}</guid></item>"
    ),
    markup,
    markup,
    markup,
)
entry = st.builds(
    lambda t, s: f"<entry><title type='html'>{t}</title><summary>{s}</summary></entry>",
    markup,
    markup,
)
documents = st.one_of(
    st.binary(max_size=2_000),
    markup.map(str.encode),
    st.lists(item, max_size=5).map(lambda xs: rss(xs).encode()),
    st.lists(entry, max_size=5).map(lambda xs: atom(xs).encode()),
    huge.map(lambda h: rss([f"<item><title>{h[0] * h[1]}</title></item>"]).encode()),
    st.tuples(st.lists(item, max_size=3), st.sampled_from(["euc-kr", "cp949", "latin-1"])).map(
        lambda x: ("<?xml version='1.0' encoding='utf-8'?>" + rss(x[0])).encode(x[1], "replace")
    ),
    st.tuples(markup, st.binary(max_size=200)).map(lambda x: rss([x[0]]).encode() + x[1]),
)


def assert_contract(body: bytes, content_type: str | None) -> None:
    try:
        parsed = parse_feed(body, content_type=content_type, fetched_at=NOW)
    except ParseError:
        return
    for it in parsed.items:
        assert len(it.title) <= TITLE_MAX + 1 and len(it.summary) <= SUMMARY_MAX + 1
        for text in (it.title, it.summary, it.url or "", it.guid or "", it.author or ""):
            assert not UNSTORABLE & set(text)
            text.encode("utf-8")
        assert it.published_at.utcoffset() is not None


@FUZZ
@given(documents, st.sampled_from([None, "text/xml; charset=utf-8", "text/xml; charset=euc-kr"]))
def test_any_body_gives_a_feed_or_a_parse_error(body: bytes, content_type: str | None) -> None:
    assert_contract(body, content_type)
