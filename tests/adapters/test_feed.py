"""Tests of adapters.feed on the project's own fixtures (tests/fixtures/feeds/)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tracemalloc
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.errors import ParseError
from adapters.feed import (
    SUMMARY_MAX,
    TITLE_MAX,
    ParsedFeed,
    _fast_path,
    _feedparser_path,
    _norm_lang,
    _parse_date,
    _plain,
    _prepare,
    parse_feed,
)
from adapters.records import KST, RawItem
from tests.feeds import billion_laughs

FEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 10, 5, 3, 0, tzinfo=UTC)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, us, tzinfo=UTC)


def parse_file(name: str, content_type: str | None = None) -> ParsedFeed:
    return parse_feed((FEEDS / name).read_bytes(), content_type=content_type, fetched_at=NOW)


# --------------------------------------------------------------- fast path == feedparser

WELL_FORMED = [
    "rss2_ko.xml",
    "rss2_en.xml",
    "rss1_ko.rdf",
    "atom_en.xml",
    "atom_ko_nolang.xml",
    "yonhap_style_ko.xml",
    "google_style_ko.xml",
    "rss2_ko_euckr.xml",
    "rss2_ko_euckr_nodecl.xml",
    "rss2_ko_cp949_latin1_prolog.xml",
]


@pytest.mark.parametrize("name", WELL_FORMED)
def test_fast_path_and_feedparser_agree(name: str) -> None:
    data = _prepare((FEEDS / name).read_bytes(), None).data
    fast = _fast_path(data, NOW)
    slow = _feedparser_path(data, NOW)
    assert fast is not None, "a well-formed fixture must take the fast path"
    assert slow is not None
    assert fast.items, "fixture has items"
    assert fast.items == slow.items
    assert (fast.title, fast.language, fast.warnings) == (slow.title, slow.language, slow.warnings)


@pytest.mark.parametrize("name", WELL_FORMED)
def test_well_formed_feeds_take_the_fast_path(name: str) -> None:
    # parse_feed adds "malformed" only when lxml gave up and feedparser took over.
    assert "malformed" not in parse_file(name).warnings


# ------------------------------------------------------------------- field by field

# (fixture, item index, expected fields). Only the listed fields are compared.
EXPECTED: list[tuple[str, int, dict[str, Any]]] = [
    (
        "rss2_ko.xml",
        0,
        {
            "title": '정부, AI 반도체 "K-칩스" 지원 3조원 확대',
            "url": "https://news.example.kr/article/1001?from=rss&ref=main",
            "guid": "kmon-1001",
            # <script>/<style> contents dropped, &nbsp; decoded then collapsed.
            "summary": "과학기술정보통신부는 5일 인공지능 반도체 지원을 확대한다고 밝혔다.",
            "author": "김하늘 기자",
            "published_at": utc(2026, 10, 5, 0, 30),
            "date_estimated": False,
            "language": "ko",
        },
    ),
    (
        "rss2_ko.xml",
        1,
        {
            "title": "삼성전자 HBM 공급 계약 체결",  # escaped <b> inside a title
            "guid": "https://news.example.kr/article/1002",
            "summary": "반도체 수출이 석 달 연속 늘었다.",
            "author": "박민준",  # "reporter@example.kr (박민준)"
            "published_at": utc(2026, 10, 4, 23, 15),  # 08:15 KST
        },
    ),
    (
        "rss2_ko.xml",
        2,
        {
            "url": "https://news.example.kr/article/1003",  # permalink guid, no <link>
            # from content:encoded, the item having no description
            "summary": "외국인 순매수에 힘입어 코스피가 올랐다. 거래대금은 12조원.",
            "published_at": utc(2026, 10, 4, 23, 59, 59),
        },
    ),
    (
        "rss2_ko.xml",
        3,
        {"title": "똠방각하 신간, 한글날 맞아 출간", "published_at": NOW, "date_estimated": True},
    ),
    (
        "rss2_en.xml",
        0,
        {
            "summary": "The ministry said the rules take effect in January & apply to "
            "high-impact systems.",
            "published_at": utc(2026, 10, 5, 0, 0),  # naive ISO: Seoul wall-clock
            "language": "en",
        },
    ),
    ("rss2_en.xml", 1, {"published_at": utc(2026, 10, 5, 0, 0)}),  # RFC 822 without zone
    ("rss2_en.xml", 2, {"published_at": utc(2026, 10, 5, 0, 30)}),  # 17:30 PDT
    ("rss2_en.xml", 3, {"published_at": utc(2026, 10, 5, 1, 45)}),  # dc:date only
    ("rss2_en.xml", 4, {"published_at": NOW, "date_estimated": True}),  # garbled
    (
        "rss1_ko.rdf",
        0,
        {
            "title": "금융위, 가상자산 공시 기준 발표",
            "url": "https://blog.example.kr/p/1",
            "guid": "https://blog.example.kr/p/1",  # rdf:about
            "author": "이서연",
            "published_at": utc(2026, 10, 5, 5, 0),
            "language": "ko",
        },
    ),
    ("rss1_ko.rdf", 1, {"language": "en", "published_at": utc(2026, 10, 4, 6, 30)}),
    (
        "atom_en.xml",
        0,
        {
            "title": "KOSPI & KOSDAQ rise as chip stocks rally",
            "url": "https://wire.example.com/2026/10/05/kospi",  # rel=alternate, not enclosure
            "guid": "tag:wire.example.com,2026:kospi-1005",
            "summary": "Shares in Seoul rose 1.2%.",  # summary preferred over content
            "author": "Jane Park",
            "published_at": utc(2026, 10, 5, 0, 10),  # published preferred over updated
            "language": "en",
        },
    ),
    (
        "atom_en.xml",
        1,
        {
            "summary": "The won fell. Exporters cheered.",  # xhtml content
            "published_at": utc(2026, 10, 4, 22, 5),
        },
    ),
    (
        "atom_en.xml",
        2,
        {
            "url": "https://wire.example.com/ko/2026/10/04/won",  # the http(s) id
            "language": "ko",  # entry xml:lang beats the feed's
            "published_at": utc(2026, 10, 4, 22, 6, 0, 500000),
        },
    ),
    ("atom_ko_nolang.xml", 0, {"language": "ko", "author": "국회 뉴스팀"}),  # guessed
    ("atom_ko_nolang.xml", 1, {"language": None, "published_at": utc(2026, 10, 4, 15, 0)}),
    (
        "yonhap_style_ko.xml",
        0,
        {
            "title": '한국은행, 기준금리 동결…"물가 불확실성 여전"',
            "guid": "AKR20261005012300001",  # bare <id>
            "url": "https://wire.example.co.kr/view/AKR20261005012300001?input=rss",
            "published_at": utc(2026, 10, 5, 1, 15),  # 20261005101500 KST
            "language": "ko",
        },
    ),
    ("yonhap_style_ko.xml", 1, {"published_at": utc(2026, 10, 4, 15, 45)}),  # crosses midnight
    (
        "google_style_ko.xml",
        0,
        {
            "title": '정부 "AI 인재 10만 명 양성"…예산 2배로 - 가상일보',
            "guid": None,
            "summary": '정부 "AI 인재 10만 명 양성"…예산 2배로 가상일보',
            "published_at": utc(2026, 10, 5, 1, 20),
        },
    ),
    (
        "rss2_ko_euckr.xml",
        0,
        {
            "title": "똠방각하 서점, 지역 상생 협약 체결",  # 똠 exists only in cp949
            "summary": "중소기업청은 지역 서점과 상생 협약을 맺었다고 밝혔다.",
            "author": "편집국",
            "published_at": utc(2026, 10, 5, 7, 40),
        },
    ),
]


@pytest.mark.parametrize(
    ("name", "index", "fields"), EXPECTED, ids=[f"{n}[{i}]" for n, i, _ in EXPECTED]
)
def test_item_fields(name: str, index: int, fields: dict[str, Any]) -> None:
    item = parse_file(name).items[index]
    assert {key: getattr(item, key) for key in fields} == fields


@pytest.mark.parametrize(
    ("name", "count", "title", "language", "warnings"),
    [
        ("rss2_ko.xml", 4, "케이몬 경제 & 정책", "ko", ("date_missing",)),  # 5th item empty
        ("rss2_en.xml", 5, "Korea Policy Daily", "en", ("date_missing",)),
        ("rss1_ko.rdf", 2, "정책 브리핑 모음", "ko", ()),
        ("atom_en.xml", 3, "Seoul Markets Wire", "en", ()),
        ("atom_ko_nolang.xml", 2, "국회 입법 동향", "ko", ()),
        ("yonhap_style_ko.xml", 3, "가상 통신사 속보", "ko", ()),
        ("google_style_ko.xml", 2, '"인공지능 정책" - Google 뉴스', "ko", ()),
        ("rss2_ko_euckr.xml", 2, "지역경제 소식", "ko", ()),
        ("rss2_ko_euckr_nodecl.xml", 2, "지역경제 소식", "ko", ("charset_guessed",)),
        ("rss2_ko_cp949_latin1_prolog.xml", 2, "지역경제 소식", "ko", ("charset_mismatch",)),
        ("malformed_ko.xml", 2, "깨진 피드 & 테스트", "ko", ("malformed", "date_missing")),
    ],
)
def test_feed_level(
    name: str, count: int, title: str, language: str, warnings: tuple[str, ...]
) -> None:
    parsed = parse_file(name)
    assert len(parsed.items) == count
    assert (parsed.title, parsed.language, parsed.warnings) == (title, language, warnings)


def test_all_fixture_items_are_plain_nfc_and_utc() -> None:
    for path in sorted(FEEDS.iterdir()):
        for item in parse_feed(path.read_bytes(), fetched_at=NOW).items:
            for text in (item.title, item.summary):
                assert "<" not in text and "&nbsp;" not in text and "\ufffd" not in text
                assert text == " ".join(text.split())
                assert unicodedata.is_normalized("NFC", text)
            assert item.published_at.utcoffset() == timedelta(0), path.name


def test_malformed_feed_is_salvaged() -> None:
    parsed = parse_file("malformed_ko.xml")
    first = parsed.items[0]
    assert first.title == "반도체 수출 10% 증가 전망"  # undefined &nbsp; entity survived
    assert first.url == "https://broken.example.kr/a/1"
    assert first.published_at == utc(2026, 10, 5, 0, 0)
    assert parsed.items[1].title == "두 번째 기사"


def test_control_characters_do_not_break_the_fast_path() -> None:
    # CMS exports leak characters XML 1.0 forbids; lxml would reject the document.
    body = "<rss><channel><item><title>반도체\x0b 수출\x1f 증가\x00</title></item></channel></rss>"
    parsed = parse_feed(body.encode(), fetched_at=NOW)
    assert [i.title for i in parsed.items] == ["반도체 수출 증가"]
    assert "malformed" not in parsed.warnings


def test_items_without_any_content_are_dropped() -> None:
    body = (
        b"<rss><channel><title>t</title>"
        b"<item><title> </title><description>&lt;img src='x.jpg'&gt;</description></item>"
        b"<item><guid>only-a-guid</guid></item>"
        b"</channel></rss>"
    )
    parsed = parse_feed(body, fetched_at=NOW)
    assert [(i.title, i.guid, i.url) for i in parsed.items] == [("", "only-a-guid", None)]


def test_date_missing_is_reported_once_per_feed() -> None:
    items = "".join(f"<item><title>기사 {i}</title></item>" for i in range(3))
    parsed = parse_feed(f"<rss><channel>{items}</channel></rss>".encode(), fetched_at=NOW)
    assert parsed.warnings == ("date_missing",)
    assert all(i.date_estimated and i.published_at == NOW for i in parsed.items)


def test_fetched_at_is_returned_in_utc() -> None:
    seoul = NOW.astimezone(KST)
    parsed = parse_feed(
        b"<rss><channel><item><title>x</title></item></channel></rss>", fetched_at=seoul
    )
    assert parsed.items[0].published_at == NOW
    assert parsed.items[0].published_at.tzinfo is UTC


def test_naive_fetched_at_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_feed(b"<rss/>", fetched_at=datetime(2026, 10, 5))


# ------------------------------------------------------------------------ charsets

KO_RSS = (
    "<rss version='2.0'><channel><title>한글 제목 똠</title>"
    "<item><title>반도체 수출 증가</title></item></channel></rss>"
)
EUCKR_DECL = "<?xml version='1.0' encoding='euc-kr'?>"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(KO_RSS.encode("cp949"), "application/rss+xml; charset=EUC-KR", id="header"),
        pytest.param(KO_RSS.encode("cp949"), "text/xml; charset=ks_c_5601-1987", id="ks_c"),
        pytest.param(KO_RSS.encode("cp949"), 'text/xml; charset="x-windows-949"', id="x-win-949"),
        pytest.param((EUCKR_DECL + KO_RSS).encode("cp949"), None, id="prolog"),
        pytest.param(KO_RSS.encode("cp949"), None, id="sniffed"),
        pytest.param(KO_RSS.encode("cp949"), "text/xml; charset=iso-8859-1", id="wrong-header"),
        pytest.param((EUCKR_DECL + KO_RSS).encode(), None, id="utf8-under-euckr-prolog"),
        pytest.param(KO_RSS.encode(), "text/xml; charset=euc-kr", id="utf8-under-euckr-header"),
        pytest.param(
            ("<?xml version='1.0' encoding='ISO-8859-1'?>" + KO_RSS).encode(),
            None,
            id="utf8-under-latin1-prolog",
        ),
        pytest.param(b"\xef\xbb\xbf" + KO_RSS.encode(), None, id="utf8-bom"),
        pytest.param(b"\xff\xfe" + KO_RSS.encode("utf-16-le"), None, id="utf16le-bom"),
        pytest.param(b"\xfe\xff" + KO_RSS.encode("utf-16-be"), None, id="utf16be-bom"),
        pytest.param(KO_RSS.encode("utf-16-le"), None, id="utf16le-no-bom"),
        pytest.param(
            ("<?xml version='1.0' encoding='utf8'?>\n" + KO_RSS).encode(), None, id="yonhap-utf8"
        ),
        pytest.param(
            ("\n  <?xml version='1.0' encoding='UTF-8'?>" + KO_RSS).encode(),
            None,
            id="space-before-prolog",
        ),
    ],
)
def test_charsets_give_correct_hangul(body: bytes, content_type: str | None) -> None:
    parsed = parse_feed(body, content_type=content_type, fetched_at=NOW)
    assert parsed.title == "한글 제목 똠"
    assert [i.title for i in parsed.items] == ["반도체 수출 증가"]
    assert "malformed" not in parsed.warnings


# ---------------------------------------------------------------------- not a feed


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"  \r\n\t ", id="blank"),
        pytest.param(b'{"items": [{"title": "x"}]}', id="json"),
        pytest.param(b"[1, 2, 3]", id="json-array"),
        pytest.param(b"Service Unavailable", id="text"),
        pytest.param(
            b"<!DOCTYPE html>\n<html><head><title>Error</title></head><body>x</body></html>",
            id="html",
        ),
        pytest.param(
            b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body/></html>',
            id="xhtml",
        ),
        pytest.param(b"<!-- <rss> --><HTML><BODY>down</BODY></HTML>", id="html-after-comment"),
        pytest.param(b"<?xml version='1.0'?><config><a>1</a></config>", id="other-xml"),
    ],
)
def test_not_a_feed(body: bytes) -> None:
    with pytest.raises(ParseError) as err:
        parse_feed(body, fetched_at=NOW)
    assert err.value.key == "not_a_feed"


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><rss version="2.0"><channel><ite',
        b"<feed xmlns='http://www.w3.org/2005/Atom'><entry><",
    ],
)
def test_broken_feed_with_nothing_to_salvage(body: bytes) -> None:
    with pytest.raises(ParseError) as err:
        parse_feed(body, fetched_at=NOW)
    assert err.value.key == "parse"


# ---------------------------------------------------------------------- security


def _xxe(secret: Path) -> bytes:
    return (
        '<?xml version="1.0"?>'
        f'<!DOCTYPE rss [<!ENTITY s SYSTEM "file://{secret}">'
        '<!ENTITY pw SYSTEM "file:///etc/passwd">'
        f'<!ENTITY % p SYSTEM "file://{secret}"> %p;]>'
        '<rss version="2.0"><channel><title>t</title>'
        "<item><title>a &s; &pw; b</title><description>&s;</description>"
        "<link>http://x.example/1</link></item></channel></rss>"
    ).encode()


def _peak(fn: Any) -> tuple[Any, int]:
    """Result and tracemalloc peak (bytes): Python's allocations only, not libxml2's."""
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


# The growth of the resident set's high-water mark counts libxml2's allocations too,
# which tracemalloc does not see. It is read in a fresh interpreter, as VmHWM: in this
# process any earlier test that raised the mark would hide the growth, and a child's
# ru_maxrss starts at its parent's (Linux keeps it across fork and exec), while VmHWM
# belongs to the new address space. The child warms up (imports, one small parse each
# way), reads the mark, runs the statement and reads it again.
_RSS_CHILD = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from adapters.feed import _fast_path, parse_feed
def hwm_kib():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise SystemExit("no VmHWM")
NOW = datetime(2026, 10, 5, 3, 0, tzinfo=UTC)
data = Path(sys.argv[1]).read_bytes()
warm = b"<rss><channel><title>w</title><item><title>a</title></item></channel></rss>"
parse_feed(warm, fetched_at=NOW)
_fast_path(warm, NOW)
before = hwm_kib()
try:
    kept = {statement}
except Exception:  # lxml refusing the document is fine too
    kept = None
print(hwm_kib() - before)
"""


