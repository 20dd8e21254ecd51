"""Signals from the default rules on the June 2025 episode (corpus/README.md, KST dates).

2025-06-16 Ha Jung-woo, head of Naver's Future AI Center, appointed the first senior
presidential secretary for AI; 06-17 JPMorgan raises Naver's target to 270,000 won;
06-18 10:30 Naver 253,550 (+15.25 %), Kakao 55,100 (+6.37 %), KOSPI 2,970.85 (+0.70 %);
06-19 close Naver 252,000 (+3.49 %, 52-week high 259,000), Kakao 60,400 (+9.42 %,
52-week high 61,800), KOSPI 2,977.74 (+0.19 %). Headlines are our own. The figures and
the year of daily bars behind the 52-week figures are those of tests/episode.py (each
figure's source is given there), which the pipeline's replay test polls too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.records import Quote
from monitor.rules.cluster import StoryClusters
from monitor.rules.evaluate import (
    KRX,
    MoveFacts,
    MoveStats,
    NewsFacts,
    Signal,
    bar_stats,
    evaluate_joined,
    evaluate_moves,
    evaluate_quote,
    news_facts,
    news_window,
    stats_from_bars,
)
from monitor.rules.explain import describe
from monitor.rules.explanation import parse, to_json
from monitor.rules.match import tag
from monitor.rules.model import Ruleset, load_rules
from monitor.timefmt import KST
from tests import episode

NAVER, KAKAO, HYNIX = "035420", "035720", "000660"


def tag_news(
    item_id: str, title: str, summary: str, when: datetime, cluster: str, ruleset: Ruleset
) -> NewsFacts:
    """Tag one item and build its facts, as the engine does for a stored item."""
    return news_facts(item_id, title, when, cluster, tag(title, summary, ruleset), ruleset)


@pytest.fixture(scope="module")
def ruleset() -> Ruleset:
    return load_rules(None)


def kst(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=KST)


APPOINTMENT = (
    "appointment",
    "[속보] 대통령실 첫 AI미래기획수석에 하정우 네이버 AI센터장 임명",
    "이재명 정부가 네이버 퓨처AI센터장인 하정우를 초대 AI 수석으로 발탁했다.",
    kst(6, 16, 10, 30),
)
JPMORGAN = (
    "jpmorgan",
    "JP모건, 네이버 목표주가 25만원→27만원 상향…'비중확대' 유지",
    "",
    kst(6, 17, 8, 10),
)


def episode_news(ruleset: Ruleset) -> list[NewsFacts]:
    clusters = StoryClusters()
    return [
        tag_news(item_id, title, summary, when, clusters.assign(title, when), ruleset)
        for item_id, title, summary, when in (APPOINTMENT, JPMORGAN)
    ]


def quote(
    ticker: str,
    when: datetime,
    price: float,
    change_pct: float,
    *,
    high: float | None = None,
    volume: int | None = None,
) -> Quote:
    return Quote(
        ticker=ticker,
        as_of=when.astimezone(UTC),
        price=price,
        source="test",
        change_pct=change_pct,
        high=high,
        volume=volume,
    )


def with_bars(q: Quote, kospi: float, *, keep: int | None = None) -> MoveFacts:
    """``q`` against the KOSPI's change and the episode's bars before its session (the
    last ``keep`` of them when given)."""
    day = q.as_of.astimezone(KST).date()
    bars = [b for b in episode.daily_bars(q.ticker) if b.day < day]
    stats = bar_stats(q.ticker, bars[-keep:] if keep else bars, before=day)
    return MoveFacts(q, kospi, stats_from_bars(stats, q))


# 06-18 10:30 and 06-19 close, each stock against the year of bars before its session.
SURGE, CLOSE = kst(6, 18, 10, 30), kst(6, 19, 15, 30)
KOSPI_0618 = MoveFacts(quote("KOSPI", SURGE, 2970.85, episode.KOSPI_0618_INTRADAY_PCT), 0.70)
NAVER_0618 = with_bars(quote(NAVER, SURGE, 253_550, 15.25, high=258_000), 0.70)
KAKAO_0618 = with_bars(quote(KAKAO, SURGE, 55_100, 6.37, high=56_000), 0.70)
KOSPI_0619 = MoveFacts(quote("KOSPI", CLOSE, 2977.74, episode.KOSPI_0619_CHANGE_PCT), 0.19)
NAVER_0619 = with_bars(quote(NAVER, CLOSE, 252_000, 3.49, high=259_000), 0.19)
KAKAO_0619 = with_bars(quote(KAKAO, CLOSE, 60_400, 9.42, high=61_800), 0.19)
EPISODE: list[MoveFacts] = [KOSPI_0618, NAVER_0618, KAKAO_0618, KOSPI_0619, NAVER_0619, KAKAO_0619]


def run(moves: Sequence[MoveFacts], news: Sequence[NewsFacts], ruleset: Ruleset) -> list[Signal]:
    return [s for m in moves for s in evaluate_quote(m, news, ruleset)]


def kinds(signals: Sequence[Signal]) -> set[tuple[str, str, str, str]]:
    return {
        (s.kind, s.rule_id, s.subject, s.event_time.astimezone(KST).date().isoformat())
        for s in signals
    }


def test_the_news_of_the_episode(ruleset: Ruleset) -> None:
    appointment, jpmorgan = episode_news(ruleset)
    # Policy news about Naver (via Ha Jung-woo and by name) and the AI platform sector.
    assert appointment.rule_ids == ("ai-policy", "ai-policy-platform", "ai-appointment", "ai-post")
    assert NAVER in appointment.tickers and KAKAO not in appointment.tickers
    assert "ai-platform" in appointment.sectors
    assert {"ha-jung-woo", "naver"} <= appointment.entities
    # A target raise is market news, not policy news.
    assert jpmorgan.rule_ids == ("ai-platform-market",)
    signal = appointment.signals[0]
    assert signal.kind == "news" and signal.subject == "ha-jung-woo"
    assert signal.dedup_key == f"news:{appointment.cluster}"
    assert signal.event_time == kst(6, 16, 10, 30).astimezone(UTC)
    # The explanation carries matched terms with positions, and is JSON-able.
    themes = to_json(signal.explanation)["themes"]
    hit = themes["ai-appointment"][0]
    title = APPOINTMENT[1]
    assert title[hit["start"] : hit["end"]] == hit["surface"] == "AI미래기획수석"
    json.dumps(to_json(signal.explanation))


def test_news_signals_are_keyed_by_cluster(ruleset: Ruleset) -> None:
    item_id, title, summary, when = APPOINTMENT
    first = tag_news(item_id, title, summary, when, "story-1", ruleset).signals
    # Another outlet's copy in the same cluster gives the same keys.
    copy = tag_news("copy", title + " - 연합뉴스", "", when, "story-1", ruleset).signals
    assert [s.dedup_key for s in first] == [s.dedup_key for s in copy] == ["news:story-1"]
    # One signal for the story: the most severe rule (the first of two warnings) names
    # it, and every rule that fired is in the explanation.
    (signal,) = first
    assert (signal.rule_id, signal.severity) == ("ai-appointment", "warning")
    fired = [r["rule_id"] for r in to_json(signal.explanation)["rules"]]
    assert fired == ["ai-policy", "ai-policy-platform", "ai-appointment", "ai-post"]
    assert tag_news("x", "오늘의 날씨", "", when, "story-2", ruleset).signals == ()


def test_the_episode_gives_exactly_these_signals(ruleset: Ruleset) -> None:
    signals = run(EPISODE, episode_news(ruleset), ruleset)
    policy = {k for k in kinds(signals) if k[0] == "policy_move"}
    # NAVER 06-19: +3.49 % with the KOSPI +0.19 % is 3.30 points beyond it.
    assert policy == {
        ("policy_move", "policy-move", NAVER, "2025-06-18"),
        ("policy_move", "policy-move", NAVER, "2025-06-19"),
        ("policy_move", "policy-high", KAKAO, "2025-06-19"),
    }
    # Besides: Naver's 06-18 move is 14.55 points beyond the KOSPI, a big move on its
    # own. Nothing for the KOSPI, nothing for Kakao on 06-18 (its 56,000 is below the
    # year's 57,900: no 52-week high, and the news did not name it).
    assert kinds(signals) - policy == {("move", "ai-platform-big-move", NAVER, "2025-06-18")}
    assert not [s for s in signals if s.subject == "KOSPI"]
    assert len(signals) == 4


def test_a_policy_move_names_the_move_and_the_news(ruleset: Ruleset) -> None:
    news = episode_news(ruleset)
    (signal,) = evaluate_joined(NAVER_0618, news, ruleset)
    assert signal.severity == "critical"
    assert signal.dedup_key == f"policy_move:{NAVER}:2025-06-18"
    explanation = to_json(signal.explanation)
    assert explanation["move"]["change_pct"] == 15.25
    # Its 258,000 is a 52-week high too, on the year of bars before the session.
    rule, high = explanation["rules"]
    assert (rule["rule_id"], high["rule_id"]) == ("policy-move", "policy-high")
    year = SURGE.date() - timedelta(days=365), SURGE.date()
    assert high["matched"]["new_extreme"]["bars"] == len(
        [b for b in episode.bars(NAVER) if year[0] <= b.day < year[1]]
    )
    assert rule["matched"]["change"]["excess_pct"] == pytest.approx(14.55)
    # The appointment counts (about Naver); the JPMorgan note is not policy news.
    assert [n["item_id"] for n in rule["news"]] == ["appointment"]
    assert rule["news"][0]["about"] == "entity"
    # The window: three whole trading days before 06-18 (06-13, 06-16, 06-17), from the
    # close of 06-12, up to the quote.
    assert rule["window"]["start"] == kst(6, 12, 15, 30).astimezone(UTC).isoformat()
    assert rule["window"]["end"] == SURGE.astimezone(UTC).isoformat()
    json.dumps(explanation)
    # Kakao on 06-19 joins through its sector: the news did not name it.
    (kakao,) = evaluate_joined(KAKAO_0619, news, ruleset)
    (rule,) = to_json(kakao.explanation)["rules"]
    assert rule["news"][0]["about"] == "sector"
    assert rule["matched"]["new_extreme"]["high"] == 61_800


def test_no_policy_news_no_policy_move(ruleset: Ruleset) -> None:
    news = episode_news(ruleset)
    quiet_day = kst(5, 20, 14)
    controls = [
        # SK hynix +4 % on a day with no news near it.
        MoveFacts(quote(HYNIX, quiet_day, 200_000, 4.0), 0.3),
        # Naver +4.5 % the same day: beyond the KOSPI by 4.2, but the June news is
        # weeks after it (news after a move cannot explain it).
        MoveFacts(quote(NAVER, quiet_day, 190_000, 4.5), 0.3),
    ]
    assert run(controls, news, ruleset) == []
    # Only the JPMorgan note before the 06-18 move: the move signals, no policy move.
    signals = run([NAVER_0618], news[1:], ruleset)
    assert kinds(signals) == {("move", "ai-platform-big-move", NAVER, "2025-06-18")}


def test_news_after_the_quote_does_not_count(ruleset: Ruleset) -> None:
    news = episode_news(ruleset)
    early = MoveFacts(quote(NAVER, kst(6, 16, 9, 30), 210_000, 5.0), 0.2)
    assert evaluate_joined(early, news, ruleset) == []
    late = MoveFacts(quote(NAVER, kst(6, 16, 11, 0), 215_000, 5.0), 0.2)
    assert [s.rule_id for s in evaluate_joined(late, news, ruleset)] == ["policy-move"]


def test_dedup_keys_are_stable(ruleset: Ruleset) -> None:
    first = run(EPISODE, episode_news(ruleset), ruleset)
    again = run(EPISODE, episode_news(ruleset), ruleset)
    assert [s.dedup_key for s in first] == [s.dedup_key for s in again]
    assert first == again
    # Two intraday quotes of one session: one policy_move key per ticker per day.
    news = episode_news(ruleset)
    morning = MoveFacts(quote(NAVER, kst(6, 18, 9, 40), 270_000, 12.1), 0.4)
    keys = {s.dedup_key for m in (morning, NAVER_0618) for s in evaluate_joined(m, news, ruleset)}
    assert keys == {f"policy_move:{NAVER}:2025-06-18"}


def test_one_policy_move_when_several_rules_hold(ruleset: Ruleset) -> None:
    # Naver's +3.49 % on 06-19, 3.30 points beyond the KOSPI, meets policy-move as well
    # as policy-high: one signal, named by the critical rule, with the same key as
    # without the KOSPI's change (then only policy-high holds).
    news = episode_news(ruleset)
    (signal,) = evaluate_joined(NAVER_0619, news, ruleset)
    without_kospi = MoveFacts(NAVER_0619.quote, None, NAVER_0619.stats)
    (without,) = evaluate_joined(without_kospi, news, ruleset)
    assert signal.rule_id == "policy-move" and without.rule_id == "policy-high"
    assert signal.dedup_key == without.dedup_key
    rules = to_json(signal.explanation)["rules"]
    assert [r["rule_id"] for r in rules] == ["policy-move", "policy-high"]


def test_move_conditions(ruleset: Ruleset) -> None:
    big = quote(KAKAO, kst(6, 18, 13), 60_000, 10.8)
    # Relative to the KOSPI: 10.8 - 0.70 passes, 10.8 - 1.0 does not; unknown: no.
    assert [
        s.rule_id for s in evaluate_moves(big, kospi_change_pct=0.7, stats=None, ruleset=ruleset)
    ] == ["ai-platform-big-move"]
    assert evaluate_moves(big, kospi_change_pct=1.0, stats=None, ruleset=ruleset) == []
    assert evaluate_moves(big, kospi_change_pct=None, stats=None, ruleset=ruleset) == []
    # Direction "either": a fall counts too.
    fall = quote(NAVER, kst(6, 18, 13), 180_000, -11.0)
    assert len(evaluate_moves(fall, kospi_change_pct=-0.5, stats=None, ruleset=ruleset)) == 1
    # Not an AI platform stock: the default move rules do not apply.
    hynix = quote(HYNIX, kst(6, 18, 13), 250_000, 15.0)
    assert evaluate_moves(hynix, kospi_change_pct=0.7, stats=None, ruleset=ruleset) == []


def test_volume_and_lows_with_a_rules_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        """
version: 1
rules:
  - id: heavy
    kind: move
    tickers: ["000660"]
    volume: {multiple: 3, days: 20}
  - id: low
    kind: move
    change: {pct: 2, direction: down}
    new_extreme: {side: low}
