"""monitor.rules.model: the default rules, validation errors, and user overrides."""

from __future__ import annotations

import re
import textwrap
from importlib import resources
from pathlib import Path

import pytest

from monitor.rules.match import tag
from monitor.rules.model import (
    JoinedRule,
    MoveRule,
    MoveSpec,
    NewsRule,
    RulesError,
    SourceHealthRule,
    load_rules,
    parse_rules_file,
)

HANGUL = re.compile("[가-힣]")
LATIN = re.compile("[A-Za-z]")


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


# --- the default set ----------------------------------------------------------------


def test_the_default_rules_ship_inside_the_package() -> None:
    assert resources.files("monitor.rules").joinpath("default.yaml").is_file()
    ruleset = load_rules(None)
    assert len(ruleset.files) == 1 and ruleset.files[0].name == "default.yaml"


def test_the_default_rules_hold_what_the_corpus_names() -> None:
    ruleset = load_rules(None)
    companies = {e.id: e.ticker for e in ruleset.entities.values() if e.kind == "company"}
    assert companies["naver"] == "035420"
    assert companies["kakao"] == "035720"
    assert companies["samsung-electronics"] == "005930"
    assert companies["sk-hynix"] == "000660"
    assert companies["sk-telecom"] == "017670"
    assert companies["kt"] == "030200"
    assert companies["lg-uplus"] == "032640"
    assert companies["lg-corp"] == "003550"
    assert ruleset.entities["naver"].sector == ruleset.entities["kakao"].sector == "ai-platform"
    assert ruleset.entities["ha-jung-woo"].related_tickers == ["035420"]
    assert {"ha-jung-woo", "lee-jae-myung"} <= {
        e.id for e in ruleset.entities.values() if e.kind == "person"
    }
    assert {"msit", "national-ai-committee"} <= {
        e.id for e in ruleset.entities.values() if e.kind == "body"
    }
    assert set(ruleset.themes) >= {
        "sovereign-ai",
        "ai-basic-act",
        "ai-investment",
        "gpu-compute",
        "ai-datacenter",
        "ai-committee",
        "ai-appointment",
        "foundation-model",
        "ai-talent",
        "china-ai",
        "platform-regulation",
        "target-price",
        "foreign-buying",
        "new-high",
    }
    kinds = {r.kind for r in ruleset.rules.values()}
    assert kinds == {"news", "move", "joined", "source_health", "disclosure", "disclosure_move"}


def test_every_default_theme_and_name_has_korean_and_english_forms() -> None:
    ruleset = load_rules(None)
    for theme in ruleset.themes.values():
        near = [*theme.near, *(theme.generic.near if theme.generic else [])]
        terms = [
            *theme.terms,
            *(theme.generic.terms if theme.generic else []),
            *(term for spec in near for part in spec.parts() for term in part),
        ]
        assert any(HANGUL.search(t) for t in terms), theme.id
        assert any(LATIN.search(t) and not HANGUL.search(t) for t in terms), theme.id
        assert len(terms) >= 5, theme.id
    for entity in ruleset.entities.values():
        assert any(HANGUL.search(a) for a in entity.aliases), entity.id
        assert any(LATIN.search(a) and not HANGUL.search(a) for a in entity.aliases), entity.id