def _rss_growth_kib(tmp_path: Path, statement: str, data: bytes) -> int:
    """Growth of a fresh process's RSS high-water (KiB) while `statement` runs on data."""
    body = tmp_path / "body.xml"
    body.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD.format(statement=statement), str(body)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout)


def test_rss_growth_is_seen_in_a_fresh_process(tmp_path: Path) -> None:
    # The probe itself: 64 MiB written in the child shows, a small parse does not.
    assert _rss_growth_kib(tmp_path, 'b"x" * (64 * 1024 * 1024)', b"") > 60 * 1024
    small = b"<rss><channel><title>t</title></channel></rss>"
    assert _rss_growth_kib(tmp_path, "parse_feed(data, fetched_at=NOW)", small) < 20 * 1024


def _texts(parsed: ParsedFeed | None) -> str:
    assert parsed is not None
    return " ".join(f"{i.title} {i.summary}" for i in parsed.items)


def test_billion_laughs_is_cheap(tmp_path: Path) -> None:
    parse_feed(b"<rss><channel><title>warm</title></channel></rss>", fetched_at=NOW)  # imports
    parsed, peak = _peak(lambda: parse_feed(billion_laughs(), fetched_at=NOW))
    assert peak < 3 * 1024 * 1024
    assert (
        _rss_growth_kib(tmp_path, "parse_feed(data, fetched_at=NOW)", billion_laughs()) < 20 * 1024
    )
    assert "dtd_removed" in parsed.warnings
    assert len(_texts(parsed)) < 1000
    assert "lollol" not in _texts(parsed)


