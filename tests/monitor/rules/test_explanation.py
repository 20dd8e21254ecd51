"""The explanation of each signal kind: what is stored, and reading it back."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from monitor.rules.explain import describe
from monitor.rules.explanation import (
    ChangeMatch,
    DisclosureExplanation,
    DisclosureMoveExplanation,
    DisclosureMoveMatch,
    Explanation,
    ExtremeMatch,
    FiredNewsRule,
    JoinedFiling,
    JoinedMatch,
    JoinedNews,
    MatchedMove,
    MoveExplanation,
    NewsExplanation,
    NewsWindow,
    PolicyMoveExplanation,
    QuoteFacts,
    SourceAuthExplanation,
    SourceStaleExplanation,
    TermHit,
    VolumeMatch,
    parse,
    to_json,
)
from monitor.rules.model import Ruleset, load_rules

T0 = datetime(2025, 6, 18, 4, 10, tzinfo=UTC)
HIT = TermHit(surface="AI미래기획수석", term="AI미래기획수석", field="title", start=9, end=18)
QUOTE = QuoteFacts(
    ticker="035420",
    as_of=T0,
    price=253_550.0,
    prev_close=220_000.0,
    change_pct=15.25,
    high=255_000.0,
    low=221_000,
    volume=3_000_000,
    source="naver",
)
MATCHED = MatchedMove(
    change=ChangeMatch(15.25, "KOSPI", 0.7, 14.55, 5.0, "up"),
    new_extreme=ExtremeMatch(52, "high", 255_000.0, 221_000.0, 255_000.0, 130_000.0, 241),
    volume=VolumeMatch(3_000_000, 1_000_000.0, 20, 2.0),
)

EXPLANATIONS: list[tuple[str, Explanation]] = [
    (
        "news",
        NewsExplanation(
            item_id="42",
            title="[속보] 대통령실 첫 AI미래기획수석에 하정우 네이버 AI센터장 임명",
            published_at=T0,
            cluster="story-1",
            url="https://news.example.kr/a/42",
            source="yonhap",
            themes={"ai-appointment": (HIT,)},
            entities={"naver": (TermHit("네이버", "네이버", None, 30, 33),)},
            tickers=("035420",),
            sectors=("ai-platform",),
            why="theme ai-appointment",
            rules=(
                FiredNewsRule("ai-policy", "info", "theme ai-policy"),
                FiredNewsRule("ai-appointment", "warning", "theme ai-appointment"),
            ),
            score=85,
            score_parts=(("rule ai-appointment", 50), ("a theme in the title", 15)),
            anchors=("korea-policy",),
        ),
    ),
    ("news", NewsExplanation(item_id="1", title="", published_at=None, cluster="")),
    ("move", MoveExplanation(quote=QUOTE, matched=MATCHED)),
    ("move", MoveExplanation(quote=QUOTE, matched=MatchedMove(volume=MATCHED.volume))),
    (
        "policy_move",
        PolicyMoveExplanation(
            move=QUOTE,
            rules=(
                JoinedMatch(
                    rule_id="policy-move",
                    severity="critical",
                    matched=MatchedMove(change=MATCHED.change),
                    window=NewsWindow(T0, T0, date(2025, 6, 18), 3, True),
                    news=(
                        JoinedNews("42", "임명", T0, "story-1", ("ai-policy",), "entity"),
                        JoinedNews("43", "섹터", T0, "story-2", (), "sector"),
                    ),
                ),
                JoinedMatch("policy-high", "warning", MATCHED, NewsWindow(), ()),
            ),
        ),
    ),
    (
        "source_stale",
        SourceStaleExplanation(
            source="wx",
            since=T0,
            silent_seconds=400.0,
            interval_seconds=60.0,
            missed_intervals=6,
            failures=4,
            last_error="http_503",
        ),
    ),
    ("source_stale", SourceStaleExplanation(source="down", since=None, failures=6)),
    ("source_auth", SourceAuthExplanation(source="wx", since=T0, last_error="http_401")),
    ("source_auth", SourceAuthExplanation(source="wx", since=None)),
    (
        "disclosure",
        DisclosureExplanation(
            item_id="7",
            rcept_no="20250618800123",
            corp_name="NAVER",
            stock_code="035420",
            report_nm="[기재정정]단일판매ㆍ공급계약체결",
            filer="NAVER",
            received=date(2025, 6, 18),
            published_at=T0,
            url="https://dart.fss.or.kr/dsaf001/main.do?rcpNo=20250618800123",
            correction=True,
            rules=(FiredNewsRule("dart-contract-stake", "warning", "report … a correction"),),
        ),
    ),
    ("disclosure", DisclosureExplanation("8", "20250618000001", "카카오", None, "유상증자결정")),
    (
        "disclosure_move",
        DisclosureMoveExplanation(
            move=QUOTE,
            rules=(
                DisclosureMoveMatch(
                    "disclosure-move",
                    "warning",
                    MATCHED,
                    NewsWindow(start=T0, end=T0, session=date(2025, 6, 18)),
                    (
                        JoinedFiling(
                            "7",
                            "20250618800123",
                            "NAVER",
                            "단일판매ㆍ공급계약체결",
                            T0,
                            None,
                            ("dart-contract-stake",),
                        ),
                    ),
                ),
            ),
        ),
    ),
    (
        "move",
        MoveExplanation(
            quote=QUOTE,
            matched=MatchedMove(volume=MATCHED.volume),
            not_claimed=("high-52: 52-week high not claimed: 37 bars, 200 needed",),
        ),
    ),
]


@pytest.mark.parametrize(("kind", "explanation"), EXPLANATIONS)
def test_what_is_stored_reads_back_the_same(kind: str, explanation: Explanation) -> None:
    stored = json.loads(json.dumps(to_json(explanation)))  # as the database returns it
    assert parse(kind, stored) == explanation


# The stored keys, in order: rows written before the typed explanation read the same.
KEYS = {
    "news": "item_id title published_at cluster url source themes entities tickers sectors"
    " why rules score score_parts anchors source_type",
    "move": "quote matched",
    "policy_move": "move rules",
    "disclosure": "item_id rcept_no corp_name stock_code report_nm filer received"
    " published_at url correction rules",
    "disclosure_move": "move rules",
    "source_stale": "source since silent_seconds interval_seconds missed_intervals failures"
    " last_error",
    "source_auth": "source since last_error",
}


@pytest.mark.parametrize(("kind", "explanation"), EXPLANATIONS)
def test_the_stored_keys(kind: str, explanation: Explanation) -> None:
    # ``not_claimed`` last, and only when a claim was withheld.
    withheld = ["not_claimed"] if getattr(explanation, "not_claimed", ()) else []
    assert list(to_json(explanation)) == KEYS[kind].split() + withheld


def test_the_stored_parts() -> None:
    (_, news), _, (_, move), _, (_, policy), *_ = EXPLANATIONS
    news_json = to_json(news)
    assert news_json["published_at"] == "2025-06-18T04:10:00+00:00"
    assert news_json["themes"] == {
        "ai-appointment": [
            {
                "surface": "AI미래기획수석",
                "term": "AI미래기획수석",
                "field": "title",
                "start": 9,
                "end": 18,
            }
        ]
    }
    assert news_json["rules"][0] == {
        "rule_id": "ai-policy",
        "severity": "info",
        "why": "theme ai-policy",
    }
    move_json = to_json(move)
    assert list(move_json["quote"]) == [
        "ticker",
        "as_of",
        "price",
        "prev_close",
        "change_pct",
        "high",
        "low",
        "volume",
        "source",
    ]
    assert move_json["matched"]["change"] == {
        "change_pct": 15.25,
        "relative_to": "KOSPI",
        "index_change_pct": 0.7,
        "excess_pct": 14.55,
        "threshold_pct": 5.0,
        "direction": "up",
    }
    assert list(move_json["matched"]["new_extreme"]) == [
        "weeks",
        "side",
        "day_high",
        "day_low",
        "high",
        "low",
        "bars",
    ]
    assert list(move_json["matched"]["volume"]) == ["volume", "avg_volume", "days", "multiple"]
    # Only the conditions the rule has.
    assert list(to_json(EXPLANATIONS[3][1])["matched"]) == ["volume"]
    (lead, other) = to_json(policy)["rules"]
    assert list(lead) == ["rule_id", "severity", "matched", "window", "news"]
    assert lead["window"] == {
        "start": T0.isoformat(),
        "end": T0.isoformat(),
        "session": "2025-06-18",
        "trading_days_before": 3,
        "same_session": True,
    }
    assert lead["news"][0] == {
        "item_id": "42",
        "title": "임명",
        "event_time": T0.isoformat(),
        "cluster": "story-1",
        "news_rules": ["ai-policy"],
        "about": "entity",
    }
    assert other["matched"] == to_json(move)["matched"]


@pytest.fixture(scope="module")
def ruleset() -> Ruleset:
    return load_rules(None)


def test_what_the_rules_build_reads_back_the_same(ruleset: Ruleset) -> None:
    from tests.monitor.rules.test_evaluate import EPISODE, episode_news, run

    news = episode_news(ruleset)
    signals = [s for n in news for s in n.signals] + run(EPISODE, news, ruleset)
    assert {s.kind for s in signals} == {"news", "move", "policy_move"}
    for signal in signals:
        stored = json.loads(json.dumps(to_json(signal.explanation)))
        assert parse(signal.kind, stored) == signal.explanation


KINDS = ["news", "move", "policy_move", "source_stale", "source_auth"]
ODD: list[Any] = [
    None,
    [],
    "x",
    {},
    {"title": 3, "since": "yesterday", "quote": None, "move": "x", "matched": 3},
    {"themes": [1], "entities": {"naver": [None, {"start": "0"}]}, "tickers": [1, "035420"]},
    {"rules": [None, {}, {"rule_id": 7, "news": [3, {"event_time": 1}], "window": []}]},
    {"quote": {"price": True, "as_of": "2025-13-01"}, "matched": {"change": {}, "volume": []}},
    {"move": {"ticker": "035420"}, "rules": [{"matched": {"new_extreme": {"weeks": "52"}}}]},
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("data", ODD)
def test_an_old_or_odd_row_reads_with_defaults(kind: str, data: Any) -> None:
    explanation = parse(kind, data)
    assert explanation is not None
    to_json(explanation)  # and it can be written again
    assert describe(explanation)  # and told in words


def test_what_the_defaults_are() -> None:
    # A news row from before the fired rules, the url and the sectors were stored.
    old = {
        "item_id": "7",
        "title": "제목",
        "published_at": T0.isoformat(),
        "cluster": "c",
        "themes": {"ai-policy": [{"surface": "AI", "term": "ai"}]},
        "why": "theme ai-policy",
    }
    news = parse("news", old)
    assert (news.title, news.published_at, news.url, news.rules, news.sectors) == (
        "제목",
        T0,
        None,
        (),
        (),
    )
    assert news.themes["ai-policy"] == (TermHit("AI", "ai", None, None, None),)
    assert news.terms() == ["AI"]
    # A move row whose quote was lost, and one whose extreme lacks its figures.
    assert parse("move", {"matched": {}}) == MoveExplanation(quote=None, matched=MatchedMove())
    extreme = parse("move", {"matched": {"new_extreme": {"side": "low"}}}).matched.new_extreme
    assert extreme == ExtremeMatch(weeks=52, side="low")
    # Odd entries are dropped, entries without an id kept (an id of "").
    policy = parse("policy_move", {"rules": [None, {"severity": "info"}]})
    assert [(r.rule_id, r.severity, r.window) for r in policy.rules] == [("", "info", NewsWindow())]
    stale = parse("source_stale", {"source": "wx", "since": "not a time", "failures": "6"})
    assert stale == SourceStaleExplanation(source="wx", since=None)
    assert parse("future_kind", {"anything": 1}) is None


def test_the_lead_rule_of_a_policy_move() -> None:
    policy = EXPLANATIONS[4][1]
    assert isinstance(policy, PolicyMoveExplanation)
    leads = [policy.lead(r) for r in ("policy-high", "policy-move", "gone")]
    assert [r.rule_id if r else None for r in leads] == [
        "policy-high",
        "policy-move",
        "policy-move",
    ]
    assert PolicyMoveExplanation(move=None).lead("policy-move") is None
