"""Story clustering: the same story from several outlets gets one cluster id.

Pure and in memory. :func:`story_key` normalises a headline so that syndicated copies
(``[속보]``/``[단독]`` retitles, ``(종합)`` updates, a trailing `` - 언론사``,
``| Outlet`` or ``: Korea Herald``) collapse to one key; :func:`headline_words` turns it
into a set of words, Korean particles and English inflections taken off, amounts
written as one number (27만원 and 270,000 won are 270000). What the matcher found in
the title (:class:`StoryTags`) turns the words it covered into *phrases*: the entity and
theme ids of each stretch that hits cover, so that ``AI수석`` and ``AI미래기획수석``, or
``하정우`` and ``Ha Jung-woo``, are one thing said. A headline's *units* are its
phrases and its other words; two phrases *match* when they share an id.

:class:`StoryClusters` assigns ids: a headline joins the story of an earlier one within
the window (48 h on event time) when one of these holds (:func:`link`):

1. the same key;
2. *near-verbatim*: character-bigram Jaccard ≥ 0.8 of the keys (spacing, a changed
   particle or two);
3. *same words*, both in one script: at least 3 units shared and ≥ 0.8 of the smaller
   headline's (or all units of both, at least 2), and ≥ 0.4 of the larger's (a
   reordered wire copy, particles, a short retitle, an added clause);
4. *same event, more said*, both in one script: two matched phrases with an entity and
   two with a theme, at least 3 units shared and ≥ 0.65 of the smaller's (a (종합)
   rewrite that adds context on both sides);
5. *across scripts* (Hangul against Latin, where no word is shared): the same entity
   set or the same theme set, and 3 phrases matched, or 2 and an *anchor* shared (a
   figure of two digits or more, or a Latin name no entity covered).

Words and ids that more than a fifth of the window's headlines have (and more than 20
of them: "AI" in a feed about AI policy, the government, a broad theme) count on
neither side: sharing them says nothing about being one story (StoryClusters.common).

And always: the entity sets are nested (one headline names no entity the other lacks,
unless it names every one the other does: a retitle drops names, it does not swap
them), and for rules 3 to 5 so are the theme sets; rules 4 and 5 want an entity and a
theme in common. A headline that several stories would take joins the most similar
(ties: the earliest).

Why these and not one bigram score: a wire copy with its words reordered changes most
bigrams across word boundaries (Jaccard near 0.5), a short retitle is contained in the
long one rather than like it, and an English report shares no character with the Korean
one. Words taken as sets survive reordering; containment survives a short retitle; the
ids the matcher resolved survive translation. The guards keep apart what merely shares
words: two stories about one company on one day share the entity and often a theme
(broad ones like "AI" nearly always) but not the rest, and the same ministry announcing
two things shares its name and little else. tests/monitor/rules/test_cluster_pairs.py
holds the table of pairs.

Candidates come from inverted indexes (the prefix bigrams for rule 2, the newest bigrams
first so that a template's are seldom among them; every word and id that is not common
for the others), kept in event-time order; a headline reads only the postings nearest
its own event time, so its cost is bounded however many headlines the window holds.
``StoryClusters.comparisons`` counts the pairs judged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import itertools
import math
import operator
import re
import sys
import unicodedata
from array import array
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import NamedTuple, TypeVar

import snowballstemmer

WINDOW = timedelta(hours=48)
# Headlines the window holds at most (by count as well as by time): past it the oldest
# by event time leave first. A few hundred items a day fire a news rule in the default
# feeds; a firehose of on-topic news would otherwise grow the window (about 4 KB a
# headline) for 48 h. What the bound costs in clustering is in docs/benchmarks.md.
MAX_HEADLINES = 10_000
THRESHOLD = 0.8
# Candidates looked at per prefix bigram of a headline, and headlines read per word,
# entity or theme of it (counting what they share is cheaper than comparing), see
# StoryClusters._candidates.
CANDIDATES = 16
FEATURE_READS = 4 * CANDIDATES

# Rules 3 to 5: see the module docstring.
WORDS_MIN_SHARED = 3
WORDS_SHORTER = 0.8
WORDS_LONGER = 0.4
# A word or id more than this share of the window's headlines have (and more than
# COMMON_MIN of them) is no evidence: see StoryClusters.common.
COMMON_SHARE = 0.2
COMMON_MIN = 20
FEATURES_MIN_SHARED = 3
FEATURES_SMALLER = 0.65

# Bracketed tags anywhere: [속보], [단독], (종합), (2보), 【…】, 〔…〕, <…>, 〈…〉, 《…》 has
# work titles in it and is left alone (its brackets go with the punctuation).
_BRACKETS = re.compile(r"\[[^\]]*\]|\([^)]*\)|【[^】]*】|〔[^〕]*〕|<[^>]*>|〈[^〉]*〉")
# A trailing source suffix: " - 한국경제", " | Reuters", " - 조선비즈 - Chosun Biz".
# Only a short tail (at most 4 words, 30 characters) after a spaced separator, so that a
# headline's own second half ("AI 기본법 통과 - 업계는 규제 완화 요구 목소리") is kept.
_SUFFIX = re.compile(r"\s+[-|–—]\s+(?:\S+(?:\s+\S+){0,3})\s*$")
_SUFFIX_MAX = 30
# ": Korea Herald", ": The Korea Times": after a colon only capitalised Latin words
# (checked before case folding), and only after three words or more, since a Korean
# headline's colon ("AI 수석: 첫 과제는") and an English one's ("Naver: shares surge",
# "Samsung: Record Profit") lead on into the headline itself.
_COLON_SUFFIX = re.compile(r"\s*:\s+(?:The\s+)?[A-Z][\w.&'-]*(?:\s+[A-Z][\w.&'-]*){0,3}\s*$")


def _strip_suffix(text: str) -> str:
    # Twice at most: Google News appends its own " - Outlet" to the outlet's title.
    for _ in range(2):
        match = _SUFFIX.search(text)
        if match is None or len(match.group(0).strip()) > _SUFFIX_MAX + 2:
            break
        if not text[: match.start()].strip():
            break  # the whole title would go
        text = text[: match.start()]
    return text


def _normalise(title: str) -> tuple[str, str]:
    """(text without tags and outlet suffix, the same with its tags) folded."""
    text = unicodedata.normalize("NFKC", title).strip()
    match = _COLON_SUFFIX.search(text)
    if (
        match is not None
        and len(match.group(0).strip()) <= _SUFFIX_MAX + 2
        and len(text[: match.start()].split()) >= 3
    ):
        text = text[: match.start()]
    text = _strip_suffix(text.casefold())
    return _BRACKETS.sub(" ", text), text


def _key(stripped: str, text: str) -> str:
    # Letters and digits only: spacing and punctuation vary between outlets.
    key = "".join(ch for ch in stripped if unicodedata.category(ch)[0] in "LN")
    if not key:  # a title made only of tags: keep them rather than return ""
        key = "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN")
    return key


def story_key(title: str) -> str:
    """The normalised key of a headline: NFKC and case-folded, tags, source suffix,
    punctuation and spacing removed. Never empty for a title with a letter or digit."""
    return _key(*_normalise(title))


# --- words -------------------------------------------------------------------------

# What ends a Korean word in a headline after its stem: case particles, the copula and
# the verb endings of 하다/되다 that headlines use (임명됐다, 발탁돼, 추진한다). Written
# here rather than taken from the matcher, whose list is for finding a term inside a
# word: this one only has to cut both copies of a word the same way. At most two are
# taken off, longest first, and never below two syllables (회의 stays, 회의를 → 회의).
_ENDINGS = tuple(
    sorted(
        set(
            [
                "이",
                "가",
                "을",
                "를",
                "은",
                "는",
                "의",
                "에",
                "에서",
                "에게",
                "에게서",
                "께",
                "께서",
                "한테",
                "로",
                "으로",
                "로서",
                "으로서",
                "로써",
                "으로써",
                "로부터",
                "으로부터",
                "부터",
                "까지",
                "와",
                "과",
                "랑",
                "이랑",
                "도",
                "만",
                "보다",
                "처럼",
                "마다",
                "조차",
                "뿐",
                "나",
                "이나",
                "라도",
                "이라도",
                "엔",
                "에선",
                "에는",
                "에도",
                "으론",
                "론",
                "이다",
                "다",
                "이며",
                "며",
                "이고",
                "고",
                "인",
                "이라",
                "라",
                "이라는",
                "라는",
                "이란",
                "란",
                "이라고",
                "라고",
                "이라며",
                "라며",
                "이었다",
                "였다",
                "임",
                "하",
                "한",
                "할",
                "함",
                "해",
                "했",
                "했다",
                "한다",
                "하는",
                "하고",
                "하며",
                "하면",
                "하여",
                "해서",
                "하기",
                "하기로",
                "키로",
                "하자",
                "합니다",
                "된",
                "될",
                "됨",
                "돼",
                "됐",
                "됐다",
                "된다",
                "되는",
                "되고",
                "되며",
                "되면",
                "되어",
                "되자",
                "되기",
                "시켜",
                "시켰다",
                "받아",
                "받았다",
                "나서",
                "나선다",
                "들",
            ]
        ),
        key=len,
        reverse=True,
    )
)
_MAX_ENDINGS = 2
# Words that say how a story is told, not what it is about, and the newsroom's
# commonest verbs and nouns: two headlines about one company that both "발표" or
# "announce" something are no likelier to be one story for it. A verb that tells the
# event (검토 against 임명, 착공, 출시) is kept. Compared stemmed.
_STOP_WORDS = (
    "속보 단독 종합 포토 영상 인터뷰 사진 오늘 이날 내일 올해 지난 이번 관련 대비 "
    "발표 공개 추진 개최 진행 예정 정부 기업 업계 시장 관계자 국내 글로벌 "
    "a an the of to in on for and or as at by with from into over after is are be "
    "its it this that new says said will "
    "announce unveil plan report government company market industry official "
    "korea korean south"
)
_STOP: frozenset[str] = frozenset()  # filled below, once _stem exists
# A run of Hangul syllables, of Latin letters (with an inner apostrophe: naver's), or a
# number (3,000 and 15.25 read as one).
_TOKEN = re.compile(
    r"[\uac00-\ud7a3]+|[^\W\d_\uac00-\ud7a3]+(?:['’][^\W\d_\uac00-\ud7a3]+)*|\d+(?:[.,]\d+)*"
)
_HANGUL = re.compile("[\uac00-\ud7a3]")
_ENGLISH = snowballstemmer.stemmer("english")


_ENDING_SET = frozenset(_ENDINGS)
_LONGEST_ENDING = len(_ENDINGS[0])


@lru_cache(maxsize=65536)
def _stem(token: str) -> str:
    if _HANGUL.match(token):
        if token in _ENDING_SET:
            return ""  # a particle alone, split off a Latin word or a figure (AI는, 3일에)
        # The longest ending first, looked up by length: trying each of the hundred
        # endings in turn was most of the cost of a headline of new words.
        for _ in range(_MAX_ENDINGS):
            for size in range(min(_LONGEST_ENDING, len(token) - 2), 0, -1):
                if token[-size:] in _ENDING_SET:
                    token = token[:-size]
                    break
            else:
                break
        return token
    if token[0].isdigit():
        return token.replace(",", "")
    # A possessive goes; then Snowball's English stemmer (named, names → name).
    token = re.sub(r"['’]s?$", "", token).replace("’", "'")
    return str(_ENGLISH.stemWord(token))


# A figure's unit word, Korean (glued on: 27만원, 100조) or English (100 trillion won):
# both are written as the one number (270000, 100000000000000), so that an amount reads
# the same in either language.
_KO_UNITS = {"만": 10**4, "억": 10**8, "조": 10**12}
_COUNTERS = frozenset("원장명개건대배곳주달")
_EN_UNITS = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}


def _figure(number: str, unit: int) -> str:
    value = Decimal(number.replace(",", "")) * unit
    return str(value.to_integral_value()) if value == value.to_integral_value() else str(value)


_STOP = frozenset(_stem(w) for w in _STOP_WORDS.split())


def _tokens(text: str) -> list[str]:
    raw = _TOKEN.findall(text)
    words: list[str] = []
    n = 0
    while n < len(raw):
        token = raw[n]
        following = raw[n + 1] if n + 1 < len(raw) else ""
        if token[0].isdigit() and following:
            if following[0] in _KO_UNITS:
                words.append(_figure(token, _KO_UNITS[following[0]]))
                rest = following[1:]
                n += 2
                # 27만원으로, 1만장: the counter after the unit goes with its particles.
                if len(rest) >= 2 and rest[0] not in _COUNTERS:
                    words.append(_stem(rest))
                continue
            if following in _EN_UNITS:
                words.append(_figure(token, _EN_UNITS[following]))
                n += 2
                continue
        words.append(_stem(token))
        n += 1
    return [w for w in words if w and w not in _STOP]


@lru_cache(maxsize=16384)
def _surface_words(surface: str) -> tuple[str, ...]:
    # The same names and terms are covered in headline after headline.
    return tuple(_tokens(surface.casefold()))


def headline_words(title: str) -> frozenset[str]:
    """The words of a headline as sets compare them: tags, outlet suffix and
    punctuation gone, Hangul particles and English inflections taken off, the words
    that only say how a story is told (속보, the, says) left out."""
    return _words(_normalise(title)[0])


def _words(stripped: str) -> frozenset[str]:
    return frozenset(map(sys.intern, _tokens(stripped)))


# Latin words too common in Korean headlines to tell one story from another.
_COMMON_LATIN = frozenset(["ai", "it", "ceo", "cto", "ict", "gpu", "llm", "us", "uk", "eu"])


def _anchors(words: frozenset[str], rest: frozenset[str]) -> frozenset[str]:
    """What a Korean and an English headline of one event can both spell out: its
    figures of two digits or more (100조 / 100 trillion, 52주 / 52-week), even where a
    theme term covers them, and the Latin names no entity covered (JP모건 / JP Morgan,
    HyperCLOVA X)."""
    figures = {w for w in words if w[0].isdigit() and len(w.replace(".", "")) >= 2}
    names = {w for w in rest if w.isascii() and w.isalpha() and w not in _COMMON_LATIN}
    return frozenset(figures | names)


@dataclass(frozen=True)
class StoryTags:
    """What the matcher found in a headline: entity ids, theme ids, its *phrases* (the
    ids of each stretch of the title that hits cover, overlapping hits together, as
    ``e:``/``t:`` ids: ``AI미래기획수석`` may be an entity and two themes at once, and
    is still one thing said), and the words the hits covered (their surfaces)."""

    entities: frozenset[str] = frozenset()
    themes: frozenset[str] = frozenset()
    phrases: tuple[frozenset[str], ...] = ()
    covered: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        entities: Iterable[str],
        themes: Iterable[str],
        phrases: Iterable[Iterable[str]] = (),
        covered: Iterable[str] = (),
    ) -> StoryTags:
        entities, themes = frozenset(entities), frozenset(themes)
        grouped = tuple(frozenset(p) for p in phrases)
        if not grouped:  # no spans known: each id its own phrase
            grouped = tuple(frozenset({f"e:{e}"}) for e in sorted(entities)) + tuple(
                frozenset({f"t:{t}"}) for t in sorted(themes)
            )
        return cls(entities, themes, grouped, tuple(covered))


NO_TAGS = StoryTags()


def bigrams(key: str) -> frozenset[str]:
    """Character bigrams of a key (a one-character key is its own bigram)."""
    if len(key) < 2:
        return frozenset({key}) if key else frozenset()
    return frozenset(key[i : i + 2] for i in range(len(key) - 1))


def _codes(key: str) -> frozenset[int]:
    """The bigrams of :func:`bigrams` as ints (two code points in one): a day of
    clustered headlines keeps thousands of these sets, and small ints take a fraction
    of the memory of two-character strings."""
    if len(key) < 2:
        return frozenset({ord(key)}) if key else frozenset()
    points = [ord(ch) for ch in key]
    return frozenset((a << 21) | b for a, b in itertools.pairwise(points))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True, eq=False, slots=True)
class Headline:
    """A headline as the rules of :func:`link` read it."""

    key: str
    # A set while it is compared; once remembered, an array of the ints (see
    # StoryClusters._keep): a few hundred bytes a headline instead of two kilobytes.
    grams: Collection[int]
    entities: frozenset[str]
    themes: frozenset[str]
    # the words no entity or theme covered
    rest: frozenset[str]
    # the ids of each phrase (see StoryTags)
    phrases: tuple[frozenset[str], ...]
    hangul: bool
    anchors: frozenset[str]

    @classmethod
    def of(cls, title: str, tags: StoryTags = NO_TAGS) -> Headline:
        stripped, text = _normalise(title)
        key = _key(stripped, text)
        words = _words(stripped)
        covered = {w for surface in tags.covered for w in _surface_words(surface)}
        # A Latin hit's surface has no plural the stemmer left on (GPU in "GPUs").
        rest = frozenset(
            w
            for w in words
            if w not in covered
            and not (w.isascii() and any(w.startswith(c) and len(w) - len(c) <= 2 for c in covered))
        )
        return cls(
            key=key,
            grams=_codes(key),
            entities=tags.entities,
            themes=tags.themes,
            rest=rest,
            phrases=tuple(frozenset(sys.intern(i) for i in p) for p in tags.phrases),
            hangul=bool(_HANGUL.search(key)),
            anchors=_anchors(words, rest),
        )

    @property
    def sets(self) -> tuple[frozenset[str], ...]:
        """Its sets of words and ids, each phrase's among them (StoryClusters._share)."""
        return (self.entities, self.themes, self.rest, *self.phrases, self.anchors)

    @property
    def features(self) -> frozenset[str]:
        """What the candidate index files the headline under: its words and ids."""
        return self.rest.union(*self.phrases)