def test_billion_laughs_fast_path_alone_is_bounded(tmp_path: Path) -> None:
    # Second lock: even with the DOCTYPE left in, lxml must not expand the entities.
    data = billion_laughs().replace(b'<?xml version="1.0"?>', b"")

    def run() -> str:
        try:
            return _texts(_fast_path(data, NOW))
        except Exception as exc:  # lxml refusing the document is fine too
            return type(exc).__name__

    text, peak = _peak(run)
    assert peak < 3 * 1024 * 1024
    assert _rss_growth_kib(tmp_path, "_fast_path(data, NOW)", data) < 20 * 1024
    assert "lollol" not in text


def test_xxe_leaks_no_file_content(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("KMON-SECRET-MARKER root:x:0:0")
    body = _xxe(secret)
    parsed = parse_feed(body, fetched_at=NOW)
    assert "dtd_removed" in parsed.warnings
    assert parsed.items[0].url == "http://x.example/1"
    data = body.replace(b'<?xml version="1.0"?>', b"")  # DOCTYPE kept: the second lock
    for result in (parsed, _fast_path(data, NOW), _feedparser_path(body, NOW)):
        text = _texts(result)
        assert "KMON-SECRET-MARKER" not in text
        assert "root:" not in text


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io")
@pytest.mark.parametrize(
    "path", ["parse_feed", "fast_path_with_doctype", "feedparser_with_doctype"]
)
def test_external_entities_are_never_read(tmp_path: Path, path: str) -> None:
    # A file that is valid DTD text and 8 MB long: reading it would show in the
    # process's byte counter, whether or not its content reaches the output.
    big = tmp_path / "big.dtd"
    big.write_text("<!-- " + "x" * (8 * 1024 * 1024) + " -->")
    body = _xxe(big)
    run: Callable[[], object] = {
        "parse_feed": lambda: parse_feed(body, fetched_at=NOW),
        "fast_path_with_doctype": lambda: _fast_path(
            body.replace(b'<?xml version="1.0"?>', b""), NOW
        ),
        "feedparser_with_doctype": lambda: _feedparser_path(body, NOW),
    }[path]
    run()  # warm-up: lazy imports read files too
    before = _bytes_read()
    run()
    assert _bytes_read() - before < 1024 * 1024


# ---------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Sun, 27 Sep 2026 02:32:00 GMT", utc(2026, 9, 27, 2, 32)),
        ("Tue, 09 Feb 2021 15:22:43 +0900", utc(2021, 2, 9, 6, 22, 43)),
        ("Tue, 09 Feb 2021 15:22:43 +09:00", utc(2021, 2, 9, 6, 22, 43)),
        ("Tue, 09 Feb 2021 15:22:43 KST", utc(2021, 2, 9, 6, 22, 43)),
        ("09 Feb 2021 15:22 kst", utc(2021, 2, 9, 6, 22)),
        ("Tue, 9 Feb 21 15:22:43 -0500", utc(2021, 2, 9, 20, 22, 43)),
        ("Tue, 09 Feb 2021 15:22:43 EST", utc(2021, 2, 9, 20, 22, 43)),
        ("Tue, 09 Feb 2021 15:22:43 UT", utc(2021, 2, 9, 15, 22, 43)),
        ("Tue, 09 Feb 2021 15:22:43", utc(2021, 2, 9, 6, 22, 43)),  # no zone: KST
        ("Tuesday, 09 February 2021 15:22:43 +0900", utc(2021, 2, 9, 6, 22, 43)),
        ("2021-02-09T15:22:43+09:00", utc(2021, 2, 9, 6, 22, 43)),
        ("2021-02-09T06:22:43Z", utc(2021, 2, 9, 6, 22, 43)),
        ("2021-02-09T06:22:43.250z", utc(2021, 2, 9, 6, 22, 43, 250000)),
        ("2021-02-09 15:22:43", utc(2021, 2, 9, 6, 22, 43)),
        ("2021-02-09", utc(2021, 2, 8, 15, 0)),
        ("20250212093222", utc(2025, 2, 12, 0, 32, 22)),  # Yonhap compact, KST
        ("20250212000003", utc(2025, 2, 11, 15, 0, 3)),
        ("202502120932", utc(2025, 2, 12, 0, 32)),
        ("  20250212  ", utc(2025, 2, 11, 15, 0)),
        ("2025.02.12 09:32", utc(2025, 2, 12, 0, 32)),  # dateutil fallback
        ("Wed Feb 12 09:32:22 KST 2025", utc(2025, 2, 12, 0, 32, 22)),
        # GMT+9 is UTC+9, the way people and JavaScript write it, not POSIX's UTC-9.
        ("2025-02-12T09:32:22 GMT+9", utc(2025, 2, 12, 0, 32, 22)),
        ("2025-02-12 09:32:22 UTC+09:00", utc(2025, 2, 12, 0, 32, 22)),
        ("Tue, 09 Feb 2021 15:22:43 GMT+0900", utc(2021, 2, 9, 6, 22, 43)),
        ("Tue, 09 Feb 2021 15:22:43 GMT-5", utc(2021, 2, 9, 20, 22, 43)),
        ("Wed Feb 12 2025 09:32:22 GMT+0900 (한국 표준시)", utc(2025, 2, 12, 0, 32, 22)),
        ("Tue, 09 Feb 2021 15:22:43 GMT+25", None),
        ("2025-02-12T09:32:22 EST+5", None),  # a POSIX TZ string: which way is unknown
        ("Tue, 09 Feb 2021 15:22:43 KST-9", None),
        ("", None),
        ("   ", None),
        (None, None),
        ("sometime next week", None),
        ("Tuesday", None),
        ("20251345000000", None),
        ("Tue, 31 Feb 2021 15:22:43 +0900", None),
        ("0001-01-01T00:00:00Z", None),
        ("Tue, 09 Feb 2021 15:22:43 +2500", None),  # offsets of a day or more
        ("Tue, 09 Feb 2021 15:22:43 +25:00", None),
        ("2021-02-09T15:22:43+25:00", None),
        ("2021-02-09T15:22:43-24:00", None),
        ("2021-02-09 15:22:43 +2400", None),
        ("Tue, 09 Feb 2021 15:22:43 +2359", None),  # no zone is that far from UTC
        ("Tue, 09 Feb 2021 15:22:43 +1400", utc(2021, 2, 9, 1, 22, 43)),
        ("Tue, 09 Feb 0021 15:22:43 +0900", None),  # the year 21, not 2021
        ("Tue, 09 Feb 0000 15:22:43 +0900", None),
        ("Tue, 09 Feb 0099 15:22:43 GMT", None),
    ],
)
def test_parse_date(raw: str | None, expected: datetime | None) -> None:
    got = _parse_date(raw)
    assert got == expected
    if got is not None:
        assert got.tzinfo is UTC


