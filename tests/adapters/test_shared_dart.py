"""adapters.dart on real OpenDART answers (third-party data in ../shared, not in the
repo). Every expectation below was read off the samples by hand."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from adapters.dart import check_status, parse_list
from adapters.errors import ParseError
from tests import shared

DART_DIR = shared.SHARED / "fixtures" / "dart"

shared.require(DART_DIR)

NOW = datetime(2024, 11, 1, 1, 0, tzinfo=UTC)


def sample(name: str) -> Any:
    return json.loads((DART_DIR / name).read_text(encoding="utf-8"))


def test_a_list_of_samsung_filings() -> None:
    filings, pages = parse_list(
        sample("sjunepark-open-dart__open_dart-endpoints-list-tests-get_list_default.json"), NOW
    )
    assert pages == 37
    assert len(filings) == 10
    first = filings[0]
    assert (first.rcept_no, first.corp_code, first.stock_code, first.flr_nm) == (
        "20241101000042",
        "00126380",
        "005930",
        "민현진",
    )
    assert (first.report_nm, first.rcept_dt, first.flags) == (
        "임원ㆍ주요주주특정증권등소유상황보고서",
        date(2024, 11, 1),
        "",
    )
    # The padded report names come trimmed; one is a correction.
    names = {f.rcept_no: (f.report_nm, f.correction, f.flags) for f in filings}
    assert names["20241031800712"] == ("기타경영사항(자율공시)", False, "유")
    assert names["20241031800030"] == (
        "[기재정정]연결재무제표기준영업(잠정)실적(공정공시)",
        True,
        "유",
    )
    assert sum(f.correction for f in filings) == 1
    assert all(not f.report_nm.endswith(" ") for f in filings)


def test_a_page_of_the_whole_market() -> None:
    filings, pages = parse_list(
        sample("opendart_list_json_2023-02-08_page_count3_insta_inline_extracted.json"), NOW
    )
    assert pages == 5068
    assert [(f.corp_name, f.stock_code, f.corp_cls, f.flags) for f in filings] == [
        ("RF머트리얼즈", "327260", "K", "코"),
        ("RF머트리얼즈", "327260", "K", "코"),
        ("IBKS제13호스팩", "351340", "K", "코"),
    ]
    assert filings[2].report_nm == "주권매매거래정지(상장폐지 사유발생)"
    assert filings[2].flr_nm == "코스닥시장본부"


def test_the_company_answer_is_ok() -> None:
    doc = sample("sjunepark-open-dart__open_dart-endpoints-company-tests-get_company_default.json")
    assert check_status(doc, NOW) is True
    assert (doc["corp_code"], doc["stock_code"]) == ("00126380", "005930")


def test_a_status_that_is_not_where_opendart_puts_it_is_a_parse_error() -> None:
    # A client library's stand-in nests the status; OpenDART never does.
    name = (
        "sjunepark-open-dart__open_dart-endpoints-company-tests-"
        "get_should_fail_when_receiving_dart_message_code_other_than_000.json"
    )
    with pytest.raises(ParseError):
        check_status(sample(name), NOW)
