"""The rule language beyond phrases: near terms, generic terms that need an anchor,
entity context, title-only themes, sector tags and scores, each on a small rules file
of its own (no default rules) so that what a test shows is the feature alone."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.rules import RulesError
from monitor.rules.evaluate import news_facts
from monitor.rules.match import tag
from monitor.rules.model import Ruleset, merge_rules, parse_rules_file
from monitor.rules.score import score_news


def rules(tmp_path: Path, text: str) -> Ruleset:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return merge_rules([parse_rules_file(path)])


def fired(ruleset: Ruleset, title: str, summary: str = "") -> list[str]:
    return [f.rule_id for f in tag(title, summary, ruleset).news_rules_fired]


NEAR = """
themes:
  - id: buying
    name_en: Foreign buying
    near:
      - {all: [외국인, [순매수, 매수세]], within: 3}
rules:
  - {id: buying, kind: news, themes: {any: [buying]}}
"""


@pytest.mark.parametrize(
    ("title", "fires"),
    [
        ("외국인 순매수", True),
        ("외국인, 네이버 이틀째 순매수", True),  # a stock and a count in between
        ("네이버 순매수 나선 외국인", True),  # any order
        ("외국인이 사흘째 매수세", True),  # an alternative, with a particle
        ("외국인 관광객 급증…면세점 매출 회복 속 기관 순매수", False),  # too far apart
        ("순매수", False),  # one part alone
    ],
)
def test_near_terms_find_a_phrase_broken_by_other_words(
    tmp_path: Path, title: str, fires: bool
) -> None:
    assert fired(rules(tmp_path, NEAR), title) == (["buying"] if fires else [])


def test_near_terms_stay_in_one_sentence_of_a_summary(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, NEAR)
    assert fired(ruleset, "증시", "외국인 자금이 몰렸다. 순매수 규모는 컸다.") == []
    assert fired(ruleset, "증시", "오늘 외국인 순매수. 기관은 팔았다.") == ["buying"]
    hits = tag("외국인, 네이버 순매수", "", ruleset).themes["buying"]
    assert [h.surface for h in hits] == ["외국인", "순매수"]  # the parts, in order


ANCHORED = """
entities:
  - {id: gov, kind: body, name_en: Government, aliases: [정부, government],
     excludes: [미국 정부, US government]}
  - {id: naver, kind: company, name_en: NAVER, aliases: [네이버, Naver], sector: ai-platform}
anchors:
  - id: korea-policy
    entities: [kind:body]
    terms: [예산, budget]
    rejects: [미국, US]
    near:
      - {all: [[Korea, Seoul], [to, will]], within: 2}
themes:
  - id: compute
    name_en: Compute
    terms: [국가 AI 컴퓨팅 센터]
    generic:
      requires: korea-policy
      terms: [GPU]
rules:
  - {id: compute, kind: news, themes: {any: [compute]}}
"""


@pytest.mark.parametrize(
    ("title", "fires"),
    [
        ("국가AI컴퓨팅센터 입지 선정", True),  # a term that counts alone
        ("정부, GPU 1만장 확보", True),  # the generic term with a body
        ("GPU 예산 2배로", True),  # with a policy word of the anchor
        ("Korea to secure 10,000 GPUs", True),  # with its near term
        ("GPU 가격 급락", False),  # alone: a graphics card
        ("네이버, GPU 1만장 확보", False),  # a company is no anchor here
        ("미국 정부, GPU 수출 통제", False),  # another government: excluded as longer
        ("미국, GPU 예산 확대", False),  # the anchor's policy words void: another country
        ("US budget for GPU plants, Korea to respond", True),  # the near term still holds
    ],
)
def test_generic_terms_count_only_where_the_anchor_holds(
    tmp_path: Path, title: str, fires: bool
) -> None:
    assert fired(rules(tmp_path, ANCHORED), title) == (["compute"] if fires else [])


def test_the_anchors_that_hold_are_named_with_their_evidence(tmp_path: Path) -> None:
    tagging = tag("정부, GPU 예산 확대", "", rules(tmp_path, ANCHORED))
    assert [h.surface for h in tagging.anchors["korea-policy"]] == ["정부", "예산"]
    assert tag("GPU 가격", "", rules(tmp_path, ANCHORED)).anchors == {}


CONTEXT = """
entities:
  - id: ha
    kind: person
    name_en: Ha Jung-woo
    aliases: [하정우, Ha Jung-woo]
    context:
      within: 4
      requires: [AI, 수석, secretary]
      rejects: [영화, 주연, film, actor]