# ---------------------------------------------------------------------- text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  삼성전자\n\t반도체  ", "삼성전자 반도체"),
        ("<b>삼성</b>이 <i>발표</i>", "삼성이 발표"),  # inline tags join, particles stay attached
        ("<p>첫 문단</p><p>둘째 문단</p>", "첫 문단 둘째 문단"),
        ("줄<br>바꿈<br/>끝", "줄 바꿈 끝"),
        ("a &amp; b &lt;c&gt; &quot;d&quot; &#54620;&#xAE00;", 'a & b <c> "d" 한글'),
        ("x&nbsp;&nbsp;y", "x y"),
        (
            '&lt;a href="u"&gt;링크&lt;/a&gt;&amp;nbsp;&lt;font&gt;언론사&lt;/font&gt;',
            "링크 언론사",
        ),
        ("<script>var x = '<b>';</script>본문<style>b{}</style>", "본문"),
        ("<!-- 광고 -->본문", "본문"),
        ("3 < 5 and 7 > 2", "3 < 5 and 7 > 2"),
        ("AT&T", "AT&T"),
        ("\u1112\u1161\u11ab\u1100\u1173\u11af", "한글"),  # NFD jamo -> NFC syllables
        ("Cafe\u0301", "Café"),
        ("전각\u3000공백", "전각 공백"),
        ("", ""),
        (None, ""),
    ],
)
def test_plain(raw: str | None, expected: str) -> None:
    assert _plain(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ko", "ko"),
        ("ko-KR", "ko"),
        ("KO_kr", "ko"),
        (" en-us ", "en"),
        ("kor", "ko"),
        ("zh-Hans-CN", "zh"),
        ("", None),
        (None, None),
        ("x", None),
        ("한국어", None),
        ("english", None),
    ],
)
def test_norm_lang(raw: str | None, expected: str | None) -> None:
    assert _norm_lang(raw) == expected


