"""Story clustering: the same story from several outlets gets one cluster id.

Pure and in memory. :func:`story_key` normalises a headline so that syndicated copies
(``[속보]``/``[단독]`` retitles, ``(종합)`` updates, a trailing `` - 언론사`` or
``| Outlet``) collapse to one key; :class:`StoryClusters` assigns ids, first by exact
key and then by a near-duplicate test, both within a window on event time.

Why character bigrams with Jaccard ≥ 0.8 for near-duplicates: Korean headlines have no
reliable word spacing and particles glue onto words (``임명`` / ``임명돼``), so word
tokens split one story apart; character bigrams of the space-free key survive spacing
and a changed particle or two, while two different stories that share only a name
(네이버 … 임명 vs 네이버 … 목표가) share few bigrams. 0.8 lets a headline differ by a
word or particle and still join, and keeps stories that merely share entities apart
(tests/monitor/rules/test_cluster.py holds the table). The 48 h window on event time:
wire copies and retitles appear within a day or two; the same words a month later (a
recurring "[속보] 코스피 3000 돌파") are a new story, so the window applies to exact
matches as well.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW = timedelta(hours=48)
THRESHOLD = 0.8
# Near-duplicate candidates looked at per bigram of a headline's prefix (see assign).
CANDIDATES = 16

# Bracketed tags anywhere: [속보], [단독], (종합), (2보), 【…】, 〔…〕, <…>, 〈…〉, 《…》 has
# work titles in it and is left alone (its brackets go with the punctuation).
_BRACKETS = re.compile(r"\[[^\]]*\]|\([^)]*\)|【[^】]*】|〔[^〕]*〕|<[^>]*>|〈[^〉]*〉")
# A trailing source suffix: " - 한국경제", " | Reuters", " - 조선비즈 - Chosun Biz".
# Only a short tail (at most 4 words, 30 characters) after a spaced separator, so that a
# headline's own second half ("AI 기본법 통과 - 업계는 규제 완화 요구 목소리") is kept.
_SUFFIX = re.compile(r"\s+[-|–—]\s+(?:\S+(?:\s+\S+){0,3})\s*$")
_SUFFIX_MAX = 30


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


def story_key(title: str) -> str:
    """The normalised key of a headline: NFKC and case-folded, tags, source suffix,
    punctuation and spacing removed. Never empty for a title with a letter or digit."""
    text = unicodedata.normalize("NFKC", title).casefold()
    text = _strip_suffix(text.strip())
    stripped = _BRACKETS.sub(" ", text)
    # Letters and digits only: spacing and punctuation vary between outlets.
    key = "".join(ch for ch in stripped if unicodedata.category(ch)[0] in "LN")
    if not key:  # a title made only of tags: keep them rather than return ""
        key = "".join(ch for ch in text if unicodedata.category(ch)[0] in "LN")
    return key


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


@dataclass(frozen=True)
class _Member:
    key: str
    # A tuple of shared int objects (see StoryClusters._keep): a few hundred bytes a
    # headline instead of the two kilobytes of a set of its own ints.
    grams: tuple[int, ...]
    event_time: datetime
    cluster: str
    seq: int  # order of arrival


def _prefix(grams: Collection[int], threshold: float) -> list[int]:
    """The bigrams a near-duplicate must share at least one of (prefix filtering).

    With Jaccard(A, B) >= t, B holds at least ceil(t·|A|) of A's bigrams, so it holds
    one of any |A| - ceil(t·|A|) + 1 of them; when both sides index and probe the
    first ones in the same global order (sorted), two near-duplicates always meet in
    the index. Probing all members instead made clustering quadratic in a day's news.
    """
    ordered = sorted(grams)
    keep = len(ordered) - math.ceil(threshold * len(ordered) - 1e-9) + 1
    return ordered[: max(1, keep)]


class StoryClusters:
    """An in-memory index of recent headlines and their cluster ids.

    A cluster id is derived from the key of the story's first headline (a stable
    hash, so two processes that see the same first headline agree). Call
    :meth:`prune` now and then to drop headlines older than the window; :meth:`add`
    puts back what a previous run assigned (from the stored signals) after a restart.
    """

    def __init__(
        self,
        *,
        window: timedelta = WINDOW,
        threshold: float = THRESHOLD,
        candidates: int = CANDIDATES,
    ) -> None:
        if window <= timedelta(0) or not 0 < threshold <= 1 or candidates < 1:
            raise ValueError(
                f"need window > 0, 0 < threshold <= 1 and candidates >= 1,"
                f" got {window}, {threshold}, {candidates}"
            )
        self.window = window
        self.threshold = threshold
        self.candidates = candidates
        self._members: list[_Member] = []
        self._by_key: dict[str, list[_Member]] = {}
        self._by_gram: dict[int, list[_Member]] = {}
        self._vocab: dict[int, int] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._members)

    def _near(self, member: _Member, when: datetime) -> bool:
        return abs(member.event_time - when) <= self.window

    def _remember(self, member: _Member) -> None:
        self._members.append(member)
        self._by_key.setdefault(member.key, []).append(member)
        for gram in _prefix(member.grams, self.threshold):
            self._by_gram.setdefault(gram, []).append(member)

    def assign(self, title: str, event_time: datetime) -> str:
        """The cluster id of ``title`` (published at ``event_time``, tz-aware); remembers it."""
        if event_time.tzinfo is None or event_time.utcoffset() is None:
            raise ValueError(f"naive datetime {event_time!r}: event times need a zone")
        key = story_key(title)
        for member in self._by_key.get(key, ()):
            if self._near(member, event_time):
                # The same headline again: nothing new to remember.
                return member.cluster
        grams = _codes(key)
        size = len(grams)
        cluster: str | None = None
        # The most similar wins, so a headline between two stories joins the closer;
        # on a tie, the earlier headline (as comparing with every one in order would).
        best: tuple[float, int] = (0.0, 0)
        seen: set[int] = set()
        for gram in _prefix(grams, self.threshold):
            # The newest few per bigram: copies of a story arrive within hours, and a
            # bigram common to a day's headlines ("정부", "ai") must not make each
            # headline cost a comparison with every other one.
            for member in reversed(self._by_gram.get(gram, ())[-self.candidates :]):
                if member.seq in seen:
                    continue
                seen.add(member.seq)
                other = len(member.grams)
                # Jaccard >= t needs t·|A| <= |B| <= |A|/t: skip the sets without a chance.
                if not self.threshold * size <= other <= size / self.threshold:
                    continue
                if not self._near(member, event_time):
                    continue
                common = len(grams.intersection(member.grams))
                score = common / (size + other - common)
                if score >= self.threshold and (score, -member.seq) > best:
                    best, cluster = (score, -member.seq), member.cluster
        if cluster is None:
            cluster = (
                "s"
                + hashlib.sha1(
                    f"{key}\n{event_time.isoformat()}".encode(), usedforsecurity=False
                ).hexdigest()[:16]
            )
        self._remember(_Member(key, self._keep(grams), event_time, cluster, self._next_seq()))
        return cluster

    def _keep(self, grams: frozenset[int]) -> tuple[int, ...]:
        # One int object per distinct bigram, shared by every headline that has it.
        vocab = self._vocab
        return tuple(vocab.setdefault(code, code) for code in grams)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def add(self, title: str, event_time: datetime, cluster: str) -> None:
        """Remember that ``title`` belongs to ``cluster`` (a restart's warm-up)."""
        key = story_key(title)
        self._remember(_Member(key, self._keep(_codes(key)), event_time, cluster, self._next_seq()))

    def prune(self, before: datetime) -> None:
        """Forget headlines whose event time is more than the window before ``before``."""
        keep = [m for m in self._members if m.event_time >= before - self.window]
        if len(keep) == len(self._members):
            return
        self._members = []
        self._by_key = {}
        self._by_gram = {}
        for member in keep:
            self._remember(member)
