"""adapters.dart: statuses, list entries and the corp-code file, as tables."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, date, datetime

import pytest

from adapters.dart import (
    Disclosure,
    check_status,
    parse_corp_codes,
    parse_list,
    seconds_to_next_kst_day,
)
from adapters.errors import AuthError, ParseError, TransientError

NOW = datetime(2025, 6, 18, 1, 0, tzinfo=UTC)  # 10:00 KST


def entry(**fields: str) -> dict[str, str]:
    row = {
        "corp_code": "00266961",
        "corp_name": "NAVER",
        "stock_code": "035420",
        "corp_cls": "Y",
        "report_nm": "단일판매ㆍ공급계약체결",
        "rcept_no": "20250618000123",
        "flr_nm": "NAVER",
        "rcept_dt": "20250618",
        "rm": "유",
    }
    return row | fields


@pytest.mark.parametrize(
    ("status", "error", "key"),
    [
        ("010", AuthError, "dart_010"),
        ("011", AuthError, "dart_011"),
        ("012", AuthError, "dart_012"),
        ("901", AuthError, "dart_901"),
        ("020", TransientError, "dart_020"),
        ("800", TransientError, "dart_800"),
        ("014", ParseError, "dart_014"),
        ("100", ParseError, "dart_100"),
        ("900", ParseError, "dart_900"),
    ],
)
def test_failed_statuses(status: str, error: type[Exception], key: str) -> None:
    with pytest.raises(error) as caught:
        check_status({"status": status, "message": "메시지"}, NOW)
    assert getattr(caught.value, "key", None) == key
    assert "메시지" in str(caught.value)


def test_020_retries_at_the_next_kst_midnight() -> None:
    with pytest.raises(TransientError) as caught:
        check_status({"status": "020", "message": "요청 제한을 초과하였습니다."}, NOW)
    assert caught.value.retry_after == 14 * 3600


@pytest.mark.parametrize(
    ("now", "seconds"),
    [
        (datetime(2025, 6, 18, 14, 59, 59, tzinfo=UTC), 1.0),  # 23:59:59 KST
        (datetime(2025, 6, 18, 15, 0, tzinfo=UTC), 86400.0),  # 00:00 KST
        (datetime(2025, 6, 18, 1, 0, tzinfo=UTC), 14 * 3600.0),
    ],
)
def test_seconds_to_next_kst_day(now: datetime, seconds: float) -> None:
    assert seconds_to_next_kst_day(now) == seconds


def test_013_is_an_empty_answer() -> None:
    assert parse_list({"status": "013", "message": "조회된 데이타가 없습니다."}, NOW) == ([], 0)


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"message": "정상"},
        {"status": 0},
        {"status": "000"},
        {"status": "000", "list": {}},
        {"status": "000", "list": ["x"]},
        {"status": "000", "list": [entry(rcept_no="2025061800012")]},
        {"status": "000", "list": [entry(rcept_dt="2025-06-18")]},
    ],
)
def test_malformed_answers_are_parse_errors(doc: object) -> None:
    with pytest.raises(ParseError):
        parse_list(doc, NOW)


@pytest.mark.parametrize(
    ("report_nm", "trimmed", "correction"),
    [
        ("단일판매ㆍ공급계약체결      ", "단일판매ㆍ공급계약체결", False),
        ("[기재정정]유상증자결정", "[기재정정]유상증자결정", True),
        (
            "[첨부정정]주요사항보고서(자기주식취득결정)",
            "[첨부정정]주요사항보고서(자기주식취득결정)",
            True,
        ),
        ("[발행조건확정]증권신고서(채무증권)", "[발행조건확정]증권신고서(채무증권)", True),
        ("기업설명회(IR)개최", "기업설명회(IR)개최", False),
        ("영업(잠정)실적(공정공시)  \t", "영업(잠정)실적(공정공시)", False),
    ],
)
def test_report_names(report_nm: str, trimmed: str, correction: bool) -> None:
    [filing], pages = parse_list(
        {"status": "000", "total_page": 1, "list": [entry(report_nm=report_nm)]}, NOW
    )
    assert (filing.report_nm, filing.correction, pages) == (trimmed, correction, 1)


def test_an_entry_maps_to_a_disclosure() -> None:
    [filing], _ = parse_list({"status": "000", "list": [entry(stock_code=" ")]}, NOW)
    assert filing == Disclosure(
        rcept_no="20250618000123",
        corp_code="00266961",
        corp_name="NAVER",
        stock_code=None,
        corp_cls="Y",
        report_nm="단일판매ㆍ공급계약체결",
        flr_nm="NAVER",
        rcept_dt=date(2025, 6, 18),
        flags="유",
    )
    assert filing.url == "https://dart.fss.or.kr/dsaf001/main.do?rcpNo=20250618000123"


def corp_zip(xml: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("CORPCODE.xml", xml.encode("utf-8"))
    return buffer.getvalue()


def test_the_corp_code_file_gives_the_wanted_companies() -> None:
    body = corp_zip(
        "<result>"
        "<list><corp_code>00266961</corp_code><corp_name>NAVER</corp_name>"
        "<stock_code>035420</stock_code></list>"
        "<list><corp_code>00258801</corp_code><corp_name>카카오</corp_name>"
        "<stock_code>035720</stock_code></list>"
        "<list><corp_code>00434003</corp_code><corp_name>다코</corp_name>"
        "<stock_code> </stock_code></list>"
        "</result>"
    )
    corps = parse_corp_codes(body, ["035420", "999990"], NOW)
    assert {s: (c.corp_code, c.corp_name) for s, c in corps.items()} == {
        "035420": ("00266961", "NAVER")
    }


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"status":"010","message":"unregistered key"}', AuthError),
        (b"<result><status>020</status><message>limit</message></result>", TransientError),
        (b"PK\x03\x04 not really a zip", ParseError),
        (b"<result><unclosed>", ParseError),
    ],
)
def test_the_corp_code_file_failing(body: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_corp_codes(body, ["035420"], NOW)