def test_language_is_guessed_from_hangul_only() -> None:
    body = (
        "<rss><channel>"
        "<item><title>금리 동결</title></item>"
        "<item><title>Rates on hold</title></item>"
        "<item><title>利率不变</title></item>"
        "</channel></rss>"
    ).encode()
    assert [i.language for i in parse_feed(body, fetched_at=NOW).items] == ["ko", None, None]


def test_raw_item_type() -> None:
    assert all(isinstance(i, RawItem) for i in parse_file("rss2_ko.xml").items)


# ------------------------------------------------------------- hostile input


def rss_item(title: str = "", description: str = "") -> bytes:
    return (
        f"<rss><channel><item><title>{title}</title><description>{description}</description>"
        "<guid>g</guid></item></channel></rss>"
    ).encode()


@pytest.mark.parametrize(
    "field",
    [
        "&lt;a" + "b" * 60_000,  # no ">": the tag pattern once backtracked quadratically
        "&lt;a x=1" + " y" * 30_000,
        "&lt;script&gt;" * 6_000,  # unclosed sections, each once searched to the end
        "&lt;!--" * 12_000,
        "&lt;a href=&quot;" * 6_000,
        "&lt;p" * 20_000,
        "&lt;!DOCTYPE x" * 6_000,
        "<![CDATA[" + "<!DOCTYPE " * 6_000 + "]]>",
    ],
)
def test_hostile_markup_parses_in_linear_time(field: str) -> None:
    started = time.perf_counter()
    parse_feed(rss_item(field, field), fetched_at=NOW)
    assert time.perf_counter() - started < 0.5