"""


@pytest.mark.parametrize(
    ("title", "summary", "is_him"),
    [
        ("하정우 AI수석, 국가전략 발표", "", True),
        ("Ha Jung-woo named AI secretary", "", True),
        ("하정우 주연 영화 개봉", "", False),  # a reject near the name
        ("하정우, 부산 나들이", "", False),  # nothing that says it is the official
        # In the title, a required word anywhere in it counts (title: true).
        ("대통령실 인사 발표…AI 정책 총괄 맡은 하정우", "", True),
        # In a summary, the words must stand near the name, in one sentence.
        ("동정", "하정우가 왔다. 많은 사람이 AI 이야기를 했다.", False),
        ("동정", "하정우 수석이 왔다.", True),
    ],
)
def test_context_decides_who_a_name_means(
    tmp_path: Path, title: str, summary: str, is_him: bool
) -> None:
    tagging = tag(title, summary, rules(tmp_path, CONTEXT))
    assert ("ha" in tagging.entities) is is_him


def test_a_rejected_mention_leaves_the_others(tmp_path: Path) -> None:
    summary = "배우 못지않은 입담. 영화 주연 하정우 얘기도."
    tagging = tag("하정우 AI 수석", summary, rules(tmp_path, CONTEXT))
    assert [h.field for h in tagging.entities["ha"]] == ["title"]


def test_a_title_only_theme_ignores_the_summary(tmp_path: Path) -> None:
    ruleset = rules(
        tmp_path,
        """
        themes:
          - {id: ai, name_en: AI, terms: [AI]}
          - {id: opinion, name_en: Opinion, terms: [사설, 칼럼], fields: [title]}
        rules:
          - {id: ai, kind: news, themes: {any: [ai], none: [opinion]}}
        """,
    )
    assert fired(ruleset, "[사설] AI 시대") == []
    assert fired(ruleset, "AI 정책 발표", "관련 칼럼은 B2면") == ["ai"]


def test_sector_tags_and_kinds_are_references(tmp_path: Path) -> None:
    ruleset = rules(
        tmp_path,
        """
        entities:
          - {id: hynix, kind: company, name_en: SK hynix, aliases: [SK하이닉스], ticker: "000660",
             sector: semiconductor, tags: [ai-stock]}
          - {id: gov, kind: body, name_en: Government, aliases: [정부]}
        themes:
          - {id: chips, name_en: Chips, terms: [AI 반도체]}
        rules:
          - {id: stock, kind: news, themes: {any: [chips]}, entities: {any: [sector:ai-stock]}}
          - {id: state, kind: news, themes: {any: [chips]}, entities: {any: ["kind:body"]}}
          - id: move
            kind: move
            sectors: [ai-stock]
            change: {pct: 5}
        """,
    )
    assert fired(ruleset, "SK하이닉스, AI 반도체 증산") == ["stock"]
    assert fired(ruleset, "정부, AI 반도체 지원") == ["state"]
    assert ruleset.ticker_sectors("000660") == {"semiconductor", "ai-stock"}


SCORED = """
entities:
  - {id: gov, kind: body, name_en: Government, aliases: [정부]}
  - {id: naver, kind: company, name_en: NAVER, aliases: [네이버], sector: ai-platform}
anchors:
  - {id: korea-policy, entities: [kind:body]}
