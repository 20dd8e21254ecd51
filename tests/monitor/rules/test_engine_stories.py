"""The engine's stories: copies in either language raise one signal, before and after a
restart, and two stories about one man on one day stay two."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.rules.engine import RulesEngine
from monitor.rules.model import Ruleset, load_rules
from monitor.stored import StoredItem, StoryCopy

T0 = datetime(2025, 6, 16, 1, 30, tzinfo=UTC)
KOREAN = "[속보] 네이버 하정우, 대통령실 AI수석 발탁"
ENGLISH = "Naver's Ha Jung-woo named presidential AI secretary - Reuters"
RETITLED = "대통령실 AI수석에 네이버 하정우 발탁(종합)"
OTHER = "하정우 AI수석, 네이버 방문해 스타트업 간담회"


@pytest.fixture(scope="module")
def ruleset() -> Ruleset:
    return load_rules(None)


def item(n: int, title: str, when: datetime) -> StoredItem:
    return StoredItem(
        id=n,
        source=f"feed{n}",
        external_id=f"x{n}",
        url=f"https://news.example/{n}",
        title=title,
        summary="",
        author=None,
        language=None,
        published_at=when,
        date_estimated=False,
        fetched_at=when,
    )


def test_a_korean_story_and_its_english_report_raise_one_signal(ruleset: Ruleset) -> None:
    engine = RulesEngine(ruleset)
    batch = [
        item(1, KOREAN, T0),
        item(2, ENGLISH, T0 + timedelta(hours=3)),
        item(3, RETITLED, T0 + timedelta(hours=5)),
    ]
    judgement = engine.judge_items(batch, now=T0 + timedelta(hours=6))
    assert len(judgement.facts) == 3
    assert len({f.cluster for f in judgement.facts}) == 1
    # One dedup key: the store keeps the first signal and links every copy to it.
    keys = {s.dedup_key for s in judgement.signals}
    assert len(keys) == 1
    assert {i for _, i in judgement.links} == {1, 2, 3}


def test_after_a_restart_the_english_report_joins_the_korean_story(ruleset: Ruleset) -> None:
    before = RulesEngine(ruleset)
    (first,) = before.judge_items([item(1, KOREAN, T0)], now=T0).facts
    # A new process: the stored copies, as db.signals.recent_story_copies reads them.
    after = RulesEngine(ruleset)
    after.restore([StoryCopy(KOREAN, T0, first.cluster)], now=T0 + timedelta(hours=9))
    late = after.judge_items(
        [item(2, ENGLISH, T0 + timedelta(hours=8))], now=T0 + timedelta(hours=9)
    )
    (facts,) = late.facts
    assert facts.cluster == first.cluster
    assert {s.dedup_key for s in late.signals} == {f"news:{first.cluster}"}


def test_two_stories_about_one_man_on_one_day_raise_two_signals(ruleset: Ruleset) -> None:
    engine = RulesEngine(ruleset)
    judgement = engine.judge_items(
        [item(1, KOREAN, T0), item(2, OTHER, T0 + timedelta(hours=2))],
        now=T0 + timedelta(hours=2),
    )
    assert len(judgement.facts) == 2
    assert len({f.cluster for f in judgement.facts}) == 2
    assert len({s.dedup_key for s in judgement.signals}) == 2