def test_long_fields_are_capped_and_flagged() -> None:
    parsed = parse_feed(rss_item("제목 " * 2_000, "본문 " * 20_000), fetched_at=NOW)
    item = parsed.items[0]
    assert len(item.title) <= TITLE_MAX + 1 and item.title.endswith("…")
    assert len(item.summary) <= SUMMARY_MAX + 1 and item.summary.startswith("본문 본문")
    assert "field_truncated" in parsed.warnings
    assert "field_truncated" not in parse_feed(rss_item("짧은 제목"), fetched_at=NOW).warnings


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("정부 &lt;AI 기본법 시행령&gt; 입법예고", "정부 <AI 기본법 시행령> 입법예고"),
        ("<![CDATA[정부 <AI 기본법 시행령> 입법예고]]>", "정부 <AI 기본법 시행령> 입법예고"),
        ("네이버 &lt;HyperCLOVA X&gt; 공개", "네이버 <HyperCLOVA X> 공개"),
        ("<![CDATA[SK <AI 데이터센터> 착공]]>", "SK <AI 데이터센터> 착공"),
        ("영화 &lt;A 프로젝트&gt; 개봉", "영화 <A 프로젝트> 개봉"),
        ("History of the &lt;blink&gt; tag", "History of the <blink> tag"),
        ("History of the &amp;lt;blink&amp;gt; tag", "History of the <blink> tag"),
        ("삼성전자 &lt;b&gt;HBM&lt;/b&gt; 공급", "삼성전자 HBM 공급"),  # real HTML goes
        ("<![CDATA[<a href='u'>링크</a><o:p></o:p>]]>", "링크"),
        ("a &lt; b &gt; c", "a < b > c"),
    ],
)
def test_text_that_looks_like_a_tag_is_text(title: str, expected: str) -> None:
    assert parse_feed(rss_item(title), fetched_at=NOW).items[0].title == expected


