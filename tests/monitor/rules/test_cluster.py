"""Story keys and clusters: syndicated copies group, different stories do not."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta

import pytest

from monitor.rules import cluster
from monitor.rules.cluster import (
    Headline,
    StoryClusters,
    bigrams,
    headline_words,
    jaccard,
    link,
    story_key,
)
from monitor.rules.engine import story_tags
from monitor.rules.match import tag
from monitor.rules.model import Ruleset, load_rules
from monitor.timefmt import KST

T0 = datetime(2025, 6, 16, 10, 30, tzinfo=KST)

APPOINTMENT = "하정우 네이버 센터장, 대통령실 첫 AI미래기획수석 임명"


KEY = "하정우네이버센터장대통령실첫ai미래기획수석임명"


@pytest.mark.parametrize(
    ("title", "key"),
    [
        (APPOINTMENT, KEY),
        ("[속보] " + APPOINTMENT, KEY),
        ("【단독】" + APPOINTMENT + "(종합)", KEY),
        (APPOINTMENT + " - 연합뉴스", KEY),
        (APPOINTMENT + " - 조선비즈 - Chosun Biz", KEY),
        ("Naver shares surge: Korea Herald", "naversharessurge"),
        ("Naver shares surge: The Korea Times", "naversharessurge"),
        # A colon that leads into the headline is kept.
        ("Naver: shares surge", "naversharessurge"),
        ("Samsung: Record Profit", "samsungrecordprofit"),
        ("AI 수석: 첫 과제는 Korea", "ai수석첫과제는korea"),
        ("Naver shares surge 15% | Reuters", "naversharessurge15"),
        ("ＮＡＶＥＲ  shares   surge 15%!", "naversharessurge15"),
        # A long tail after " - " is the headline's own, not an outlet.
        (
            "AI 기본법 통과 - 업계는 규제 완화 요구 목소리 커져",
            "ai기본법통과업계는규제완화요구목소리커져",
        ),
        # Only tags: keep them rather than return an empty key.
        ("[속보]", "속보"),
    ],
)
def test_story_key(title: str, key: str) -> None:
    assert story_key(title) == key


@pytest.mark.parametrize(
    ("title", "words"),
    [
        # Particles and endings off, never below two syllables (회의 stays).
        ("네이버가 회의를 열었다", {"네이버", "회의", "열었"}),
        ("하정우, AI수석에 임명됐다", {"하정우", "ai", "수석", "임명"}),
        ("임명돼 (2보)", {"임명"}),
        # A particle split off a Latin word is no word.
        ("AI는 GPU를", {"ai", "gpu"}),
        # English stemmed, the possessive and the outlet after a colon gone.
        ("Naver's Ha named AI secretary: Korea Herald", {"naver", "ha", "name", "ai", "secretari"}),
        # Amounts as one number in either language.
        ("목표주가 27만원으로 상향", {"목표주", "270000", "상향"}),
        ("target price of 270,000 won", {"target", "price", "270000", "won"}),
        ("AI에 100조 투자", {"ai", "100000000000000", "투자"}),
        ("$100 trillion for AI", {"100000000000000", "ai"}),
        # How a story is told and the newsroom's commonest words count for nothing.
        ("[속보] 정부, 소버린 AI 전략 발표", {"소버린", "ai", "전략"}),
        ("Government says it will announce plan", set()),
    ],
)
def test_headline_words(title: str, words: set[str]) -> None:
    assert headline_words(title) == words


def test_bigrams_and_jaccard() -> None:
    assert bigrams("abc") == frozenset({"ab", "bc"})
    assert bigrams("a") == frozenset({"a"})
    assert bigrams("") == frozenset()
    assert jaccard(bigrams("abcd"), bigrams("abcd")) == 1.0
    assert jaccard(frozenset(), frozenset()) == 1.0


SAME_STORY = [
    APPOINTMENT,
    "[속보] " + APPOINTMENT,
    "[단독] " + APPOINTMENT + " - 한국경제",
    APPOINTMENT + " | 매일경제",
    "(종합) " + APPOINTMENT.replace(",", "…"),
    # Near-duplicates: a changed particle, a dropped word.
    "하정우 네이버 센터장, 대통령실 첫 AI미래기획수석에 임명",
    "하정우 네이버 센터장 대통령실 첫 AI미래기획수석 임명돼",
]

OTHER_STORIES = [
    "JP모건, 네이버 목표주가 27만원으로 상향…비중확대",
    "네이버 주가 15% 급등…외국인 순매수",
    "카카오 52주 신고가 경신",
    "하정우 주연 영화 개봉 첫 주 흥행 1위",
    "대통령실, 첫 AI미래기획수석 후보군 검토",
]


def test_syndicated_copies_group_and_other_stories_do_not() -> None:
    clusters = StoryClusters()
    ids = [
        clusters.assign(title, T0 + timedelta(minutes=10 * n)) for n, title in enumerate(SAME_STORY)
    ]
    assert len(set(ids)) == 1
    others = [clusters.assign(title, T0 + timedelta(hours=1)) for title in OTHER_STORIES]
    assert len(set(others)) == len(OTHER_STORIES)
    assert ids[0] not in others
    # A headline seen again verbatim (after its tags go) is not remembered twice.
    distinct = {story_key(t) for t in SAME_STORY + OTHER_STORIES}
    assert len(distinct) < len(SAME_STORY) + len(OTHER_STORIES)
    assert len(clusters) == len(distinct)


def brute_force(titles: list[str], threshold: float) -> list[str]:
    """Cluster by comparing each headline with every earlier one (the definition)."""
    seen: list[tuple[Headline, str]] = []
    out = []
    for n, title in enumerate(titles):
        headline = Headline.of(title)
        best, cluster = 0.0, f"new{n}"
        for other, cid in seen:
            score = link(headline, other, threshold)
            if score > best:
                best, cluster = score, cid
        seen.append((headline, cluster))
        out.append(cluster)
    return out


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.95])
def test_the_index_finds_what_comparing_with_every_headline_finds(threshold: float) -> None:
    # Variants of a few stories: words dropped, particles changed, outlets appended.
    words = [
        "하정우", "네이버", "센터장", "대통령실", "첫",
        "AI미래기획수석", "임명", "카카오", "목표주가", "상향",
    ]  # fmt: skip
    titles = []
    for n in range(300):
        picked = [w for i, w in enumerate(words) if (n >> (i % 9)) & 1 or i % 4 == n % 4]
        titles.append(" ".join(picked) + (" - 한국경제" if n % 3 == 0 else ""))
    # Every candidate looked at: the index alone must not lose a near-duplicate. (Ten
    # words in 300 headlines would all be too common to count: not what this is about.)
    clusters = StoryClusters(
        threshold=threshold,
        candidates=len(titles),
        feature_reads=len(titles),
        common_min=len(titles),
    )
    got = [clusters.assign(t, T0) for t in titles]
    expected = brute_force(titles, threshold)
    # Same partition: two headlines share a cluster in one exactly when in the other.
    assert len(set(got)) == len(set(expected))
    assert {(a, b) for a, b in zip(got, expected, strict=True)} == {
        (got[expected.index(e)], e) for e in expected
    }


def test_a_copy_finds_its_story_after_a_busy_hour_of_similar_headlines() -> None:
    clusters = StoryClusters()
    story = clusters.assign(SAME_STORY[0], T0)
    # Two hundred other headlines sharing its common words, then the copy.
    for n in range(200):
        clusters.assign(f"대통령실 첫 AI 정책 회의 {n}차 개최", T0 + timedelta(seconds=n))
    assert clusters.assign(SAME_STORY[1], T0 + timedelta(hours=1)) == story


def test_add_restores_a_cluster_after_a_restart() -> None:
    before = StoryClusters()
    cluster = before.assign(SAME_STORY[0], T0)
    before.assign(SAME_STORY[1], T0 + timedelta(minutes=5))  # the same key: not kept
    after = StoryClusters()
    after.add(SAME_STORY[0], T0, cluster)
    after.add(SAME_STORY[1], T0 + timedelta(minutes=5), cluster)
    assert len(after) == len(before) == 1
    assert after.assign(SAME_STORY[3], T0 + timedelta(hours=2)) == cluster
    assert after.assign(OTHER_STORIES[0], T0) != cluster


def test_the_window_is_on_event_time() -> None:
    clusters = StoryClusters()
    first = clusters.assign("[속보] 코스피 3000 돌파", T0)
    # Within 48 h (either side: items arrive out of order) it is the same story …
    assert clusters.assign("코스피 3000 돌파 - 연합뉴스", T0 + timedelta(hours=47)) == first
    assert clusters.assign("코스피 3000 돌파", T0 - timedelta(hours=20)) == first
    # … a month later the same words are news again.
    assert clusters.assign("[속보] 코스피 3000 돌파", T0 + timedelta(days=30)) != first


def test_cluster_ids_are_stable_across_instances_and_prune_forgets() -> None:
    a, b = StoryClusters(), StoryClusters()
    assert a.assign(APPOINTMENT, T0) == b.assign("[속보] " + APPOINTMENT, T0)
    a.prune(T0 + timedelta(days=3))
    assert len(a) == 0
    assert len(b) == 1


def test_refuses_naive_times_and_bad_settings() -> None:
    with pytest.raises(ValueError, match="naive"):
        StoryClusters().assign(APPOINTMENT, datetime(2025, 6, 16, 10, 30))
    with pytest.raises(ValueError):
        StoryClusters(threshold=0)
    with pytest.raises(ValueError):
        StoryClusters(window=timedelta(0))
    with pytest.raises(ValueError):
        StoryClusters(max_headlines=0)


def _distinct_headline(n: int) -> str:
    # Made-up words of random syllables: headlines that share nothing, each its own story.
    rng = random.Random(n)
    return " ".join("".join(chr(0xAC00 + rng.randrange(11172)) for _ in range(3)) for _ in range(4))


def test_the_window_holds_at_most_max_headlines_and_forgets_the_earliest() -> None:
    clusters = StoryClusters(max_headlines=50)
    first = clusters.assign("[속보] 코스피 3000 돌파", T0)
    ids = [
        clusters.assign(_distinct_headline(n), T0 + timedelta(minutes=n + 1)) for n in range(120)
    ]
    assert len(set(ids)) == len(ids)
    assert len(clusters) == 50
    # The newest 50 are held, in every index: a copy of one joins it …
    assert clusters.oldest() == T0 + timedelta(minutes=71)
    assert (
        clusters.assign(_distinct_headline(119) + " - 연합뉴스", T0 + timedelta(hours=2))
        == ids[119]
    )
    assert clusters.assign(_distinct_headline(70), T0 + timedelta(minutes=71)) == ids[70]
    # … while the earliest, forgotten, is a new story when it comes again.
    assert clusters.assign("코스피 3000 돌파 - 연합뉴스", T0 + timedelta(hours=2)) != first
    assert len(clusters) == 50
    # What was forgotten left no posting behind: every index holds only members.
    held = set(clusters._members.values())
    for index in (clusters._by_key, clusters._by_gram, clusters._by_feature):
        assert all(posting for posting in index.values())
        assert {m for posting in index.values() for m in posting} <= held


def test_the_bound_forgets_by_event_time_not_arrival() -> None:
    clusters = StoryClusters(max_headlines=3)
    late = clusters.assign(_distinct_headline(0), T0 + timedelta(hours=5))
    for n in range(1, 4):  # earlier items arriving after it (a backfilled feed)
        clusters.assign(_distinct_headline(n), T0 + timedelta(hours=n))
    assert len(clusters) == 3
    assert clusters.oldest() == T0 + timedelta(hours=2)
    assert clusters.assign(_distinct_headline(0), T0 + timedelta(hours=5)) == late


def test_prune_forgets_the_expired_and_keeps_the_rest() -> None:
    clusters = StoryClusters()
    for n in range(10):
        clusters.assign(_distinct_headline(n), T0 + timedelta(hours=n))
    clusters.prune(T0 + timedelta(hours=48 + 4, minutes=30))
    assert len(clusters) == 5
    assert clusters.oldest() == T0 + timedelta(hours=5)
    held = set(clusters._members.values())
    assert {m for posting in clusters._by_feature.values() for m in posting} == held


def test_the_bigram_ranks_hold_what_the_window_holds_and_no_more() -> None:
    clusters = StoryClusters(max_headlines=10)
    for n in range(30):  # 11 bigrams a headline, nearly all new
        clusters.assign(_distinct_headline(n), T0 + timedelta(minutes=n))
    held = [m.headline for m in clusters._members.values()]
    holders = Counter(gram for headline in held for gram in headline.grams)
    assert {gram: entry & cluster._HOLDERS for gram, entry in clusters._ranks.items()} == holders
    sets = Counter(words for h in held for words in h.sets)
    assert clusters._set_holders == sets  # the sets of the 10 held, not of the 20 forgotten
    clusters.prune(T0 + timedelta(days=3))
    assert clusters._ranks == {} and clusters._sets == {}


def test_the_window_holds_one_copy_of_equal_sets_and_lets_it_go_with_its_headlines(
    ruleset: Ruleset,
) -> None:
    # Two stories of one beat: the same company, phrases in common, different words.
    titles = [
        "네이버, 소버린 AI 데이터센터 투자 확대",
        "네이버 소버린 AI 데이터센터 부지 선정 착수",
    ]
    clusters = StoryClusters()
    for n, title in enumerate(titles):
        clusters.assign(title, T0 + timedelta(hours=n), story_tags(tag(title, "", ruleset)))
    first, second = (m.headline for m in clusters._members.values())
    assert first.entities == second.entities and first.entities  # the test's premise
    assert first.entities is second.entities
    assert first.phrases[:2] == second.phrases[:2]  # e:naver, t:ai-word
    assert all(a is b for a, b in zip(first.phrases[:2], second.phrases[:2], strict=True))
    assert first.anchors is second.anchors  # both empty
    assert first.rest != second.rest
    # What is shared is the same as what each headline alone makes of its title.
    alone = Headline.of(titles[1], story_tags(tag(titles[1], "", ruleset)))
    assert (second.entities, second.themes, second.phrases, second.rest, second.anchors) == (
        alone.entities,
        alone.themes,
        alone.phrases,
        alone.rest,
        alone.anchors,
    )
    assert clusters._set_holders[first.entities] == 2
    assert clusters._set_holders[first.rest] == 1
    clusters.prune(T0 + timedelta(hours=48, minutes=30))  # the first forgotten
    assert clusters._set_holders[second.entities] == 1
    assert first.rest not in clusters._sets
    clusters.prune(T0 + timedelta(days=3))
    assert clusters._sets == {} and clusters._set_holders == {}


def _old_stem(token: str) -> str:
    # The definition: the longest ending that leaves two syllables, at most twice.
    for _ in range(cluster._MAX_ENDINGS):
        for ending in sorted(cluster._ENDINGS, key=len, reverse=True):
            if token.endswith(ending) and len(token) - len(ending) >= 2:
                token = token[: -len(ending)]
                break
        else:
            break
    return token


def test_korean_endings_come_off_as_the_longest_first_definition_says() -> None:
    rng = random.Random(3)
    endings = list(cluster._ENDINGS)
    tokens = [APPOINTMENT, "회의", "회의를", "임명됐다", "추진한다", "에서", "에게서"]
    for _ in range(3000):
        stem = "".join(chr(0xAC00 + rng.randrange(11172)) for _ in range(rng.randint(1, 3)))
        tokens.append(stem + "".join(rng.choice(endings) for _ in range(rng.randint(0, 3))))
    for token in tokens:
        if token not in cluster._ENDING_SET:
            assert cluster._stem(token) == _old_stem(token), token


TWO_WORDS = "인공지능 반도체 엔비디아 급락"


def test_a_copy_of_a_story_of_two_words_besides_the_common_ones_joins_it() -> None:
    clusters = StoryClusters()
    story = clusters.assign(TWO_WORDS, T0)
    # A hundred more on the same two words: they become too common to count.
    for n in range(100):
        clusters.assign("인공지능 반도체 " + _distinct_headline(n), T0 + timedelta(seconds=n))
    assert clusters.common(["인공지능", "반도체", "엔비디아"]) == {"인공지능", "반도체"}
    # Reordered, a particle on: no near-verbatim copy, and the two words left once the
    # common go are all either says.
    copy = "엔비디아가 급락…인공지능 반도체"
    assert jaccard(bigrams(story_key(copy)), bigrams(story_key(TWO_WORDS))) < 0.8
    assert clusters.assign(copy, T0 + timedelta(hours=1)) == story


# Near-template news: one company, one topic, an amount and a verb, in every headline,
# then words of its own (made-up words of common syllables), as a flood of one policy
# story's coverage reads.
_ORGS = ("네이버", "카카오", "삼성전자", "SK하이닉스", "LG전자", "과학기술정보통신부", "국토교통부")
_VERBS = ("검토", "확대", "합의", "철회", "강화", "연기", "착수", "보류")
_SYLLABLES = [chr(c) for c in range(0xAC00, 0xD7A4, 28)]


def _template_headline(rng: random.Random) -> str:
    words = " ".join(
        "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(4)
    )
    return (
        f"{rng.choice(_ORGS)}, AI 반도체 {rng.randint(1, 99)}조원 지원 {rng.choice(_VERBS)}…{words}"
    )


@pytest.fixture(scope="module")
def ruleset() -> Ruleset:
    return load_rules(None)


def test_a_late_copy_joins_its_story_in_a_flood_of_template_headlines(ruleset: Ruleset) -> None:
    clusters = StoryClusters()

    def assign(title: str, when: datetime) -> str:
        return clusters.assign(title, when, story_tags(tag(title, "", ruleset)))

    story = assign("네이버, AI 반도체 22조원 지원 검토…갸겨뇨 뎌려 며벼셔 져쳐켜", T0)
    rng = random.Random(11)
    flood = [assign(_template_headline(rng), T0 + timedelta(seconds=20 * n)) for n in range(3000)]
    assert len(set(flood)) == len(flood) and story not in flood
    before = clusters.comparisons
    copies = [
        # another outlet's: words reordered, a particle, a tag and its name
        "[속보] 갸겨뇨 뎌려 며벼셔 져쳐켜…네이버가 AI 반도체 22조원 지원 검토 - 뉴스1",
        # near-verbatim: the own words run together, one syllable changed
        "네이버 AI반도체 22조원 지원 검토…갸겨뇨뎌려 며벼셔 져쳐쿄",
    ]
    for copy in copies:
        assert assign(copy, T0 + timedelta(hours=17)) == story
    # Every headline of the flood shares the company, the topic or the amount and the
    # verb with hundreds of others; the copies are compared with a few headlines only
    # (their own words are rare), not with those.
    assert clusters.comparisons - before <= 4 * len(copies)
