"""Writing deliveries with the signals: routing, group wait, repeats, quiet hours, the
daily digest; and what a channel is shown of a stored signal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.alerting import DIGEST_ROUTE
from monitor.alerts.message import MoveLine
from monitor.alerts.outbox import alert_signal
from monitor.db.schema import SignalRow
from tests.monitor.alerts.outbox_support import SM, T0, deliveries, kst, settings, signal_row, store

ROUTES = settings(
    routes=[
        {"name": "pager", "match": {"min_severity": "critical"}, "channels": ["pager"]},
        {"name": "naver", "match": {"tickers": ["035420"]}, "channels": ["naver"]},
        {"name": "market", "match": {"kinds": ["move", "policy_move"]}, "channels": ["market"]},
        {"name": "policy", "match": {"rules": ["ai-policy"]}, "channels": ["policy"]},
        {"name": "quiet", "match": {"severities": ["info"]}, "channels": ["lowkey"]},
    ]
)


@pytest.mark.parametrize(
    ("kind", "severity", "rule_id", "tickers", "channels"),
    [
        ("news", "info", "ai-policy", [], {"policy", "lowkey"}),
        ("news", "warning", "other", [], set()),
        ("news", "warning", "other", ["035720", "035420"], {"naver"}),
        ("move", "warning", "surge", ["035720"], {"market"}),
        ("policy_move", "critical", "x", ["035420"], {"pager", "naver", "market"}),
        ("source_stale", "critical", "stale", [], {"pager"}),
        ("source_stale", "info", "stale", [], {"lowkey"}),
    ],
)
async def test_routing(
    sessionmaker: SM,
    kind: str,
    severity: str,
    rule_id: str,
    tickers: list[str],
    channels: set[str],
) -> None:
    signal = signal_row(kind=kind, severity=severity, rule_id=rule_id, tickers=tickers)
    written = await store(sessionmaker, ROUTES, signal, now=T0)
    rows = await deliveries(sessionmaker)
    assert {r.channel for r in rows} == channels
    assert written == len(channels)
    assert all((r.status, r.due_at, r.attempts, r.held) == ("pending", T0, 0, None) for r in rows)
    assert all(r.route == r.channel.replace("lowkey", "quiet") for r in rows)


async def test_a_route_with_min_score_takes_news_that_scores_enough(sessionmaker: SM) -> None:
    alerts = settings(
        routes=[
            {"name": "sure", "match": {"min_score": 70}, "channels": ["desk"]},
            {"name": "all", "channels": ["log"]},
        ]
    )
    strong = signal_row(explanation={"title": "a", "score": 85})
    borderline = signal_row(explanation={"title": "b", "score": 70})
    weak = signal_row(explanation={"title": "c", "score": 55})
    unscored = signal_row(explanation={"title": "d"})  # stored before scores
    move = signal_row(kind="policy_move", rule_id="policy-move", explanation={"move": {}})
    await store(sessionmaker, alerts, strong, borderline, weak, unscored, move, now=T0)
    by_signal: dict[int, set[str]] = {}
    for r in await deliveries(sessionmaker):
        by_signal.setdefault(r.signal_id, set()).add(r.channel)
    assert [by_signal[s.id] for s in (strong, borderline, weak, unscored, move)] == [
        {"desk", "log"},
        {"desk", "log"},
        {"log"},
        {"log"},  # news without a score (stored before scores) counts as 0
        {"desk", "log"},  # moves are not scored: min_score does not hold them back
    ]


async def test_a_signal_reaches_a_channel_once_whatever_matches(sessionmaker: SM) -> None:
    alerts = settings(
        routes=[
            {"name": "first", "match": {"kinds": ["news"]}, "channels": ["chat", "mail"]},
            {"name": "second", "channels": ["chat"]},
        ]
    )
    signal = signal_row()
    assert await store(sessionmaker, alerts, signal, now=T0) == 2
    rows = await deliveries(sessionmaker)
    assert sorted((r.route, r.channel) for r in rows) == [("first", "chat"), ("first", "mail")]
    # Enqueued again (a retried transaction, a replay): nothing new.
    async with sessionmaker.begin() as session:
        from monitor.alerts.outbox import enqueue

        assert await enqueue(session, [signal], alerts, now=T0) == 0
    assert len(await deliveries(sessionmaker)) == 2


async def test_group_wait_gathers_a_burst_into_one_due_time(sessionmaker: SM) -> None:
    alerts = settings(routes=[{"name": "r", "channels": ["chat"], "group_wait": "30s"}])
    await store(sessionmaker, alerts, signal_row(), now=T0)
    await store(sessionmaker, alerts, signal_row(), now=T0 + timedelta(seconds=10))
    await store(sessionmaker, alerts, signal_row(), now=T0 + timedelta(seconds=29))
    # The group went out at T0+30; a later signal opens a new one.
    await store(sessionmaker, alerts, signal_row(), now=T0 + timedelta(seconds=40))
    await store(sessionmaker, alerts, signal_row(), now=T0 + timedelta(seconds=50))
    due = [r.due_at - T0 for r in await deliveries(sessionmaker)]
    assert due == [timedelta(seconds=s) for s in (30, 30, 30, 70, 70)]


async def test_repeats_of_rule_and_subject_are_suppressed_within_the_window(
    sessionmaker: SM,
) -> None:
    alerts = settings(
        routes=[
            {"name": "r", "channels": ["chat", "mail"], "suppress_repeats": "1h"},
            {"name": "all", "channels": ["log"]},
        ]
    )
    naver = {"rule_id": "ai-policy", "subject": "naver"}
    assert await store(sessionmaker, alerts, signal_row(**naver), now=T0) == 3
    # The same rule and subject ten minutes later, with another subject.
    later = T0 + timedelta(minutes=10)
    count = await store(
        sessionmaker, alerts, signal_row(**naver), signal_row(subject="kakao"), now=later
    )
    assert count == 2 + 2  # kakao on r's two channels, both signals on "all"
    # After the window, the next one goes out again.
    after = T0 + timedelta(minutes=61)
    assert await store(sessionmaker, alerts, signal_row(**naver), now=after) == 3
    rows = await deliveries(sessionmaker)
    statuses = [(r.signal_id, r.route, r.channel, r.status) for r in rows if r.route == "r"]
    assert [s[3] for s in statuses] == [
        "pending", "pending", "suppressed", "suppressed", "pending", "pending", "pending", "pending"
    ]  # fmt: skip
    # Suppression is per route: the catch-all route still has every signal.
    assert all(r.status == "pending" for r in rows if r.route == "all")


async def test_a_repeat_within_one_batch_is_suppressed(sessionmaker: SM) -> None:
    alerts = settings(routes=[{"name": "r", "channels": ["chat"], "suppress_repeats": 600}])
    assert await store(sessionmaker, alerts, signal_row(), signal_row(), now=T0) == 1
    assert [r.status for r in await deliveries(sessionmaker)] == ["pending", "suppressed"]


async def test_quiet_hours_hold_all_but_critical_until_they_end(sessionmaker: SM) -> None:
    alerts = settings(
        routes=[
            {
                "name": "r",
                "channels": ["chat"],
                "quiet_hours": {"start": "22:00", "end": "07:00"},
                "group_wait": 30,
            }
        ]
    )
    night = kst(2025, 6, 18, 23, 30)
    await store(sessionmaker, alerts, signal_row(severity="warning"), now=night)
    await store(sessionmaker, alerts, signal_row(severity="info"), now=night + timedelta(hours=3))
    await store(sessionmaker, alerts, signal_row(severity="critical"), now=night)
    morning = kst(2025, 6, 19, 7, 0)
    await store(sessionmaker, alerts, signal_row(severity="info"), now=morning)
    rows = await deliveries(sessionmaker)
    assert [(r.held, r.due_at) for r in rows] == [
        ("quiet", morning),
        ("quiet", morning),
        (None, night + timedelta(seconds=30)),  # critical bypasses, with the group wait
        (None, morning + timedelta(seconds=30)),
    ]


async def test_the_daily_digest_collects_what_it_selects(sessionmaker: SM) -> None:
    alerts = settings(
        routes=[{"name": "r", "channels": ["chat"]}],
        digest={"channel": "mail", "at": "08:00", "min_severity": "warning"},
    )
    before = kst(2025, 6, 18, 7, 59)
    after = kst(2025, 6, 18, 8, 1)
    await store(
        sessionmaker,
        alerts,
        signal_row(severity="warning"),
        signal_row(severity="info"),
        now=before,
    )
    await store(sessionmaker, alerts, signal_row(severity="critical"), now=after)
    digest = [r for r in await deliveries(sessionmaker) if r.route == DIGEST_ROUTE]
    assert [(r.channel, r.held, r.due_at) for r in digest] == [
        ("mail", "digest", kst(2025, 6, 18, 8)),
        ("mail", "digest", kst(2025, 6, 19, 8)),
    ]


async def test_signals_must_be_stored_first(sessionmaker: SM) -> None:
    from monitor.alerts.outbox import enqueue

    async with sessionmaker.begin() as session:
        with pytest.raises(ValueError, match="flush the session first"):
            await enqueue(session, [signal_row()], settings(), now=T0)


# --- what a channel shows -------------------------------------------------------------


def _row(kind: str, explanation: dict[str, Any], **kw: Any) -> SignalRow:
    row = signal_row(kind=kind, explanation=explanation, **kw)
    row.id = 7
    return row


def test_a_news_signal() -> None:
    hit = {"field": "title", "start": 0, "end": 3, "term": "소버린ai"}
    row = _row(
        "news",
        {
            "item_id": "42",
            "title": "네이버, 소버린 AI 확대",
            "published_at": T0.isoformat(),
            "cluster": "story-9",
            "themes": {
                "sovereign-ai": [{**hit, "surface": "소버린 AI"}, {**hit, "surface": "소버린 AI"}],
                "policy": [{**hit, "surface": "정부"}],
            },
            "why": "theme sovereign-ai and entity naver",
            "url": "https://news.example.kr/a/42",
            "source": "yonhap",
        },
    )
    shown = alert_signal(row)
    assert (shown.id, shown.kind, shown.title) == (7, "news", "네이버, 소버린 AI 확대")
    assert shown.terms == ("소버린 AI", "정부")
    assert (shown.url, shown.source, shown.story) == (
        "https://news.example.kr/a/42",
        "yonhap",
        "story-9",
    )
    assert shown.why == "theme sovereign-ai and entity naver"


QUOTE = {
    "ticker": "035420",
    "as_of": T0.isoformat(),
    "price": 253_550.0,
    "prev_close": 220_000.0,
    "change_pct": 15.25,
    "high": 255_000.0,
    "low": 221_000.0,
    "volume": 3_000_000,
    "source": "naver",
}
CHANGE = {
    "change_pct": 15.25,
    "relative_to": "KOSPI",
    "index_change_pct": 0.7,
    "excess_pct": 14.55,
    "threshold_pct": 5.0,
    "direction": "up",
}


def test_a_move_signal_with_the_ticker_name() -> None:
    row = _row("move", {"quote": QUOTE, "matched": {"change": CHANGE}}, subject="035420")
    shown = alert_signal(row, {"035420": "NAVER"})
    assert shown.title == "NAVER 035420 +15.25% (KOSPI +0.70%)"
    assert shown.move == MoveLine("035420", "NAVER", 253_550.0, 15.25)
    assert shown.why == "moved up at least 5% more than the KOSPI"
    assert alert_signal(row).title == "035420 +15.25% (KOSPI +0.70%)"


def test_a_policy_move_signal() -> None:
    news = {
        "item_id": "42",
        "title": "하정우, 초대 AI수석 임명",
        "event_time": T0.isoformat(),
        "cluster": "story-1",
        "news_rules": ["ai-policy"],
        "about": "entity",
    }
    row = _row(
        "policy_move",
        {
            "move": QUOTE,
            "rules": [
                {"rule_id": "other", "severity": "info", "matched": {}, "window": {}, "news": []},
                {
                    "rule_id": "naver-on-policy",
                    "severity": "critical",
                    "matched": {"change": CHANGE},
                    "window": {},
                    "news": [news, {**news, "title": "두 번째"}],
                },
            ],
        },
        rule_id="naver-on-policy",
        subject="035420",
    )
    shown = alert_signal(row, {"035420": "NAVER"})
    assert shown.title == "NAVER 035420 +15.25% (KOSPI +0.70%) after policy news"
    assert shown.why == "after: 하정우, 초대 AI수석 임명 (and 1 more)"
    assert shown.story == "story-1"
    assert shown.move is not None and shown.move.change_pct == 15.25


def test_a_stale_source_signal() -> None:
    row = _row(
        "source_stale",
        {
            "source": "yonhap",
            "last_success_at": T0.isoformat(),
            "interval_seconds": 600,
            "missed_intervals": 6,
            "last_error": "timeout: no answer in 30s",
        },
        headline="",
        subject="yonhap",
    )
    shown = alert_signal(row)
    assert shown.title == "yonhap has not answered for 6 polling intervals"
    assert (shown.source, shown.why) == ("yonhap", "timeout: no answer in 30s")


@pytest.mark.parametrize("kind", ["news", "move", "policy_move", "source_stale", "future_kind"])
@pytest.mark.parametrize(
    "explanation",
    [{}, {"quote": None, "move": "x", "themes": [1], "rules": [None], "matched": 3}],
)
def test_missing_or_odd_keys_fall_back_to_the_headline(
    kind: str, explanation: dict[str, Any]
) -> None:
    row = _row(kind, explanation, headline="what the rules wrote", event_time=T0)
    shown = alert_signal(row)
    assert shown.title == "what the rules wrote"
    assert shown.event_time == datetime(2025, 6, 18, 1, 0, tzinfo=UTC)