def atom_entry(title: str) -> bytes:
    return f'<feed xmlns="http://www.w3.org/2005/Atom"><entry>{title}<id>g</id></entry></feed>'.encode()


@pytest.mark.parametrize(
    ("element", "expected"),
    [
        ("<title>History of the &lt;b&gt; tag</title>", "History of the <b> tag"),  # text
        ('<title type="text">a &lt;br&gt; b</title>', "a <br> b"),
        (
            '<title type="html">History of the &amp;lt;b&amp;gt; tag</title>',
            "History of the <b> tag",
        ),
        ('<title type="html">&lt;b&gt;굵게&lt;/b&gt;</title>', "굵게"),
        (
            '<title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">History of the'
            " &lt;blink&gt; tag</div></title>",
            "History of the <blink> tag",
        ),
    ],
)
def test_atom_text_constructs_follow_their_type(element: str, expected: str) -> None:
    body = atom_entry(element)
    assert parse_feed(body, fetched_at=NOW).items[0].title == expected
    slow = _feedparser_path(_prepare(body, None).data, NOW)
    assert slow is not None and slow.items[0].title == expected


UNSTORABLE = {"\x00", "\ufffe", "\uffff"} | {chr(c) for c in range(0xD800, 0xE000)}


@pytest.mark.parametrize(
    "ref",
    [
        "&#xD800;",  # a lone surrogate: UnicodeEncodeError
        "&#x110000;",  # past Unicode: ValueError
        "&#99999999999;",  # OverflowError
        "&#" + "9" * 5000 + ";",  # past int()'s digit limit
        "&#0;",
        "&#x1;",
        "&#xFFFE;",
        "&#xFFFF;",
        "&amp;#0;",  # escaped twice: only unescaping makes it a NUL
        "&amp;#xD800;",
        "\x00",
    ],
)
def test_bad_character_reference_loses_no_item(ref: str) -> None:
    body = (
        f"<rss><channel><item><title>앞{ref}뒤</title><guid>g{ref}1</guid>"
        f"<description>본문{ref}</description></item>"
        "<item><title>이웃 기사</title><guid>g2</guid></item></channel></rss>"
    ).encode("utf-8", errors="surrogatepass")
    items = parse_feed(body, fetched_at=NOW).items
    assert [i.title for i in items][1:] == ["이웃 기사"]
    assert items[0].title.startswith("앞") and items[0].title.endswith("뒤")
    for item in items:
        for text in (item.title, item.summary, item.guid or "", item.url or ""):
            assert not UNSTORABLE & set(text)
            text.encode("utf-8")