def test_tickers_are_unique_and_the_move_rules_stay_quiet_on_ordinary_moves() -> None:
    ruleset = load_rules(None)
    tickers = [e.ticker for e in ruleset.entities.values() if e.ticker]
    assert len(tickers) == len(set(tickers))
    big = ruleset.rules["ai-platform-big-move"]
    assert isinstance(big, MoveRule) and big.change is not None
    # On 06-18 the KOSPI's +0.70 % and Kakao's +6.37 % (5.67 beyond it) are not big
    # moves on their own; Naver's +15.25 % (14.55 beyond) is.
    assert big.change.pct >= 10 and big.change.relative_to == "KOSPI"
    # After policy news a smaller move counts, but only for the stock the news is
    # about: the 06-16 news names Naver, so Kakao's 06-18 move, large enough, fires
    # nothing (tests/monitor/rules/test_evaluate.py).
    joined = ruleset.rules["policy-move"]
    assert isinstance(joined, JoinedRule) and isinstance(joined.move, MoveSpec)
    assert joined.move.change is not None and joined.move.change.pct <= 6.37 - 0.70
    assert joined.about == "entity"
    assert joined.window.trading_days_before >= 2  # 06-16 news, 06-18 move
    assert joined.severity == "critical"
    assert set(joined.news) <= {r.id for r in ruleset.news_rules()}
    # A 52-week high after policy news counts for the news's sector too: Kakao's on
    # 06-19, three trading days after the news.
    high = ruleset.rules["policy-high"]
    assert isinstance(high, JoinedRule) and isinstance(high.move, MoveSpec)
    assert high.move.new_extreme is not None and high.move.new_extreme.weeks == 52
    assert high.move.new_extreme.min_bars == 200  # the default: about ten months of sessions
    assert high.about == "either" and high.window.trading_days_before >= 3
    stale = ruleset.rules["source-stale"]
    assert isinstance(stale, SourceHealthRule) and stale.missed_intervals >= 1


# --- errors: file:line: field: problem ----------------------------------------------