def _specific(
    phrases: tuple[frozenset[str], ...], common: frozenset[str]
) -> tuple[frozenset[str], ...]:
    """``phrases`` without the ids too common to tell stories apart (see
    StoryClusters.common); a phrase of common ids only is no phrase."""
    if not common:
        return phrases
    return tuple(p - common for p in phrases if not p <= common)


def _matched(
    ours: tuple[frozenset[str], ...], theirs: tuple[frozenset[str], ...]
) -> tuple[int, int, int]:
    """Phrases of two headlines that match (share an id), fewest of either side's
    count, with how many of those hold an entity and how many a theme."""
    if not ours or not theirs:
        return 0, 0, 0
    found = [p for p in ours if any(p & q for q in theirs)]
    back = [q for q in theirs if any(q & p for p in ours)]
    if len(back) < len(found):
        found = back
    entities = sum(1 for p in found if any(i.startswith("e:") for i in p))
    themes = sum(1 for p in found if any(i.startswith("t:") for i in p))
    return len(found), entities, themes


def _nested(a: frozenset[str], b: frozenset[str]) -> bool:
    return a <= b or b <= a


def link(
    a: Headline, b: Headline, threshold: float = THRESHOLD, common: frozenset[str] = frozenset()
) -> float:
    """How surely ``a`` and ``b`` are one story: 0 when they are not, else a score in
    (0, 1] (1 for the same key); the rules are the module docstring's. Words and ids in
    ``common`` count for neither side (StoryClusters.common says which)."""
    if a.key == b.key:
        return 1.0
    if not _nested(a.entities, b.entities):
        return 0.0
    size, other = len(a.grams), len(b.grams)
    # Jaccard >= t needs t·|A| <= |B| <= |A|/t: skip the sets without a chance.
    if a.hangul == b.hangul and threshold * size <= other <= size / threshold:
        probe = a.grams if isinstance(a.grams, frozenset) else frozenset(a.grams)
        both = len(probe.intersection(b.grams))
        near = both / (size + other - both)
        if near >= threshold:
            return near
    if not _nested(a.themes, b.themes):
        return 0.0
    ours, theirs = _specific(a.phrases, common), _specific(b.phrases, common)
    phrases, entity_phrases, theme_phrases = _matched(ours, theirs)
    if a.hangul != b.hangul:
        # Rule 5. Across scripts no word is shared, so what is said must be the same:
        # the same entities or the same themes (English terms are fewer: "named" is no
        # appointment word), and three phrases matched (or two and a figure or name).
        if not (a.entities & b.entities) or not (a.themes & b.themes):
            return 0.0
        if a.entities != b.entities and a.themes != b.themes:
            return 0.0
        if phrases >= FEATURES_MIN_SHARED or (phrases == 2 and a.anchors & b.anchors):
            return phrases / max(len(ours), len(theirs))
        return 0.0
    rest_a, rest_b = a.rest - common, b.rest - common
    shared = phrases + len(rest_a & rest_b)
    smaller, larger = sorted((len(ours) + len(rest_a), len(theirs) + len(rest_b)))
    score = 0.0
    # Rule 3; "all of both" takes 네이버가 … 발표 / 네이버는 … 발표했다, two units each.
    contained = shared >= WORDS_MIN_SHARED and shared >= WORDS_SHORTER * smaller
    if (contained or shared == larger >= 2) and shared >= WORDS_LONGER * larger:
        score = shared / larger
    # Rule 4: a (종합) rewrite adds context to both sides; two shared entities and two
    # shared themes let it, one company, one theme and a word are not enough.
    if (
        entity_phrases >= 2
        and theme_phrases >= 2
        and shared >= FEATURES_MIN_SHARED
        and shared >= FEATURES_SMALLER * smaller
    ):
        score = max(score, shared / larger)
    return score


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(when: datetime) -> int:
    return (when - _EPOCH) // _MICROSECOND