def test_feedparser_tripping_over_a_mangled_link_loses_no_item() -> None:
    # Broken XML goes to feedparser, which raised IndexError on this <link>.
    body = (
        b"<rss><channel><item><title>ok</title></item>"
        b"<item><title>t</title><image><link></image>http://x</link></item></channel></rss>"
    )
    parsed = parse_feed(body, fetched_at=NOW)
    assert [i.title for i in parsed.items][:1] == ["ok"]
    assert "malformed" in parsed.warnings


@pytest.mark.parametrize(
    "date",
    [
        "Tue, 09 Feb 2199 15:22:43 +0900",
        "2031-01-01T00:00:00Z",
        "Tue, 09 Feb 2021 15:22:43 +25:00",
        "Tue, 09 Feb 0021 15:22:43 +0900",
    ],
)
def test_implausible_dates_are_estimated_and_the_feed_kept(date: str) -> None:
    body = (
        f"<rss><channel><item><title>a</title><pubDate>{date}</pubDate></item>"
        "<item><title>b</title><pubDate>Mon, 05 Oct 2026 08:15:00 KST</pubDate></item>"
        "</channel></rss>"
    ).encode()
    first, second = parse_feed(body, fetched_at=NOW).items
    assert (first.published_at, first.date_estimated) == (NOW, True)
    assert (second.published_at, second.date_estimated) == (utc(2026, 10, 4, 23, 15), False)


def test_a_date_just_ahead_of_the_fetch_is_kept() -> None:
    body = (
        b"<rss><channel><item><title>a</title>"
        b"<pubDate>2026-10-06T00:00:00Z</pubDate></item></channel></rss>"
    )
    parsed = parse_feed(body, fetched_at=NOW)
    assert parsed.items[0].published_at == utc(2026, 10, 6)
    assert "date_implausible" not in parsed.warnings
    late = parse_feed(body.replace(b"2026-10-06", b"2026-10-08"), fetched_at=NOW)
    assert late.items[0].date_estimated and "date_implausible" in late.warnings


def test_a_doctype_split_by_a_control_character_declares_no_entity() -> None:
    body = (
        b'<!DOC\x01TYPE rss [<!ENTITY e "ENTITY-TEXT">]>'
        b"<rss><channel><item><title>a&e;b</title></item></channel></rss>"
    )
    parsed = parse_feed(body, fetched_at=NOW)
    assert "ENTITY-TEXT" not in "".join(i.title for i in parsed.items)
    assert "dtd_removed" in parsed.warnings


DC = 'xmlns:dc="http://purl.org/dc/elements/1.1/"'
MEDIA = 'xmlns:media="http://search.yahoo.com/mrss/"'


@pytest.mark.parametrize(
    ("item", "title", "summary"),
    [
        ("<description>제목 없는 기사 본문</description>", "", "제목 없는 기사 본문"),
        ("<description><![CDATA[ <!DOCTYPE ]]></description>", "", "<!DOCTYPE"),
        (
            "<description><![CDATA[<!DOCTYPE html><p>본문</p>]]></description>",
            "",
            "본문",
        ),
        ("<dc:title>더블린 코어 제목</dc:title><guid>g</guid>", "더블린 코어 제목", ""),
        ("<title></title><dc:title>빈 제목 대신</dc:title>", "빈 제목 대신", ""),
        ("<title>본 제목</title><dc:title>다른 제목</dc:title>", "본 제목", ""),
        ("<media:title>미디어 제목</media:title><guid>g</guid>", "미디어 제목", ""),
        (
            '<media:content url="u"><media:title>영상 제목</media:title></media:content>',
            "영상 제목",
            "",
        ),
        (
            "<media:group><media:content url='u'/><media:title>묶음 제목</media:title>"
            "</media:group>",
            "묶음 제목",
            "",
        ),
        ("<guid>g</guid><dc:description>DC 요약</dc:description>", "", "DC 요약"),
    ],
)
def test_items_without_a_title_are_kept_and_titled_from_alternatives(
    item: str, title: str, summary: str
) -> None:
    body = f"<rss {DC} {MEDIA}><channel><item>{item}</item></channel></rss>".encode()
    parsed = parse_feed(body, fetched_at=NOW)
    assert [(i.title, i.summary) for i in parsed.items] == [(title, summary)]
    assert "malformed" not in parsed.warnings
    slow = _feedparser_path(_prepare(body, None).data, NOW)
    assert slow is not None and [(i.title, i.summary) for i in slow.items] == [(title, summary)]


def test_atom03_base64_title_is_decoded() -> None:
    body = (
        b'<feed version="0.3" xmlns="http://purl.org/atom/ns#"><entry>'
        b'<title mode="base64">PHA+SGlzdG9yeSBvZiB0aGUgJmx0O2JsaW5rJmd0OyB0YWc8L3A+</title>'
        b'<summary mode="base64">7ZWc6riA</summary><id>g</id></entry></feed>'
    )
    item = parse_feed(body, fetched_at=NOW).items[0]
    assert (item.title, item.summary) == ("History of the <blink> tag", "한글")