ERRORS = [
    pytest.param("- just\n- a list\n", 1, "(top level)", "must be a mapping", id="not-a-mapping"),
    pytest.param("rules: [\n", 2, None, "invalid YAML", id="bad-yaml"),
    pytest.param("version: 2\n", 1, "version", "Input should be 1", id="version"),
    pytest.param("themes: []\nsurprise: 1\n", 2, "surprise", "Extra inputs", id="unknown-key"),
    pytest.param(
        """
        entities:
          - id: Naver Corp
            kind: company
            name_en: NAVER
            aliases: [네이버]
        """,
        2,
        "entities[0].id",
        "not a valid id: 'Naver Corp'",
        id="entity-id",
    ),
    pytest.param(
        """
        entities:
          - id: naver2
            kind: company
            name_en: NAVER
            ticker: 035420
            aliases: [네이버2]
        """,
        5,
        "entities[0].ticker",
        "must be quoted, e.g. '035420' (YAML read it as the number 15120)",
        id="unquoted-ticker",
    ),
    pytest.param(
        """
        entities:
          - id: someone
            kind: person
            name_en: Someone
            ticker: "035420"
            aliases: [누군가]
        """,
        2,
        "entities[0]",
        "only a company has a ticker",
        id="person-ticker",
    ),
    pytest.param(
        """
        entities:
          - id: acme
            kind: company
            name_en: Acme
            ticker: "12"
            aliases: [Acme]
        """,
        5,
        "entities[0].ticker",
        "not a KRX code or index name: '12'",
        id="bad-ticker",
    ),
    pytest.param(
        """
        entities:
          - id: acme
            kind: startup
            name_en: Acme
            aliases: [Acme]
        """,
        3,
        "entities[0].kind",
        "Input should be 'company', 'person' or 'body'",
        id="entity-kind",
    ),
    pytest.param(
        """
        entities:
          - id: acme
            kind: company
            name_en: Acme
            aliases: [Acme]
            sector: AI Platform
        """,
        6,
        "entities[0].sector",
        "not a valid sector tag",
        id="sector-tag",
    ),
    pytest.param(
        """
        themes:
          - id: empty
            name_en: Empty
            terms: []
        """,
        2,
        "themes[0]",
        "a theme needs terms, near or generic",
        id="theme-without-terms",
    ),
    pytest.param(
        """
        themes:
          - id: short
            name_en: Short
            terms: [인공지능, A]
        """,
        4,
        "themes[0].terms[1]",
        "term 'A' is too short",
        id="term-too-short",
    ),
    pytest.param(
        """
        themes:
          - id: sep
            name_en: Separator
            terms: ["a\u241eb"]
        """,
        4,
        "themes[0].terms[0]",
        "may not contain",
        id="term-with-separator",
    ),
    pytest.param(
        """
        rules:
          - id: r1
            severity: info
        """,
        2,
        "rules[0].kind",
        "missing (use news, move, joined, source_health, disclosure, disclosure_move)",
        id="rule-no-kind",
    ),
    pytest.param(
        """
        rules:
          - id: r1
            kind: alert
        """,
        3,
        "rules[0].kind",
        "unknown rule kind 'alert'",
        id="rule-bad-kind",
    ),
    pytest.param(
        """
        rules:
          - id: r1
            kind: news
            severity: urgent
            themes: {any: [sovereign-ai]}
        """,
        4,
        "rules[0].severity",
        "Input should be 'info', 'warning' or 'critical'",
        id="severity",
    ),
    pytest.param(
        """
        rules:
          - id: naver-only
            kind: news
            entities: {any: [naver]}
        """,
        2,
        "rules[0]",
        "a news rule needs a theme",
        id="news-without-theme",
    ),
    pytest.param(
        """
        rules:
          - id: r1
            kind: news
            themes:
              any: [sovereign-ai, sovereign]
        """,
        5,
        "rules[0].themes.any[1]",
        "unknown theme 'sovereign'",
        id="unknown-theme",
    ),
    pytest.param(
        """
        rules:
          - id: r1
            kind: news
            themes: {any: [sovereign-ai]}
            entities:
              none: [naver, navr]
        """,
        6,
        "rules[0].entities.none[1]",
        "unknown entity 'navr'",
        id="unknown-entity",
    ),
    pytest.param(
        """
        rules:
          - id: r1
            kind: news
            themes: {any: [sovereign-ai]}
            entities: {any: ["sector:biotech"]}
        """,
        5,
        "rules[0].entities.any[0]",
        "no entity or theme has sector 'biotech'",
        id="unknown-sector-ref",
    ),
    pytest.param(
        """
        rules:
          - id: r1
            kind: news
            themes: {any: [sovereign-ai]}
            fields: [title, title]
        """,
        2,
        "rules[0]",
        "fields lists a field twice",
        id="fields-twice",
    ),
    pytest.param(
        """
        rules:
          - id: r1
            kind: news
            themes: {any: [sovereign-ai]}
            languages: [ko, jp]
        """,
        5,
        "rules[0].languages[1]",
        "Input should be 'ko' or 'en'",
        id="language",
    ),
    pytest.param(
        """
        rules:
          - id: m1
            kind: move
            tickers: ["035420"]
        """,
        2,
        "rules[0]",
        "a move needs change, new_extreme or volume",
        id="move-no-condition",
    ),
    pytest.param(
        """
        rules:
          - id: m1
            kind: move
            change:
              pct: 0
        """,
        5,
        "rules[0].change.pct",
        "greater than 0",
        id="move-pct",
    ),
    pytest.param(
        """
        rules:
          - id: m1
            kind: move
            change: {pct: 5, relative_to: kospi}
        """,
        4,
        "rules[0].change.relative_to",
        "not a KRX code or index name: 'kospi'",
        id="move-relative-to",
    ),
    pytest.param(
        """
        rules:
          - id: m1
            kind: move
            volume: {multiple: 0.5}
        """,
        4,
        "rules[0].volume.multiple",
        "greater than or equal to 1",
        id="move-volume",
    ),
    pytest.param(
        """
        rules:
          - id: m1
            kind: move
            new_extreme: {side: high, min_bars: 0}
        """,
        4,
        "rules[0].new_extreme.min_bars",
        "greater than or equal to 1",
        id="move-extreme-min-bars",
    ),
    pytest.param(
        """
        rules:
          - id: m1
            kind: move
            sectors: [semis]
            new_extreme: {side: high}
        """,
        4,
        "rules[0].sectors[0]",
        "no entity or theme has sector 'semis'",
        id="move-sector",
    ),
    pytest.param(
        """
        rules:
          - id: j1
            kind: joined
            move: ai-platform-big-move
            window:
              trading_days_before: 0
              same_session: false
        """,
        5,
        "rules[0].window",
        "the window is empty",
        id="joined-empty-window",
    ),
    pytest.param(
        """
        rules:
          - id: j1
            kind: joined
            move: no-such-move
        """,
        4,
        "rules[0].move",
        "unknown move rule 'no-such-move'",
        id="joined-unknown-move",
    ),
    pytest.param(
        """
        rules:
          - id: j1
            kind: joined
            move: ai-policy
        """,
        4,
        "rules[0].move",
        "rule 'ai-policy' is a news rule, not a move rule",
        id="joined-move-is-news",
    ),
    pytest.param(
        """
        rules:
          - id: j1
            kind: joined
            move: {sectors: [ai-platform], change: {pct: 2}}
            news: [ai-policy, ai-platform-big-move]
        """,
        5,
        "rules[0].news[1]",
        "is a move rule, not a news rule",
        id="joined-news-is-move",
    ),
    pytest.param(
        """
        rules:
          - id: j1
            kind: joined
            move: {sectors: [ai-platform]}
        """,
        4,
        "rules[0].move",
        "a move needs change, new_extreme or volume",
        id="joined-inline-move",
    ),
    pytest.param(
        """
        rules:
          - id: s1
            kind: source_health
            missed_intervals: 0
        """,
        4,
        "rules[0].missed_intervals",
        "greater than or equal to 1",
        id="source-health",
    ),
    pytest.param(
        """
        rules:
          - id: dup
            kind: source_health
          - id: dup
            kind: source_health
        """,
        4,
        "rules[1].id",
        "'dup' is defined twice in this file",
        id="duplicate-id",
    ),
    pytest.param(
        """
        disabled: [ai-policy, ai-polcy]
        """,
        1,
        "disabled[1]",
        "no rule 'ai-polcy' to disable",
        id="disable-unknown",
    ),
    pytest.param(
        """
        disabled:
          - ai-appointment
        """,
        2,
        "disabled[0]",
        "rule 'ai-appointment' is used by joined rule 'policy-move': disable that too",
        id="disable-a-used-rule",
    ),
    pytest.param(
        """
        entities:
          - id: naver-fan
            kind: person
            name_en: A fan
            aliases: [열혈팬, 네이버]
        """,
        5,
        "entities[0].aliases[1]",
        "'네이버' is already a name of entity 'naver'",
        id="alias-taken",
    ),
    pytest.param(
        """
        themes:
          - id: naver
            name_en: Naver news
            terms: [네이버 뉴스]
        """,
        2,
        "themes[0].id",
        "'naver' is also the id of an entity",
        id="theme-id-is-entity",
    ),
]


