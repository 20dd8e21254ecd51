"""adapters.feed on real captured feeds (third-party data in ../shared, not in the repo)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.feed import ParsedFeed, _fast_path, _feedparser_path, _prepare, parse_feed
from tests import shared

SHARED = shared.SHARED
NEWS_RSS = SHARED / "fixtures" / "news_rss"

shared.require(NEWS_RSS)

FILES = sorted(p.name for p in NEWS_RSS.iterdir() if p.is_file())
NOW = datetime(2030, 1, 1, tzinfo=UTC)
HANGUL = re.compile(r"[\uac00-\ud7a3]")
# Korean text decoded with the wrong codec shows Latin-1 letters ("ÇÑ±Û", "í…Œ")
# or replacement characters.
MOJIBAKE = re.compile(r"[\u0080-\u00ff\ufffd]")


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def parse(name: str) -> ParsedFeed:
    return parse_feed((NEWS_RSS / name).read_bytes(), fetched_at=NOW)


def texts(parsed: ParsedFeed) -> list[str]:
    found = [parsed.title or ""]
    for item in parsed.items:
        found += [item.title, item.summary, item.author or ""]
    return [t for t in found if t]


# Files whose text is Korean: every Hangul-bearing string must be clean.
KOREAN = {
    "google_news_rss_ko_KR_query_bandoche_extracted.xml",
    "feedparser__encoding__euc-kr.xml",
    "feedparser__encoding__euc-kr-item.xml",
    "feedparser__illformed__chardet__euckr.xml",
    "miniflux__encoding__utf8-incorrect-prolog.xml",
}


@pytest.mark.parametrize("name", FILES)
def test_every_file_parses_to_clean_utc_items(name: str) -> None:
    parsed = parse(name)
    assert "malformed" not in parsed.warnings
    for item in parsed.items:
        assert item.published_at.utcoffset() == timedelta(0)
        assert item.date_estimated == (item.published_at == NOW)
        for text in (item.title, item.summary):
            assert "\ufffd" not in text
            assert "<" not in text or not re.search(r"</?[A-Za-z]", text)


@pytest.mark.parametrize("name", sorted(KOREAN & set(FILES)))
def test_korean_files_give_real_hangul(name: str) -> None:
    parsed = parse(name)
    korean = [t for t in texts(parsed) if HANGUL.search(t)]
    assert korean, "a Korean file must yield Hangul"
    for text in korean:
        assert not MOJIBAKE.search(text), text


@pytest.mark.parametrize("name", FILES)
def test_fast_path_matches_feedparser(name: str) -> None:
    data = _prepare((NEWS_RSS / name).read_bytes(), None).data
    fast = _fast_path(data, NOW)
    assert fast is not None
    assert fast == _feedparser_path(data, NOW)


# Values read from the files by hand: (file, item index, expected fields).
EXPECTED: list[tuple[str, int, dict[str, Any]]] = [
    (
        "google_news_rss_ko_KR_query_bandoche_extracted.xml",
        0,
        {
            "title": '박홍근 "호남 반도체, 기업 팔 비틀기 아냐…팹 증설도 구상" - 조선일보',
            "guid": None,
            # Escaped <a>/<font> markup and &nbsp; become plain text.
            "summary": '박홍근 "호남 반도체, 기업 팔 비틀기 아냐…팹 증설도 구상" 조선일보',
            "published_at": utc(2026, 9, 27, 2, 32),  # Sun, 27 Sep 2026 02:32:00 GMT
            "language": "ko",
        },
    ),
    (
        "google_news_rss_ko_KR_query_bandoche_extracted.xml",
        1,
        {"published_at": utc(2026, 9, 27, 5, 57, 51)},
    ),
    (
        "google_news_rss_ko_KR_query_bandoche_extracted.xml",
        2,
        {
            "title": "“800조 반도체 대박? 공장 짓고 사원 뽑아야 체감하죠” - gjdream.com",
            "published_at": utc(2026, 9, 27, 15, 10),
        },
    ),
    (
        "koreaherald_rss_2021-02-09_kstodon_extracted.xml",
        0,
        {
            "title": "Seegene found to have exaggerated revenue for 9 years",
            "url": "http://www.koreaherald.com/view.php?ud=20210209000915",
            "guid": "20210209000915",
            "author": "Lim Jeong-yeo",
            "published_at": utc(2021, 2, 9, 6, 22, 43),  # 15:22:43 +0900
            "language": "en",
        },
    ),
    (
        "yonhap_cn_RSS_news_2025-02-12_converted_Limour-Rss-Translation.xml",
        0,
        {
            "title": "韩国会问政会今启动 戒严和弹劾案审理将成焦点",
            "guid": "ACK20250212000500881",
            "url": "https://cn.yna.co.kr/view/ACK20250212000500881?section=news&input=rss",
            "published_at": utc(2025, 2, 12, 0, 32, 22),  # 09:32:22 +0900
            "language": None,  # Chinese, undeclared: no Hangul, no guess
        },
    ),
    (
        "yonhap_cn_RSS_news_2025-02-12_converted_Limour-Rss-Translation.xml",
        6,
        {"published_at": utc(2025, 2, 11, 15, 0, 3)},  # 00:00:03 +0900: previous UTC day
    ),
    (
        "feedparser__illformed__chardet__euckr.xml",
        0,
        {"title": "EUC-KR 에서 TypeKey 한글닉네임 표시하기", "language": "ko"},
    ),
    ("feedparser__encoding__euc-kr-item.xml", 0, {"summary": "년", "title": ""}),
    ("miniflux__encoding__utf8-incorrect-prolog.xml", 0, {"title": "Café"}),
]


@pytest.mark.parametrize(
    ("name", "index", "fields"), EXPECTED, ids=[f"{n[:30]}[{i}]" for n, i, _ in EXPECTED]
)
def test_known_values(name: str, index: int, fields: dict[str, Any]) -> None:
    if name not in FILES:
        pytest.skip(f"{name} not in the shared folder")
    item = parse(name).items[index]
    assert {key: getattr(item, key) for key in fields} == fields


@pytest.mark.parametrize(
    ("name", "count", "title", "warnings"),
    [
        ("google_news_rss_ko_KR_query_bandoche_extracted.xml", 3, '"반도체" - Google 뉴스', ()),
        ("koreaherald_rss_2021-02-09_kstodon_extracted.xml", 1, "The Korea Herald", ()),
        (
            "yonhap_cn_RSS_news_2025-02-12_converted_Limour-Rss-Translation.xml",
            20,
            "YonhapNews",
            (),
        ),
        ("feedparser__encoding__euc-kr.xml", 0, "년", ()),
        # Valid UTF-8 under a prolog claiming ISO-8859-1: UTF-8 wins, and we say so.
        (
            "miniflux__encoding__utf8-incorrect-prolog.xml",
            1,
            "테스트 피드",
            ("charset_mismatch", "date_missing"),
        ),
        (
            "feedparser__illformed__chardet__euckr.xml",
            1,
            None,
            ("charset_guessed", "date_missing"),
        ),
    ],
)
def test_feed_level(name: str, count: int, title: str | None, warnings: tuple[str, ...]) -> None:
    if name not in FILES:
        pytest.skip(f"{name} not in the shared folder")
    parsed = parse(name)
    assert (len(parsed.items), parsed.title, parsed.warnings) == (count, title, warnings)


def test_euckr_in_an_html_attribute() -> None:
    name = "feedparser__encoding__euc-kr-attribute.xml"
    if name not in FILES:
        pytest.skip(f"{name} not in the shared folder")
    # The only content is markup (<img alt="년" />): decoded right, then nothing
    # is left of it as plain text, so the item is dropped.
    prepared = _prepare((NEWS_RSS / name).read_bytes(), None)
    assert '&lt;img alt="년" />' in prepared.data.decode()
    assert parse(name).items == []