""",
        encoding="utf-8",
    )
    rules = load_rules(path)
    q = Quote(
        HYNIX,
        kst(6, 18, 13).astimezone(UTC),
        150_000,
        "test",
        change_pct=-2.5,
        low=149_000,
        volume=9_000_000,
    )
    stats = MoveStats(high=300_000, low=149_000, avg_volume=2_500_000, bars=240)
    got = evaluate_moves(q, kospi_change_pct=None, stats=stats, ruleset=rules)
    assert [s.rule_id for s in got] == ["heavy", "low"]
    assert to_json(got[1].explanation)["matched"]["new_extreme"]["side"] == "low"
    thin = MoveStats(high=300_000, low=140_000, avg_volume=3_500_000, bars=240)
    assert evaluate_moves(q, kospi_change_pct=None, stats=thin, ruleset=rules) == []
    # An index quote is not a mover for a rule with no ticker list.
    idx = Quote("KOSPI", q.as_of, 2900.0, "test", change_pct=-3.0, low=2890.0)
    assert evaluate_moves(idx, kospi_change_pct=None, stats=stats, ruleset=rules) == []


@pytest.mark.parametrize(
    ("keep", "claimed"),
    [(None, True), (200, True), (199, False), (37, False), (2, False)],
)
def test_a_52_week_high_needs_200_bars(ruleset: Ruleset, keep: int | None, claimed: bool) -> None:
    # Kakao's 61,800 on 06-19 against the last ``keep`` bars before it: above all of
    # them each time, but a 52-week high only on 200 bars or more.
    news = episode_news(ruleset)
    kakao = with_bars(KAKAO_0619.quote, 0.19, keep=keep)
    signals = evaluate_joined(kakao, news, ruleset)
    assert [s.rule_id for s in signals] == (["policy-high"] if claimed else [])
    # NAVER's policy move on 06-19 says which claim it withheld, and why.
    naver = with_bars(NAVER_0619.quote, 0.19, keep=keep)
    (signal,) = evaluate_joined(naver, news, ruleset)
    exp = to_json(signal.explanation)
    held = [r["rule_id"] for r in exp["rules"]]
    if claimed:
        assert held == ["policy-move", "policy-high"] and "not_claimed" not in exp
    else:
        assert held == ["policy-move"]
        assert exp["not_claimed"] == [
            f"policy-high: 52-week high not claimed: {keep} bars, 200 needed"
        ]
        assert parse("policy_move", exp).not_claimed == tuple(exp["not_claimed"])
        assert f"  policy-high: 52-week high not claimed: {keep} bars, 200 needed" in describe(
            signal.explanation
        )


def test_min_bars_is_the_rules_own(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nrules:\n  - id: young-high\n    kind: move\n"
        "    new_extreme: {side: high, min_bars: 30}\n",
        encoding="utf-8",
    )
    rules = load_rules(path)
    q = Quote(KAKAO, CLOSE.astimezone(UTC), 60_400, "test", change_pct=9.42, high=61_800)
    assert [
        s.rule_id
        for s in evaluate_moves(
            q, kospi_change_pct=None, stats=MoveStats(high=61_000, bars=30), ruleset=rules
        )
    ] == ["young-high"]
    assert (
        evaluate_moves(
            q, kospi_change_pct=None, stats=MoveStats(high=61_000, bars=29), ruleset=rules
        )
        == []
    )
    # Bars not counted: nothing is claimed.
    assert (
        evaluate_moves(q, kospi_change_pct=None, stats=MoveStats(high=61_000), ruleset=rules) == []
    )


def test_news_window_on_the_krx_calendar() -> None:
    # 06-06 (Memorial Day, a Friday) is closed: one trading day before Mon 06-09 is 06-05.
    start, end, day = news_window(kst(6, 9, 10), 1, True, KRX)
    assert day.isoformat() == "2025-06-09"
    assert start == kst(6, 4, 15, 30).astimezone(UTC)
    assert end == kst(6, 9, 10).astimezone(UTC)
    # A quote stamped on a Saturday belongs to Friday's session.
    _, _, day = news_window(kst(6, 14, 9), 0, True, KRX)
    assert day.isoformat() == "2025-06-13"
    # Without the same session, the window ends at the previous close.
    _, end, _ = news_window(kst(6, 18, 13), 2, False, KRX)
    assert end == kst(6, 17, 15, 30).astimezone(UTC)