@pytest.mark.parametrize(("text", "line", "field", "message"), ERRORS)
def test_errors_name_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str | None, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    error = str(caught.value)
    assert "\n" not in error
    prefix = f"{path}:{line}: " + (f"{field}: " if field else "")
    assert error.startswith(prefix), error
    assert message in error, error


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"missing\.yaml: cannot read"):
        load_rules(tmp_path / "missing.yaml")


def test_more_errors_are_counted(tmp_path: Path) -> None:
    path = write(
        tmp_path, "rules:\n  - {id: a, kind: news, severity: x}\n  - {id: B, kind: move}\n"
    )
    with pytest.raises(RulesError, match=r"\(and \d+ more\)$"):
        parse_rules_file(path)


# --- user files: add, replace, disable ----------------------------------------------


def test_a_user_file_adds_replaces_and_disables(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        themes:
          - id: sovereign-ai          # replaces the default theme, in its place
            name_en: Sovereign AI (narrow)
            terms: [소버린 AI]
          - id: quantum
            name_en: Quantum
            terms: [양자 컴퓨터, quantum computer]
        entities:
          - id: upstage
            kind: company
            name_en: Upstage
            aliases: [업스테이지, Upstage]
            sector: ai-platform
        rules:
          - id: ai-policy             # replaces the default rule
            kind: news
            severity: warning
            themes: {any: [sovereign-ai, quantum]}
          - id: quantum-naver
            kind: news
            severity: critical
            themes: {all: [quantum]}
            entities: {any: [naver]}
            fields: [title]
        disabled: [ai-platform-market, source-stale]
        """,
    )
    default = load_rules(None)
    ruleset = load_rules(path)
    assert ruleset.files[-1] == path
    assert list(ruleset.themes)[: len(default.themes)] == list(default.themes)
    assert list(ruleset.themes)[-1] == "quantum"
    assert ruleset.themes["sovereign-ai"].terms == ["소버린 AI"]
    assert "upstage" in ruleset.entities
    rules = list(ruleset.rules)
    assert "ai-platform-market" not in rules and "source-stale" not in rules
    assert rules[0] == "ai-policy" and rules[-1] == "quantum-naver"
    policy = ruleset.rules["ai-policy"]
    assert isinstance(policy, NewsRule) and policy.severity == "warning"

    def fired(title: str, summary: str = "") -> list[str]:
        return [f.rule_id for f in tag(title, summary, ruleset).news_rules_fired]

    assert fired("네이버, 양자 컴퓨터 연구") == ["ai-policy", "quantum-naver"]
    assert fired("네이버 발표", "양자 컴퓨터 연구") == ["ai-policy"]  # quantum-naver: title only
    assert fired("주권 AI 논의") == []  # no longer a term of sovereign-ai
    assert fired("업스테이지, 소버린 AI 모델 공개") == ["ai-policy", "ai-policy-platform"]
    assert tag("업스테이지 상장 추진", "", ruleset).sectors == {"ai-platform"}


def test_the_default_file_is_not_changed_by_loading_a_user_file(tmp_path: Path) -> None:
    load_rules(write(tmp_path, "disabled: [ai-platform-market]\n"))
    assert "ai-platform-market" in load_rules(None).rules


def test_conditions_any_all_none_terms_and_filters(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        rules:
          - id: all-of
            kind: news
            themes: {all: [sovereign-ai, ai-basic-act]}
          - id: none-of
            kind: news
            themes: {any: [sovereign-ai], none: [china-ai]}
          - id: own-terms
            kind: news
            terms: {any: [오픈소스 모델, open-source model], none: [광고]}
          - id: every-term
            kind: news
            terms: {all: [반도체, 수출]}
          - id: korean-yonhap
            kind: news
            themes: {any: [sovereign-ai]}
            sources: [yonhap]
            languages: [ko]
        disabled: [ai-policy, ai-policy-platform, ai-appointment, ai-platform-market,
                   ai-stock-market, ai-post, platform-enforcement, policy-move, policy-high]
        """,
    )
    ruleset = load_rules(path)

    def fired(title: str, **kwargs: str) -> list[str]:
        return [f.rule_id for f in tag(title, "", ruleset, **kwargs).news_rules_fired]

    # The default themes' generic terms (소버린 AI, AI 기본법, 딥시크) need a Korean actor.
    assert fired("정부, 소버린 AI와 AI 기본법") == ["all-of", "none-of"]
    assert fired("소버린 AI와 AI 기본법") == []
    assert fired("정부, 소버린 AI와 딥시크") == []
    assert fired("정부 소버린 AI", source="yonhap") == ["none-of", "korean-yonhap"]
    assert fired("정부 소버린 AI", source="hankyung") == ["none-of"]
    assert fired("Government's sovereign AI", source="yonhap") == ["none-of"]  # English
    assert fired("Government's sovereign AI", source="yonhap", language="ko") == [
        "none-of",
        "korean-yonhap",
    ]
    assert fired("네이버, 오픈소스 모델 공개") == ["own-terms"]
    assert fired("오픈소스 모델 광고") == []
    assert fired("반도체 수출 호조") == ["every-term"]
    assert fired("반도체 호조") == []
    explanation = dict(tag("New open-source models", "", ruleset).news_rules_fired)
    assert explanation == {"own-terms": "terms open-source model ('open-source model' in title)"}