themes:
  - {id: law, name_en: AI law, terms: [AI 기본법]}
  - {id: money, name_en: Budget, terms: [AI 예산]}
rules:
  - {id: law, kind: news, score: 40, themes: {any: [law, money]}}
  - {id: law-naver, kind: news, score: 50, themes: {any: [law]},
     entities: {any: [sector:ai-platform]}}
scoring:
  title: 15
  extra_theme: 5
  anchors: {korea-policy: 20}
  entities: {sector:ai-platform: 5}
  sources: {korea-kr: 10}
  warning: 70
  critical: 95
"""


def test_the_score_adds_its_evidence_and_severity_follows(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, SCORED)
    tagging = tag("정부, 네이버와 AI 기본법·AI 예산 논의", "", ruleset)
    fired_rules = [f.rule_id for f in tagging.news_rules_fired]
    score = score_news(tagging, fired_rules, ruleset, source="korea-kr")
    assert [(p.label, p.points) for p in score.parts] == [
        ("rule law-naver", 50),
        ("a theme in the title", 15),
        ("1 more theme", 5),
        ("anchor korea-policy", 20),
        ("names sector:ai-platform", 5),
        ("source korea-kr", 10),
    ]
    assert score.points == 100  # 105, capped
    when = datetime(2026, 3, 17, 1, 0, tzinfo=UTC)
    (signal,) = news_facts("1", "t", when, "c", tagging, ruleset, source="korea-kr").signals
    assert signal.severity == "critical"
    assert signal.explanation.score == 100  # type: ignore[union-attr]
    # Less evidence, a lower score, a lower severity (the rules say info).
    summary_only = tag("보도", "AI 기본법 관련", ruleset)
    (quiet,) = news_facts("2", "보도", when, "d", summary_only, ruleset).signals
    assert (quiet.severity, quiet.explanation.score) == ("info", 40)  # type: ignore[union-attr]
    warned = tag("AI 기본법 논의 본격화", "", ruleset)
    (loud,) = news_facts("3", "t", when, "e", warned, ruleset).signals
    assert (loud.severity, loud.explanation.score) == ("info", 55)  # type: ignore[union-attr]
    anchored = tag("정부, AI 기본법 논의", "", ruleset)
    (sure,) = news_facts("4", "t", when, "f", anchored, ruleset).signals
    assert (sure.severity, sure.explanation.score) == ("warning", 75)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        (
            """
            themes:
              - id: t
                name_en: T
                generic: {requires: nowhere, terms: [GPU]}
            """,
            "themes[0].generic.requires",
            "unknown anchor 'nowhere'",
        ),
        (
            """
            anchors:
              - {id: a, entities: [kind:ship]}
            """,
            "anchors[0].entities[0]",
            "unknown entity kind 'ship'",
        ),
        (
            """
            themes:
              - id: t
                name_en: T
                near: [{all: [외국인], within: 3}]
            """,
            "themes[0].near[0].all",
            "at least 2 items",
        ),
        (
            """
            entities:
              - {id: e, kind: person, name_en: E, aliases: [이름], context: {within: 3}}
            """,
            "entities[0].context",
            "a context needs requires or rejects",
        ),
        (
            """
            scoring:
              anchors: {missing: 10}
            """,
            "scoring.anchors.missing",
            "unknown anchor 'missing'",
        ),
        (
            """
            themes:
              - {id: t, name_en: T, terms: [가]}
            """,
            "themes[0].terms[0]",
            "too short",
        ),
    ],
)
def test_language_errors_name_the_field(
    tmp_path: Path, text: str, field: str, message: str
) -> None:
    with pytest.raises(RulesError) as caught:
        rules(tmp_path, text)
    error = str(caught.value)
    assert f": {field}: " in error and message in error, error
    assert error.startswith(str(tmp_path / "rules.yaml") + ":")


def test_one_han_character_is_a_term(tmp_path: Path) -> None:
    ruleset = rules(
        tmp_path,
        """
        themes:
          - {id: us, name_en: The US, terms: [美]}
        rules:
          - {id: us, kind: news, themes: {any: [us]}}
        """,
    )
    assert fired(ruleset, "美 상무부, 규정 개정") == ["us"]


def test_near_terms_in_a_long_text_full_of_their_parts(tmp_path: Path) -> None:
    ruleset = rules(
        tmp_path,
        """
        themes:
          - id: buying
            name_en: Foreign buying
            near: [{all: [외국인, 순매수], within: 3}]
          - id: seoul
            name_en: Seoul acts
            near: [{all: [Seoul, bans], within: 2, ordered: true}]
          - id: seoul-any
            name_en: Seoul, either way
            near: [{all: [Seoul, bans], within: 2}]
        rules:
          - {id: buying, kind: news, themes: {any: [buying]}}
          - {id: seoul, kind: news, themes: {any: [seoul]}}
          - {id: seoul-any, kind: news, themes: {any: [seoul-any]}}
        """,
    )
    # Thousands of each part, never close enough: found in one window pass, not
    # compared pair by pair.
    apart = " ".join(["외국인 가 나 다 라 마 바"] * 2000 + ["순매수 가 나 다 라 마 바"] * 2000)
    assert fired(ruleset, "시황", apart) == []
    assert fired(ruleset, "시황", apart + " 외국인 순매수") == ["buying"]
    # Order: "bans … Seoul" is not "Seoul bans"; either order counts without it.
    backwards = " ".join(["bans x Seoul."] * 3000)
    assert fired(ruleset, "news", backwards) == ["seoul-any"]
    assert fired(ruleset, "news", backwards + ". Seoul bans it.") == ["seoul", "seoul-any"]


def test_rejects_before_counts_only_words_in_front_of_the_name(tmp_path: Path) -> None:
    ruleset = rules(
        tmp_path,
        """
        entities:
          - id: gov
            kind: body
            name_en: Government
            aliases: [government]
            context: {within: 2, rejects: [Japan's, Chinese], rejects_before: true}
        """,
    )
    assert "gov" not in tag("Japan's government to fund chips", "", ruleset).entities
    # After the name, a foreign word is what the government acts on.
    assert "gov" in tag("government fines Chinese AI app", "", ruleset).entities


def test_a_users_scoring_sets_only_the_weights_it_names(tmp_path: Path) -> None:
    base = tmp_path / "base.yaml"
    base.write_text(textwrap.dedent(SCORED).lstrip("\n"), encoding="utf-8")
    mine = tmp_path / "mine.yaml"
    mine.write_text("scoring:\n  sources: {yonhap: 7}\n  title: 5\n", encoding="utf-8")
    merged = merge_rules([parse_rules_file(base), parse_rules_file(mine)])
    weights = merged.scoring
    assert (weights.title, weights.extra_theme, weights.warning) == (5, 5, 70)
    assert weights.sources == {"korea-kr": 10, "yonhap": 7}
    assert weights.anchors == {"korea-policy": 20}


def test_score_points_are_checked_where_they_are_written(tmp_path: Path) -> None:
    with pytest.raises(RulesError) as caught:
        rules(tmp_path, "scoring:\n  source_types: {government: -500}\n")
    assert ":2: scoring.source_types.government: " in str(caught.value)


def test_an_anchor_that_holds_by_a_theme_alone(tmp_path: Path) -> None:
    ruleset = rules(
        tmp_path,
        """
        anchors:
          - {id: tech, themes: [quantum]}
        themes:
          - id: quantum
            name_en: Quantum
            near: [{all: [양자, 컴퓨터], within: 2}]
          - id: chips
            name_en: Chips
            generic: {requires: tech, terms: [반도체]}
        rules:
          - {id: chips, kind: news, themes: {any: [chips]}}
        """,
    )
    # The anchor's theme is found by its near term, with no entity named.
    assert fired(ruleset, "양자 컴퓨터에 쓸 반도체 개발") == ["chips"]
    assert fired(ruleset, "반도체 개발") == []
