"""Disclosure rules of the default set on report names, and the disclosure_move join,
as pure functions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from adapters.records import Quote
from monitor.rules import RulesError
from monitor.rules.evaluate import (
    DisclosureFacts,
    MoveFacts,
    evaluate_disclosure,
    evaluate_disclosure_move,
)
from monitor.rules.explanation import DisclosureExplanation, DisclosureMoveExplanation, parse
from monitor.rules.model import load_rules, report_kind_of
from monitor.stored import StoredFiling

RULES = load_rules()
# 09:05 KST on 18 June 2025, a trading day.
FILED = datetime(2025, 6, 18, 0, 5, tzinfo=UTC)


def filing(report_nm: str, *, stock_code: str | None = "035420") -> StoredFiling:
    return StoredFiling(
        item_id=7,
        source="dart",
        rcept_no="20250618800123",
        corp_name="NAVER",
        stock_code=stock_code,
        report_nm=report_nm,
        flr_nm="NAVER",
        rcept_dt=date(2025, 6, 18),
        flags="유",
        correction=report_kind_of(report_nm)[1],
        url="https://dart.fss.or.kr/dsaf001/main.do?rcpNo=20250618800123",
        published_at=FILED,
    )


@pytest.mark.parametrize(
    ("report_nm", "rules", "severity"),
    [
        ("단일판매ㆍ공급계약체결", ["dart-contract-stake"], "warning"),
        ("타법인주식및출자증권취득결정", ["dart-contract-stake"], "warning"),
        ("유상증자결정", ["dart-capital"], "warning"),
        ("최대주주변경", ["dart-capital"], "warning"),
        ("주요사항보고서(자기주식취득결정)", ["dart-capital", "dart-material"], "warning"),
        ("주요사항보고서(유상증자결정)", ["dart-capital", "dart-material"], "warning"),
        ("투자판단관련주요경영사항", ["dart-material"], "info"),
        ("기업설명회(IR)개최", ["dart-earnings-ir"], "info"),
        ("연결재무제표기준영업(잠정)실적(공정공시)", ["dart-earnings-ir"], "info"),
        # Corrections restate a filing already judged: no new event.
        ("[기재정정]단일판매ㆍ공급계약체결", [], None),
        ("[첨부정정]주요사항보고서(자기주식취득결정)", [], None),
        ("[기재정정]연결재무제표기준영업(잠정)실적(공정공시)", [], None),
        # Routine filings.
        ("임원ㆍ주요주주특정증권등소유상황보고서", [], None),
        ("현금ㆍ현물배당결정", [], None),
        ("기타경영사항(자율공시)", [], None),
    ],
)
def test_report_names(report_nm: str, rules: list[str], severity: str | None) -> None:
    signals = evaluate_disclosure(filing(report_nm), RULES)
    assert [r.rule_id for s in signals for r in s.explanation.rules] == rules  # type: ignore[union-attr]
    if rules:
        [signal] = signals
        assert (signal.kind, signal.severity, signal.subject) == ("disclosure", severity, "035420")
        assert signal.dedup_key == "disclosure:20250618800123"
        assert signal.event_time == FILED


def test_a_filing_without_a_listed_stock_raises_nothing() -> None:
    assert evaluate_disclosure(filing("유상증자결정", stock_code=None), RULES) == []


def test_a_rule_may_take_corrections_and_narrow_tickers(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n"
        "  - id: kakao-contracts-too\n    kind: disclosure\n    severity: critical\n"
        "    reports: [공급계약]\n    tickers: ['035720']\n    corrections: true\n",
        encoding="utf-8",
    )
    ruleset = load_rules(path)
    kakao = filing("[기재정정]단일판매ㆍ공급계약체결", stock_code="035720")
    [signal] = evaluate_disclosure(kakao, ruleset)
    assert (signal.rule_id, signal.severity) == ("kakao-contracts-too", "critical")
    assert isinstance(signal.explanation, DisclosureExplanation)
    assert signal.explanation.correction is True
    assert "(a correction)" in signal.explanation.rules[0].why
    # The same correction of NAVER: the rule names Kakao only, the defaults skip it.
    assert evaluate_disclosure(filing("[기재정정]단일판매ㆍ공급계약체결"), ruleset) == []


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "  - {id: x, kind: disclosure_move, disclosures: [policy-move],"
            " move: {change: {pct: 3}}}\n",
            "rule 'policy-move' is a joined rule, not a disclosure rule",
        ),
        (
            "  - {id: x, kind: disclosure_move, disclosures: [nope], move: {change: {pct: 3}}}\n",
            "unknown disclosure rule 'nope'",
        ),
        ("  - {id: x, kind: disclosure, reports: []}\n", "List should have at least 1 item"),
    ],
)
def test_bad_disclosure_rules(tmp_path: Path, rule: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n" + rule, encoding="utf-8")
    with pytest.raises(RulesError, match=message):
        load_rules(path)


def quote(ticker: str, at: datetime, price: float, prev: float) -> Quote:
    return Quote(ticker=ticker, as_of=at, price=price, source="naver", prev_close=prev)


def facts(stock_code: str, when: datetime, rules: tuple[str, ...]) -> DisclosureFacts:
    return DisclosureFacts(
        item_id="7",
        rcept_no="20250618800123",
        corp_name="NAVER",
        stock_code=stock_code,
        report_nm="단일판매ㆍ공급계약체결",
        event_time=when,
        url=None,
        rule_ids=rules,
    )


SURGE = datetime(2025, 6, 18, 1, 30, tzinfo=UTC)  # 10:30 KST


@pytest.mark.parametrize(
    ("filed", "stock", "rules", "joined"),
    [
        (FILED, "035420", ("dart-contract-stake",), True),
        # Tuesday noon: the previous session.
        (datetime(2025, 6, 17, 3, 0, tzinfo=UTC), "035420", ("dart-capital",), True),
        # Monday noon, two sessions back: too old.
        (datetime(2025, 6, 16, 3, 0, tzinfo=UTC), "035420", ("dart-capital",), False),
        # After the quote: it cannot have moved it.
        (datetime(2025, 6, 18, 2, 0, tzinfo=UTC), "035420", ("dart-capital",), False),
        # Another company's filing.
        (FILED, "035720", ("dart-capital",), False),
    ],
)
def test_a_move_joins_a_filing_of_the_same_company_in_the_same_or_previous_session(
    filed: datetime, stock: str, rules: tuple[str, ...], joined: bool
) -> None:
    move = MoveFacts(quote("035420", SURGE, 253_550, 220_000), kospi_change_pct=0.70, stats=None)
    signals = evaluate_disclosure_move(move, [facts(stock, filed, rules)], RULES)
    if not joined:
        assert signals == []
        return
    [signal] = signals
    assert (signal.kind, signal.rule_id, signal.subject) == (
        "disclosure_move",
        "disclosure-move",
        "035420",
    )
    assert signal.dedup_key == "disclosure_move:035420:2025-06-18"
    assert isinstance(signal.explanation, DisclosureMoveExplanation)
    [match] = signal.explanation.rules
    assert [f.rcept_no for f in match.filings] == ["20250618800123"]


def test_a_small_move_joins_nothing() -> None:
    move = MoveFacts(quote("035420", SURGE, 222_000, 220_000), kospi_change_pct=0.70, stats=None)
    assert evaluate_disclosure_move(move, [facts("035420", FILED, ("dart-capital",))], RULES) == []


def test_the_explanations_are_stored_and_read_back_unchanged() -> None:
    from monitor.rules.explanation import to_json

    [disclosure] = evaluate_disclosure(filing("주요사항보고서(자기주식취득결정)"), RULES)
    move = MoveFacts(quote("035420", SURGE, 253_550, 220_000), kospi_change_pct=0.70, stats=None)
    [joined] = evaluate_disclosure_move(move, [facts("035420", FILED, ("dart-capital",))], RULES)
    for signal in (disclosure, joined):
        assert parse(signal.kind, to_json(signal.explanation)) == signal.explanation