class _Member(NamedTuple):
    """A held headline. A tuple that orders by (event time, arrival): the postings are
    kept sorted by bisect and insort comparing in C (a key function in Python was a
    fifth of a headline's cost in a flood), and no two members compare equal."""

    at: int  # event time, microseconds since the epoch
    seq: int  # order of arrival
    event_time: datetime
    headline: Headline
    cluster: str


_K = TypeVar("_K", str, int)
_SEQ = operator.itemgetter(1)  # a member's arrival number


def _nearest(posting: list[_Member], at: int, count: int) -> list[_Member]:
    """About ``count`` members of ``posting`` (in event-time order) nearest ``at``."""
    if len(posting) <= count:
        return posting
    start = bisect_left(posting, (at,))
    start = min(max(0, start - count // 2), len(posting) - count)
    return posting[start : start + count]


def _prefix_size(grams: int, threshold: float) -> int:
    return max(1, grams - math.ceil(threshold * grams - 1e-9) + 1)


# A held bigram's entry in StoryClusters._ranks: its rank, shifted, and in the low bits
# how many held headlines have it (one int: the rank orders by it with no key function
# in Python).
_HOLDERS_BITS = 32
_HOLDERS = (1 << _HOLDERS_BITS) - 1


def _prefix(grams: Collection[int], threshold: float, ranks: dict[int, int]) -> list[int]:
    """The bigrams a near-duplicate must share at least one of (prefix filtering).

    With Jaccard(A, B) >= t, A and B share at least ceil(t·|A|) and ceil(t·|B|)
    bigrams, so the first |A| - ceil(t·|A|) + 1 of A's and the first
    |B| - ceil(t·|B|) + 1 of B's meet when both are taken in one global order: two
    near-duplicates always meet in the index, whatever the order. Probing all members
    instead made clustering quadratic in a day's news.

    The order is the newest bigram first, by its rank in ``ranks``
    (StoryClusters._ranks: given when the window first holds the bigram, kept while
    any headline holds it), a bigram no held headline has before every other. A
    bigram first seen late is a rare one, a story's own words rather than a template's:
    in code-point order digits and Latin letters came first, and in a flood of one
    topic ("AI", "22조원") their postings were the whole window, each probe a few
    dozen comparisons for nothing. The bigrams no held headline has are in no
    posting: they are not probed.
    """
    held = list(filter(ranks.__contains__, grams))
    keep = _prefix_size(len(grams), threshold) - (len(grams) - len(held))
    if keep <= 0:
        return []
    held.sort(key=ranks.__getitem__, reverse=True)
    return held[:keep]


class StoryClusters:
    """An in-memory index of recent headlines and their cluster ids.

    A cluster id is derived from the key of the story's first headline (a stable
    hash, so two processes that see the same first headline agree). Call
    :meth:`prune` now and then to drop headlines older than the window; :meth:`add`
    puts back what a previous run assigned (from the stored signals) after a restart.
    At most ``max_headlines`` are held (None: no bound but the window): remembering
    one more forgets the one of the earliest event time.
    """

    def __init__(
        self,
        *,
        window: timedelta = WINDOW,
        threshold: float = THRESHOLD,
        candidates: int = CANDIDATES,
        feature_reads: int = FEATURE_READS,
        common_min: int = COMMON_MIN,
        max_headlines: int | None = MAX_HEADLINES,
    ) -> None:
        if window <= timedelta(0) or not 0 < threshold <= 1 or candidates < 1 or feature_reads < 1:
            raise ValueError(
                f"need window > 0, 0 < threshold <= 1, candidates >= 1 and feature_reads"
                f" >= 1, got {window}, {threshold}, {candidates}, {feature_reads}"
            )
        if max_headlines is not None and max_headlines < 1:
            raise ValueError(f"need max_headlines >= 1 or None, got {max_headlines}")
        self.window = window
        self.threshold = threshold
        self.candidates = candidates
        self.feature_reads = feature_reads
        self.common_min = common_min
        self.max_headlines = max_headlines
        # By order of arrival; and (event time, seq) as a heap, the next to forget first.
        self._members: dict[int, _Member] = {}
        self._oldest: list[tuple[datetime, int]] = []
        self._by_key: dict[str, list[_Member]] = {}
        self._by_gram: dict[int, list[_Member]] = {}
        self._by_feature: dict[str, list[_Member]] = {}
        # Each bigram the held headlines have: its rank in the prefix order (see
        # _prefix) and how many held headlines have it, in one int (_HOLDERS_BITS).
        self._ranks: dict[int, int] = {}
        self._last_rank = 0
        # One object for each distinct set of words or ids the held headlines have, and
        # how many hold it (see _share): headlines of one story or one beat have the
        # same entities, themes and phrases, and most no anchors, while a frozenset
        # costs 200 bytes and more even when empty (Python 3.10 gave up the empty
        # singleton). A third less memory for a window of 10,000 (docs/benchmarks.md).
        self._sets: dict[frozenset[str], frozenset[str]] = {}
        self._set_holders: dict[frozenset[str], int] = {}
        self._seq = 0
        # Headlines compared with (calls of link) since the start: what a headline
        # costs is mostly these, so tests bound it by this count rather than by time.
        self.comparisons = 0

    def __len__(self) -> int:
        return len(self._members)

    def _near(self, member: _Member, when: datetime) -> bool:
        return abs(member.event_time - when) <= self.window

    def _remember(self, headline: Headline, event_time: datetime, cluster: str) -> None:
        headline, prefix = self._keep(headline)
        self._seq += 1
        member = _Member(_micros(event_time), self._seq, event_time, headline, cluster)
        self._members[member.seq] = member
        heapq.heappush(self._oldest, (member.event_time, member.seq))
        self._by_key.setdefault(headline.key, []).append(member)
        # Postings in event-time order, so that a headline reads the ones nearest its
        # own time.
        for gram in prefix:
            insort(self._by_gram.setdefault(gram, []), member)
        for feature in headline.features:
            insort(self._by_feature.setdefault(feature, []), member)
        if self.max_headlines is not None:
            while len(self._members) > self.max_headlines:
                self._forget_oldest()

    def _forget_oldest(self) -> None:
        """Take the headline of the earliest event time out of every index: one at a
        time, so that neither the bound nor :meth:`prune` ever rebuilds the window
        (a rebuild of tens of thousands of headlines holds the event loop for a second)."""
        _, seq = heapq.heappop(self._oldest)
        member = self._members.pop(seq)
        headline = member.headline
        _drop(self._by_key, headline.key, member)
        ranks = self._ranks
        # The bigrams it was filed under: their ranks have not changed while it was held.
        for gram in _prefix(headline.grams, self.threshold, ranks):
            _drop(self._by_gram, gram, member)
        for feature in headline.features:
            _drop(self._by_feature, feature, member)
        for gram in headline.grams:
            entry = ranks[gram] - 1
            if entry & _HOLDERS:
                ranks[gram] = entry
            else:
                del ranks[gram]
        self._unshare(headline)

    def common(self, features: Iterable[str]) -> frozenset[str]:
        """Those of ``features`` (words, ``e:``/``t:`` ids) that more than
        ``COMMON_SHARE`` of the window's headlines, and more than ``common_min``, have:
        in a feed about AI policy "AI" is in most headlines, and a broad theme or the
        government in many, so sharing them says nothing about being one story. A
        small window has none (the table of pairs compares two headlines)."""
        limit = max(self.common_min, COMMON_SHARE * len(self._members))
        postings = self._by_feature
        return frozenset(f for f in features if len(postings.get(f, ())) > limit)

    def _candidates(
        self, headline: Headline, when: datetime, common: frozenset[str]
    ) -> Iterable[_Member]:
        """The headlines worth comparing with: those sharing a prefix bigram (rule 2),
        and those sharing enough entities, themes and words for rules 3 to 5 (three in
        one script, two across), counted over the postings of each. The ``common``
        words and ids are not counted: :func:`link` counts them for neither side in
        rules 3 to 5 (rule 2, near-verbatim copies, is the bigrams' to find), and in a
        flood of one topic their postings are the whole window, each headline sharing
        them a comparison for nothing. Of a posting, only the ``candidates`` headlines
        nearest ``when`` (a bigram's) or ``feature_reads`` of them (a word's, entity's
        or theme's) are read: copies of a story appear within hours of each other, and
        what is common to a day's headlines must not make each headline cost a pass
        over all the others."""
        found: dict[int, _Member] = {}
        at = _micros(when)
        for gram in _prefix(headline.grams, self.threshold, self._ranks):
            for member in _nearest(self._by_gram.get(gram, []), at, self.candidates):
                found[member.seq] = member
        postings = self._by_feature
        reads = self.feature_reads
        # Counted in C, by arrival number (hashing a whole member cost more than the
        # count): a Python loop over the postings was most of a headline's cost.
        shared = Counter(
            map(
                _SEQ,
                itertools.chain.from_iterable(
                    _nearest(postings.get(feature, []), at, reads)
                    for feature in headline.features
                    if feature not in common
                ),
            )
        )
        hangul = headline.hangul
        members = self._members
        # Three shared in one script (rules 3 and 4), but two where that is all the
        # headline says once the common go (rule 3's "all of both").
        units = len(_specific(headline.phrases, common)) + len(headline.rest - common)
        alike = min(WORDS_MIN_SHARED, max(2, units))
        for seq, count in shared.items():
            if count >= 2 and (count >= alike or members[seq].headline.hangul != hangul):
                found[seq] = members[seq]
        return found.values()

    def assign(self, title: str, event_time: datetime, tags: StoryTags = NO_TAGS) -> str:
        """The cluster id of ``title`` (published at ``event_time``, tz-aware, with what
        the matcher found in it); remembers it."""
        if event_time.tzinfo is None or event_time.utcoffset() is None:
            raise ValueError(f"naive datetime {event_time!r}: event times need a zone")
        headline = Headline.of(title, tags)
        for member in self._by_key.get(headline.key, ()):
            if self._near(member, event_time):
                # The same headline again: nothing new to remember.
                return member.cluster
        common = self.common(headline.features)
        cluster: str | None = None
        # The most similar wins, so a headline between two stories joins the closer;
        # on a tie, the earlier headline (as comparing with every one in order would).
        best: tuple[float, int] = (0.0, 0)
        seen: set[int] = set()
        for member in self._candidates(headline, event_time, common):
            if member.seq in seen:
                continue
            seen.add(member.seq)
            if not self._near(member, event_time):
                continue
            self.comparisons += 1
            score = link(headline, member.headline, self.threshold, common)
            if score > 0 and (score, -member.seq) > best:
                best, cluster = (score, -member.seq), member.cluster
        if cluster is None:
            cluster = (
                "s"
                + hashlib.sha1(
                    f"{headline.key}\n{event_time.isoformat()}".encode(), usedforsecurity=False
                ).hexdigest()[:16]
            )
        self._remember(headline, event_time, cluster)
        return cluster

    def _keep(self, headline: Headline) -> tuple[Headline, list[int]]:
        """``headline`` as the window holds it (its bigrams in an array: 8 bytes each,
        no int objects), and the bigrams to file it under (see _prefix): each bigram
        the window did not hold takes the next rank."""
        ranks = self._ranks
        for code in headline.grams:
            entry = ranks.get(code)
            if entry is None:
                self._last_rank += 1
                ranks[code] = (self._last_rank << _HOLDERS_BITS) | 1
            else:
                ranks[code] = entry + 1
        prefix = _prefix(headline.grams, self.threshold, ranks)
        share = self._share
        kept = dataclasses.replace(
            headline,
            grams=array("q", headline.grams),
            entities=share(headline.entities),
            themes=share(headline.themes),
            rest=share(headline.rest),
            phrases=tuple(map(share, headline.phrases)),
            anchors=share(headline.anchors),
        )
        return kept, prefix

    def _share(self, words: frozenset[str]) -> frozenset[str]:
        """The window's one copy of ``words``, held once more (equal sets are
        interchangeable: no rule reads a set's identity)."""
        held = self._sets.get(words)
        if held is None:
            self._sets[words] = held = words
            self._set_holders[words] = 1
        else:
            self._set_holders[held] += 1
        return held

    def _unshare(self, headline: Headline) -> None:
        """``headline``'s sets held once less; a set no held headline has goes."""
        holders = self._set_holders
        for words in headline.sets:
            count = holders[words] - 1
            if count:
                holders[words] = count
            else:
                del holders[words], self._sets[words]

    def add(
        self, title: str, event_time: datetime, cluster: str, tags: StoryTags = NO_TAGS
    ) -> None:
        """Remember that ``title`` belongs to ``cluster`` (a restart's warm-up). The same
        headline again in the same story is not remembered twice, as :meth:`assign`
        would not have (what the window counts as common stays as it was)."""
        headline = Headline.of(title, tags)
        for member in self._by_key.get(headline.key, ()):
            if member.cluster == cluster and self._near(member, event_time):
                return
        self._remember(headline, event_time, cluster)

    def prune(self, before: datetime) -> None:
        """Forget headlines whose event time is more than the window before ``before``."""
        cutoff = before - self.window
        while self._oldest and self._oldest[0][0] < cutoff:
            self._forget_oldest()

    def oldest(self) -> datetime | None:
        """The earliest event time held, None when empty."""
        return self._oldest[0][0] if self._oldest else None


def _drop(index: dict[_K, list[_Member]], key: _K, member: _Member) -> None:
    """``member`` out of ``index[key]`` (a posting in event-time order); the posting
    goes when it empties, so the indexes hold only what the window's headlines have."""
    posting = index.get(key)
    if posting is None:
        return
    at = bisect_left(posting, member)
    if at < len(posting) and posting[at] is member:
        del posting[at]
    else:  # _by_key is in arrival order, not event time
        for n, other in enumerate(posting):
            if other is member:
                del posting[n]
                break
    if not posting:
        del index[key]
