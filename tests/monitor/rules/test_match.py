"""monitor.rules.match.Matcher: folding, boundaries, particles, spacing, overlaps.

Every test runs twice: with the C scanner (monitor/rules/_scan.c) and with the Python
path over ahocorasick-rs that stands in for it where it is not built.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Iterator

import pytest

from monitor.rules import match
from monitor.rules.match import (
    PARTICLES,
    Hit,
    Matcher,
    fold_text,
    spacing_variants,
)
from monitor.rules.model import SEPARATOR

TERMS = {
    "naver": ["네이버", "NAVER"],
    "kakao": ["카카오", "Kakao"],
    "kakaobank": ["카카오뱅크", "Kakao Bank"],
    "basic-act": ["인공지능 기본법", "AI 기본법", "AI Basic Act"],
    "ai": ["AI"],
    "gpu": ["GPU"],
    "appoint": ["임명"],
    "ha": ["하정우"],
    "trillion": ["100조 원"],
    "dc": ["데이터 센터", "data center"],
    "china": ["China's AI"],
}


@pytest.fixture(scope="module", params=["native", "python"], autouse=True)
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Which scan Matcher.build gives for the tests of this module."""
    if request.param == "native" and match._scan is None:
        pytest.skip("the C scanner is not built in this install")
    off = match._NATIVE_OFF
    match._NATIVE_OFF = request.param == "python"
    yield request.param
    match._NATIVE_OFF = off


@pytest.fixture(scope="module")
def matcher(implementation: str) -> Matcher:
    # Each id its own group, so that overlapping terms of different ids all show.
    built = Matcher.build(TERMS, groups={})
    assert built.native is (implementation == "native")
    return built


def ids(matcher: Matcher, text: str) -> list[str]:
    return [h.term_id for h in matcher.find(text)]


def strict(text: str) -> str:
    """What folding must give: whole-text NFKC, case folding, whitespace runs as one."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold())


# --- the particle list --------------------------------------------------------------


def test_particle_list_has_no_duplicates_and_is_hangul() -> None:
    assert len(set(PARTICLES)) == len(PARTICLES)
    assert all(re.fullmatch("[가-힣]+", p) for p in PARTICLES)


# Left out on purpose: they would let compounds through (투자자, 기업, 카카오게임즈).
@pytest.mark.parametrize("syllable", ["자", "기", "게", "서", "어", "요", "원", "장"])
def test_a_syllable_that_is_no_particle_keeps_the_name_inside_a_word(
    matcher: Matcher, syllable: str
) -> None:
    assert ids(matcher, f"오늘 네이버{syllable} 발표") == []
    assert ids(matcher, f"카카오{syllable}.") == []


@pytest.mark.parametrize("particle", PARTICLES)
def test_every_particle_attaches_to_a_name(matcher: Matcher, particle: str) -> None:
    assert ids(matcher, f"오늘 네이버{particle} 발표") == ["naver"]
    assert ids(matcher, f"네이버{particle}.") == ["naver"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # chains of particles and endings, then the word ends
        ("네이버에서도 신중론", ["naver"]),
        ("카카오와의 협력", ["kakao"]),
        ("카카오로부터의 투자", ["kakao"]),
        ("네이버에서는", ["naver"]),
        ("하정우였다", ["ha"]),
        ("하정우이지만", ["ha"]),
        ("장관 임명됐다", ["appoint"]),
        ("장관 임명되었다고", ["appoint"]),
        ("장관을 임명했으나", ["appoint"]),
        ("장관을 임명하겠다", ["appoint"]),
        ("임명된 장관", ["appoint"]),
        ("임명한다는 소식", ["appoint"]),
        ("데이터센터를", ["dc"]),
        ("100조 원을 투입", ["trillion"]),
        # not a particle: another word
        ("카카오뱅크", ["kakaobank"]),
        ("카카오게임즈 신작", []),
        ("카카오모빌리티", []),
        ("카카오인베스트먼트", []),
        ("카카오도시락", []),
        ("네이버웹툰", []),
        ("임명식 거행", []),
        ("임명장", []),
        ("데이터센터장", []),
        ("100조원대 시장", []),
    ],
)
def test_particles_and_what_is_not_one(matcher: Matcher, text: str, expected: list[str]) -> None:
    assert ids(matcher, text) == expected


# --- boundaries ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Hangul: a syllable before the term puts it inside a word
        ("하네이버", []),
        ("대카카오", []),
        ("박하정우", []),
        ("한국인공지능 기본법", []),
        ("美네이버", ["naver"]),
        ("(네이버)", ["naver"]),
        ("‘카카오’", ["kakao"]),
        ("「하정우」", ["ha"]),
        # Latin: letters and digits on either side put it inside a word
        ("SAID", []),
        ("maid AI", ["ai"]),
        ("AIR", []),
        ("OpenAI", []),
        ("AI-driven", ["ai"]),
        ("(AI)", ["ai"]),
        ("AI_lab", []),
        ("GPUDirect", []),
        ("GPUs", ["gpu"]),
        ("GPUes", ["gpu"]),
        ("GPUses", []),
        ("NAVER’s", ["naver"]),
        ("NAVERZ", []),
        ("data centers", ["dc"]),
        ("data centered", []),
        ("1AI", []),
        # a change of script is a boundary both ways
        ("AI기본법", ["basic-act", "ai"]),
        ("AI가", ["ai"]),
        ("네이버AI", ["naver", "ai"]),
        ("Naver는", ["naver"]),
        ("中카카오", ["kakao"]),
        ("韓AI", ["ai"]),
    ],
)
def test_word_boundaries(matcher: Matcher, text: str, expected: list[str]) -> None:
    assert ids(matcher, text) == expected


# --- spacing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "variants"),
    [
        ("인공지능 기본법", ["인공지능 기본법", "인공지능기본법"]),
        ("AI 기본법", ["ai 기본법", "ai기본법"]),
        ("AI기본법", ["ai기본법", "ai 기본법"]),
        ("100조 원", ["100조 원", "100조원", "100 조 원", "100 조원"]),
        ("EU AI Act", ["eu ai act"]),
        ("Ｎaver", ["naver"]),
        ("  data   center ", ["data center"]),
        ("China's AI", ["china's ai", "china\u2019s ai"]),
    ],
)
def test_spacing_variants(term: str, variants: list[str]) -> None:
    assert spacing_variants(term) == variants


def test_many_gaps_give_only_the_written_the_joined_and_the_spaced_form() -> None:
    term = "인공지능 산업 육성 및 신뢰 기반 조성 등에 관한 기본법"
    assert spacing_variants(term) == [
        "인공지능 산업 육성 및 신뢰 기반 조성 등에 관한 기본법",
        "인공지능산업육성및신뢰기반조성등에관한기본법",
    ]


@pytest.mark.parametrize(
    "text",
    [
        "인공지능 기본법 시행",
        "인공지능기본법 시행",
        "인공지능  기본법 시행",
        "인공지능\n기본법 시행",
        "인공지능\u00a0기본법 시행",
        "인공지능\u3000기본법 시행",
        "AI 기본법",
        "AI기본법에",
        "ＡＩ기본법",
        "ai basic act",
        "AI  Basic\tAct",
    ],
)
def test_spacing_in_text_does_not_matter(matcher: Matcher, text: str) -> None:
    assert "basic-act" in ids(matcher, text)


def test_a_term_written_without_its_space_does_not_find_the_spaced_text() -> None:
    joined = Matcher.build({"act": ["인공지능기본법"]})
    assert [h.term_id for h in joined.find("인공지능기본법")] == ["act"]
    # No way to know where a space may go inside Hangul: write the term with it.
    assert joined.find("인공지능 기본법") == []


# --- overlaps -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("카카오뱅크는", ["kakaobank"]),
        ("Kakao Bank said", ["kakaobank"]),
        ("Kakao said", ["kakao"]),
        ("카카오와 카카오뱅크", ["kakao", "kakaobank"]),
        ("AI기본법", ["basic-act"]),
        ("AI Basic Act", ["basic-act"]),
        ("AI and Kakao", ["ai", "kakao"]),
    ],
)
def test_the_longest_name_wins_within_a_group(text: str, expected: list[str]) -> None:
    one_group = Matcher.build(TERMS)
    assert [h.term_id for h in one_group.find(text)] == expected


def test_ids_in_different_groups_do_not_compete() -> None:
    split = Matcher.build(TERMS, groups={"kakao": "names", "kakaobank": "names"})
    assert [h.term_id for h in split.find("AI기본법")] == ["basic-act", "ai"]
    assert [h.term_id for h in split.find("Kakao Bank")] == ["kakaobank"]


def test_one_term_under_two_ids_reports_both() -> None:
    shared = Matcher.build({"body": ["국가인공지능위원회"], "theme": ["국가인공지능위원회"]})
    assert sorted(h.term_id for h in shared.find("국가인공지능위원회 출범")) == ["body", "theme"]


def test_a_rejected_longer_match_does_not_hide_a_shorter_one() -> None:
    m = Matcher.build({"ai": ["AI"], "act": ["AI Act"]})
    # "AI Act" is followed by letters ("AI Actually"): it fails, "AI" still stands.
    assert [h.term_id for h in m.find("AI Actually")] == ["ai"]


# --- hits and offsets ---------------------------------------------------------------


def test_hits_carry_offsets_surface_term_and_field(matcher: Matcher) -> None:
    assert matcher.find("오늘 네이버가 AI기본법을", field="title") == [
        Hit("naver", 3, 6, "네이버", "네이버", "title"),
        Hit("basic-act", 8, 13, "AI기본법", "AI 기본법", "title"),
        Hit("ai", 8, 10, "AI", "AI", "title"),
    ]


@pytest.mark.parametrize(
    ("text", "surface"),
    [
        ("㈜네이버의 발표", "네이버"),
        ("발표…네이버가", "네이버"),
        ("ＮＡＶＥＲ와", "ＮＡＶＥＲ"),
        ("Straße NAVER", "NAVER"),
        ("a  b  네이버", "네이버"),
        ("인공지능  기본법…", "인공지능  기본법"),
        ("e\u0301 ᄒ\u1161ᆫ 네이버", "네이버"),
        ("ㄱㅏ 카카오", "카카오"),
    ],
)
def test_offsets_point_into_the_original_text(matcher: Matcher, text: str, surface: str) -> None:
    hits = [h for h in matcher.find(text) if h.term_id != "ai"]
    assert len(hits) == 1
    assert hits[0].surface == surface == text[hits[0].start : hits[0].end]


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii",
        "한글만 있는 문장",
        "…발표",
        "㈜네이버 ㈜",
        "ＮＡＶＥＲ와 카카오",
        "e\u0301e",
        "한글 ㄱㅏ",
        "ᄒ\u1161ᆫ글",
        "Straße İstanbul",
        "a  b   c",
        "x \n\t y",
        "x\u00a0\u3000y",
        "  ",
        "a\u200bb",
    ],
)
def test_folding_is_nfkc_casefold_and_one_space(text: str) -> None:
    assert fold_text(text)[0] == strict(text)


def test_folding_and_offsets_on_random_texts() -> None:
    rng = random.Random(20250618)
    alphabet = [*"네이버카카오 AI기본법abc XYZ", "…", "㈜", "Ａ", "  ", "\n", "\u00a0", "\u3000"]
    alphabet += ["e\u0301", "ᄒ", "\u1161", "ᆫ", "ß", "İ", "ㄱ", "ㅏ", "“", "·", "，", "\t"]
    m = Matcher.build({"n": ["네이버"], "k": ["카카오"], "a": ["AI 기본법"], "x": ["xyz"]})
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert fold_text(text)[0] == strict(text), text
        for hit in m.find(text):
            assert hit.surface == text[hit.start : hit.end]
            assert strict(hit.surface).strip().replace(" ", "") in {
                "네이버",
                "카카오",
                "ai기본법",
                "xyz",
            }


# --- find_all -----------------------------------------------------------------------


def test_find_all_gives_what_find_gives_text_by_text(matcher: Matcher) -> None:
    texts = ["네이버가 AI기본법을", "", "Kakao Bank…  카카오는", "SAID", "GPU 확보"]
    expected = [matcher.find(t, field=str(i)) for i, t in enumerate(texts)]
    assert matcher.find_all(texts, fields=[str(i) for i in range(len(texts))]) == expected
    assert matcher.find_all(texts) == [matcher.find(t) for t in texts]
    assert matcher.find_all([]) == []


def test_no_match_spans_two_texts(matcher: Matcher) -> None:
    assert matcher.find_all(["인공지능", "기본법"]) == [[], []]
    found = matcher.find_all(["AI Basic", "Act"])
    assert [[h.term_id for h in hits] for hits in found] == [["ai"], []]


def test_the_separator_cannot_be_in_a_term() -> None:
    with pytest.raises(ValueError, match="may not contain"):
        Matcher.build({"x": [f"a{SEPARATOR}b"]})
    with pytest.raises(ValueError, match="fields and texts"):
        Matcher.build({"x": ["ab"]}).find_all(["a", "b"], fields=["title"])


def test_an_empty_matcher_finds_nothing() -> None:
    empty = Matcher.build({})
    assert len(empty) == 0
    assert empty.find("네이버") == []
    assert empty.find_all(["a", "b"]) == [[], []]
    with pytest.raises(ValueError, match="empty term"):
        Matcher.build({"x": ["   "]})
