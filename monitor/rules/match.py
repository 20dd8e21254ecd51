"""Find entities and theme terms in Korean and English text, and evaluate news rules.

How :meth:`Matcher.find` reads a text, in order:

1. **Fold.** NFKC, then case folding, then every whitespace run as one space: the text
   is matched in the form terms are written in (:func:`monitor.rules.model.fold_term`).
   Hits report offsets in the *original* text: a map from folded to original offsets
   is kept for the rare texts that folding does not leave one-for-one (``…`` becomes
   ``...``, ``㈜`` becomes ``(주)``, decomposed jamo compose, double spaces collapse);
   a character that grows or merges maps to its whole source span.
2. **Scan.** One pass of an Aho-Corasick automaton over every pattern (all entity
   aliases, theme terms and rule terms together) reports every occurrence, overlapping.
3. **Boundaries.** Each occurrence is kept only if it stands as a word:
   - a term that starts with Hangul must not follow a Hangul character (``기본법`` is
     not in ``헌법기본법``); one that starts with a Latin letter or digit must not
     follow a letter or digit (``AI`` is not in ``SAID``);
   - a term that ends with Hangul may be followed by a non-Hangul character, or by a
     chain of up to four particles/endings from :data:`PARTICLES` and then a
     non-Hangul character (``네이버가``, ``네이버에서도``, ``임명됐다``; not
     ``카카오뱅크``); one that ends with a Latin letter or digit may be followed by a
     non-letter, or by ``s``/``es`` (plurals, :data:`LATIN_SUFFIXES`);
   - a change of script is a boundary both ways: ``AI기본법`` contains ``AI`` and
     ``기본법``, ``네이버AI`` contains ``네이버``. Korean headlines glue Latin
     acronyms to Hangul words all the time, and the particle check cannot apply to
     a Latin term (``Naver는``).
4. **Overlaps.** Among the occurrences that stand as words, within a group of term
   ids (by default all of them), the leftmost wins, then the longest: ``카카오뱅크``
   as its own entity beats ``카카오``, ``Kakao Bank`` beats ``Kakao``. Ids in
   different groups do not compete.

Spacing: a term's spaces next to Hangul are optional, and a space may appear where a
term changes between Hangul and Latin/digits. ``인공지능 기본법`` also matches
``인공지능기본법``; ``AI기본법`` also matches ``AI 기본법``. The automaton gets every
such variant of a term (at most 16 spacings of it) rather than matching on a space-free
projection of the text: offsets stay exact and English word boundaries stay honest.
Spaces between two Latin words are kept (English spacing is reliable). A term written
without a space between two Hangul words cannot know where a space might go: write it
with the space.

Two implementations of steps 2–4 give the same hits, field for field:

- **The C scanner** (``monitor/rules/_scan.c``, compiled by the wheel's build hook where
  a C compiler is there): its own Aho-Corasick automaton over code points, with the
  word ends, particle chains and overlaps, making the :class:`Hit` tuples itself, so no
  Python code runs per candidate. A text made only of printable ASCII and characters
  that folding leaves alone (:func:`plain_characters`: Hangul syllables, Han, most
  punctuation) is scanned as it is, its capitals folded as they are read; one that also
  has characters folding turns into plain ones (:func:`expanded_characters`: ``…``,
  ``㈜``, full-width and accented capitals) is folded in C into a buffer that remembers
  where each folded character came from; any other text (whitespace runs, combining
  marks, jamo) is folded in Python first, and its offsets mapped back in C. About
  70 MB/s on the corpus of ``bench/match_rules.py`` against 18 MB/s for the Python path
  (docs/benchmarks.md).
- **The Python path**, where the scanner is not built or ``KMON_NATIVE_MATCHER=off``:
  ``ahocorasick-rs`` (its DFA) reports every occurrence, (pattern, start, end) in one
  call, and the checks run in Python per candidate, about 1.5 µs each. The automaton
  is built on first use only.

Why a hand-written automaton: with the widened default ruleset a quarter of the words
of news text are candidates (정부, 정책, 예산, 코스피, *government*, *said* …: the anchors,
context words and parts of near terms), and every library hands each one back as a
Python object; Hyperscan, numpy over the candidates and a two-stage scan were measured
against the Python loop and not taken (docs/benchmarks.md, "Rule matching").
:meth:`Matcher.find_all` scans a batch of texts.

:func:`tag` evaluates the news rules of a :class:`~monitor.rules.model.Ruleset` in
file order over one item's title and summary.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import re
import unicodedata
import weakref
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import ahocorasick_rs

from monitor.rules.model import SEPARATOR, Condition, NearTerm, NewsRule, Ruleset, fold_term

try:
    from monitor.rules import _scan  # the C scanner, when the package was built with it
except ImportError:  # pragma: no cover - a build without a compiler
    _scan = None  # type: ignore[assignment]

# KMON_NATIVE_MATCHER=off runs the Python path even where the C scanner is built.
_NATIVE_OFF = os.environ.get("KMON_NATIVE_MATCHER", "").lower() in ("off", "0", "false", "no")


def scanner_kind() -> str:
    """``native`` where matchers scan in C, ``python`` where they run the Python path."""
    return "python" if _scan is None or _NATIVE_OFF else "native"


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Particles and endings that may follow a Hangul term inside the same word. A chain of
# up to four of them is allowed (네이버+에서+도, 임명+됐+다), and then the word must end.
# Kept to what follows a noun; a syllable that would let compounds through is left out
# (자: 투자자 is not 투자; 기, 게, 서, 어, 요 likewise).
CASE_PARTICLES = _words(
    "이 가 을 를 은 는 의 에 에서 에게 에게서 께 께서 한테 한테서 로 으로 로서 으로서 "
    "로써 으로써 로부터 으로부터 부터 까지 와 과 랑 이랑 도 만 보다 처럼 같이 마다 마저 "
    "조차 밖에 뿐 나 이나 든지 이든지 라도 이라도 야 이야 대로 만큼 엔 에선 께선"
)
COPULA_ENDINGS = _words(
    "이다 다 이며 며 이고 고 인 이라 라 이라서 라서 이라는 라는 이란 란 이라고 라고 "
    "이라며 라며 이었 였 이자 임 일 이지만 지만 입니다 던 면 으며 으나 었 겠 니다"
)
# 하다, 되다, 시키다, 받다 after a verbal noun: 임명했다, 상향된, 확보한다.
VERBAL_ENDINGS = _words(
    "하 한 할 함 해 했 하는 하고 하며 하면 하여 해서 하기 하게 하자 하지 하던 합니다 "
    "되 된 될 됨 돼 됐 되는 되고 되며 되면 되어 되자 되기 되던 됩니다 "
    "시키 시킨 시켜 시켰 받 받은 받아 받는 받았"
)
# Written attached to a name: 네이버측, 하정우씨, 딥시크발 (set off by), 이재명표 (-branded).
NAME_SUFFIXES = _words("들 측 쪽 등 씨 님 발 표")
PARTICLES: tuple[str, ...] = CASE_PARTICLES + COPULA_ENDINGS + VERBAL_ENDINGS + NAME_SUFFIXES

# English inflections allowed after a Latin term: GPU → GPUs, data center → data centers.
LATIN_SUFFIXES: tuple[str, ...] = ("s", "es")

_MAX_PARTICLES = 4
# Terms with more optional gaps than this get only their all-spaced and all-joined forms.
_MAX_VARIANT_GAPS = 4

_HANGUL_CLASS = "\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7a3\ud7b0-\ud7ff"
_PARTICLE_CHAIN = re.compile(
    "(?:"
    + "|".join(sorted(PARTICLES, key=len, reverse=True))
    + f"){{1,{_MAX_PARTICLES}}}(?![{_HANGUL_CLASS}])"
)

_OTHER, _HANGUL, _WORD = 0, 1, 2


def _is_hangul(char: str) -> bool:
    return (
        "\uac00" <= char <= "\ud7a3"
        or "\u1100" <= char <= "\u11ff"
        or "\u3130" <= char <= "\u318f"
        or "\ua960" <= char <= "\ua97f"
        or "\ud7b0" <= char <= "\ud7ff"
    )


def _is_word(char: str) -> bool:
    # Letters and digits of the scripts written with spaces between words (Latin, Greek,
    # Cyrillic …) all sit below U+1100; Hangul, kana and Han characters above it are
    # boundaries for a Latin term (中DeepSeek, 韓AI).
    return char < "\u1100" and (char.isalnum() or char == "_")


def _char_class(char: str) -> int:
    if _is_hangul(char):
        return _HANGUL
    return _WORD if _is_word(char) else _OTHER


# --- folding with an offset map -----------------------------------------------------


def _fold_plain(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _composes(char: str) -> bool:
    """Whether NFKC may merge ``char`` into the character before it.

    Combining marks, medial and final jamo, and compatibility vowels (ㅏ → ᅡ). Vowel
    signs of other scripts that compose without being combining marks are not
    listed: a Korean/English monitor does not meet them, and they only make offsets
    inexact, never a text unmatched by its own terms.
    """
    return bool(
        unicodedata.combining(char)
        or "\u1160" <= char <= "\u11ff"
        or "\u314f" <= char <= "\u318e"
        or "\ud7b0" <= char <= "\ud7ff"
        or "\uffc2" <= char <= "\uffdc"
    )


class _Offsets:
    """Maps offsets in a folded text back to the original, segment by segment.

    A one-for-one segment maps linearly; any other maps all its folded characters to
    its whole original span (``…`` → ``...``).
    """

    __slots__ = ("folded_starts", "segments")

    def __init__(self) -> None:
        self.folded_starts: list[int] = []
        # (folded start, original start, original end, one-for-one); a one-for-one
        # segment runs until the next one starts, and its end is not read.
        self.segments: list[tuple[int, int, int, bool]] = []

    def add(self, folded_start: int, start: int, end: int, plain: bool) -> None:
        self.folded_starts.append(folded_start)
        self.segments.append((folded_start, start, end, plain))

    def span(self, start: int, end: int) -> tuple[int, int]:
        f0, o0, o1, plain = self.segments[bisect_right(self.folded_starts, start) - 1]
        first = o0 + (start - f0) if plain else o0
        f0, o0, o1, plain = self.segments[bisect_right(self.folded_starts, end - 1) - 1]
        last = o0 + (end - f0) if plain else o1
        return first, last


def fold_text(text: str) -> tuple[str, _Offsets | None]:
    """``text`` folded as terms are, and the offset map (``None``: one-for-one)."""
    if text.isascii() or unicodedata.is_normalized("NFKC", text):
        # Case folding maps each character on its own; equal lengths mean one-for-one.
        # isprintable() is false for every whitespace but the plain space.
        folded = text.casefold()
        if len(folded) == len(text) and "  " not in folded and folded.isprintable():
            return folded, None
    return _fold_odd(text)


# Characters that may not fold one-for-one are looked for among those outside printable
# ASCII, Hangul syllables and Han ideographs (which always do), with a class of a few
# ranges: the re module scans that at 200+ MB/s, a class of the thousands of odd
# characters themselves at 14 MB/s.
_CANDIDATES = re.compile(f"[^ -~{SEPARATOR}\u4e00-\u9fff\uac00-\ud7a3]")


@functools.cache
def _care(char: str) -> int:
    """0: folding leaves ``char`` alone (bar case); 1: NFKC changes it one for one
    (full-width letters); 2: odd, it folds to another length, is whitespace to
    collapse, or may merge into the character before it."""
    if char.isspace():
        return 2
    folded = _fold_plain(char)
    if len(folded) != 1 or _composes(char) or _composes(folded):
        return 2
    return 0 if unicodedata.is_normalized("NFKC", char) else 1


# Hangul syllables and the unified Han ideographs fold to themselves and never merge.
_PLAIN_BLOCKS = ((0xAC00, 0xD7A4), (0x4E00, 0xA000))
# The blocks whose characters are checked one by one for the C scanner's fast path:
# Latin-1 and Latin Extended, Greek, punctuation, symbols and arrows, CJK punctuation,
# the half- and full-width forms (whose folding changes them: none is kept).
_CHECKED_BLOCKS = ((0xA0, 0x250), (0x370, 0x400), (0x2000, 0x2C00), (0x3000, 0x3040))


@functools.cache
def plain_characters() -> str:
    """The characters above ASCII that folding leaves as they are, one for one, and that
    never merge with the character before them: a text made of them and of printable
    ASCII without double spaces folds to itself with ASCII in lower case, so the C
    scanner reads it without folding it first."""
    checked = (
        char
        for low, high in _CHECKED_BLOCKS
        for char in map(chr, range(low, high))
        if char.isprintable() and _care(char) == 0 and char.casefold() == char
    )
    blocks = ("".join(map(chr, range(low, high))) for low, high in _PLAIN_BLOCKS)
    return "".join(checked) + "".join(blocks)


# Where the characters that fold to plain ones are looked for: the blocks above, the
# enclosed CJK letters and the compatibility squares (㈜, ㎏), the Latin ligatures.
_EXPANDED_BLOCKS = (*_CHECKED_BLOCKS, (0x3200, 0x3400), (0xFB00, 0xFB50), (0xFF00, 0xFFF0))


@functools.cache
def expanded_characters() -> tuple[tuple[str, str], ...]:
    """(character, folded form) of the characters that fold, on their own and whatever
    is next to them, into plain ones (:func:`plain_characters`, printable ASCII but the
    space): ``…`` → ``...``, ``㈜`` → ``(주)``, ``Ａ`` → ``a``, ``É`` → ``é``, ``ß`` →
    ``ss``. The C scanner folds a text made of these and plain characters itself."""
    plain = set(plain_characters())

    def plain_char(char: str) -> bool:
        return char in plain or ("!" <= char <= "~" and not "A" <= char <= "Z")

    out = []
    for low, high in _EXPANDED_BLOCKS:
        for char in map(chr, range(low, high)):
            if char in plain or not char.isprintable() or char.isspace() or _composes(char):
                continue
            folded = _fold_plain(char)
            if folded and not _composes(folded[0]) and all(map(plain_char, folded)):
                out.append((char, folded))
    return tuple(out)


# Bounded: a cluster is a character and the combining marks after it, no fixed set.
@functools.lru_cache(maxsize=65536)
def _folded_length(cluster: str) -> int:
    return len(_fold_plain(cluster))


def _fold_odd(text: str) -> tuple[str, _Offsets | None]:
    """Fold a text that NFKC changes, and map each odd cluster to its span.

    A cluster is an odd character with the combining characters after it (and the
    character before it, when it combines itself), or a whitespace run, which folds
    to one space. NFKC never merges across a cluster's edges, so the pieces fold on
    their own. Every character NFKC changes starts a piece: the rest then pass NFKC's
    quick check, and the text is never normalised as a whole (76 MB/s).
    """
    marks = [(m.start(), care) for m in _CANDIDATES.finditer(text) if (care := _care(m.group()))]
    # Double spaces apart: with them in the pattern, re could no longer scan with the
    # character set alone, and str.find is faster still.
    at = text.find("  ")
    if at >= 0:
        while at >= 0:
            marks.append((at, 2))  # a longer run is one cluster: the loop skips the rest
            at = text.find("  ", at + 2)
        marks.sort()
    if not any(care == 2 for _, care in marks):
        return "".join(map(_fold_plain, _split(text, [at for at, _ in marks]))), None
    offsets = _Offsets()
    pieces: list[str] = []
    length = pos = 0
    plain_open = False  # whether the last segment is one-for-one and runs on to pos
    size = len(text)
    for at, care in marks:
        if at < pos:
            continue  # inside the previous cluster
        if care == 1 and not (at + 1 < size and _composes(text[at + 1])):
            # One for one: its own piece, but no segment of its own. (Followed by a
            # combining character it is the base of a cluster: ㄱ + ᅡ folds to 가.)
            if at > pos:
                pieces.append(text[pos:at])
            pieces.append(text[at])
            if not plain_open:
                offsets.add(length, pos, size, True)
                plain_open = True
            length += at + 1 - pos
            pos = at + 1
            continue
        start, end = at, at + 1
        space = text[at].isspace()
        if space:
            while start > pos and text[start - 1] == " ":
                start -= 1
            while end < size and text[end].isspace():
                end += 1
            folded_length = 1
        else:
            if start > pos and _composes(text[at]):
                start -= 1
            while end < size and _composes(text[end]):
                end += 1
            folded_length = _folded_length(text[start:end])
        if start > pos:
            if not plain_open:
                offsets.add(length, pos, size, True)
            pieces.append(text[pos:start])
            length += start - pos
        offsets.add(length, start, end, folded_length == 1 and end - start == 1)
        plain_open = False
        pieces.append(" " if space else text[start:end])
        length += folded_length
        pos = end
    if pos < size:
        if not plain_open:
            offsets.add(length, pos, size, True)
        pieces.append(text[pos:])
    return "".join(map(_fold_plain, pieces)), offsets


def _split(text: str, cuts: Sequence[int]) -> list[str]:
    """``text`` cut before and after each position in ``cuts`` (sorted)."""
    pieces: list[str] = []
    pos = 0
    for at in cuts:
        if at > pos:
            pieces.append(text[pos:at])
        pieces.append(text[at])
        pos = at + 1
    pieces.append(text[pos:])
    return pieces


# --- terms and their spacing variants -----------------------------------------------


def spacing_variants(term: str) -> list[str]:
    """The folded forms of ``term`` to look for, the written one first.

    A space next to Hangul may be left out, and a space may be put between Hangul and a
    Latin letter or digit: ``AI 기본법`` → ``ai 기본법``, ``ai기본법``. An apostrophe
    also comes as ``’``.
    """
    folded = fold_term(term)
    if not folded:
        return []
    pieces: list[str] = []  # runs of characters, with the gap that follows each
    gaps: list[tuple[str, ...]] = []
    for index, char in enumerate(folded):
        if char == " ":
            continue
        pieces.append(char)
        if index + 1 >= len(folded):
            break
        after = folded[index + 1]
        if after == " ":
            following = folded[index + 2]
            if _is_hangul(char) or _is_hangul(following):
                gaps.append((" ", ""))
            else:
                gaps.append((" ",))
        elif {_char_class(char), _char_class(after)} == {_HANGUL, _WORD}:
            gaps.append(("", " "))
        else:
            gaps.append(("",))
    optional = sum(1 for g in gaps if len(g) > 1)
    if optional > _MAX_VARIANT_GAPS:
        choices: Iterable[Sequence[str]] = [
            [g[0] for g in gaps],
            ["" if len(g) > 1 else g[0] for g in gaps],
            [" " if len(g) > 1 else g[0] for g in gaps],
        ]
    else:
        choices = itertools.product(*gaps)
    variants: list[str] = []
    for choice in choices:
        text = "".join(p + g for p, g in zip(pieces, [*choice, ""], strict=True))
        # English text writes the apostrophe both ways (China's, China’s).
        for form in (text, text.replace("'", "\u2019")):
            if form not in variants:
                variants.append(form)
    return variants


class Hit(NamedTuple):
    """One occurrence of a term: where it is in the original text and what it says.

    ``start``/``end`` index the text given to :meth:`Matcher.find`; ``surface`` is
    ``text[start:end]`` (without a following particle); ``term`` is the term as
    configured; ``field`` is what the caller passed (``title``/``summary`` in :func:`tag`).
    """

    term_id: str
    start: int
    end: int
    surface: str
    term: str = ""
    field: str | None = None


# NamedTuple's own constructor is Python code; find() makes one Hit per hit.
_new_hit = tuple.__new__

# A pattern: (entries, class of its first character, class of its last), where an
# entry is (term id, term as written, group). Plain tuples: find() reads them per hit.
_Entry = tuple[str, str, str]
_Pattern = tuple[tuple[_Entry, ...], int, int]


class Matcher:
    """Many terms, found in one pass over a text; see the module docstring."""

    __slots__ = ("_keys", "_native", "_patterns", "_python_automaton")

    def __init__(
        self, keys: Sequence[str], patterns: Sequence[_Pattern], *, native: bool = True
    ) -> None:
        self._keys = keys
        self._patterns = patterns
        self._python_automaton: ahocorasick_rs.AhoCorasick | None = None
        self._native: _scan.Scanner | None = None
        if native and _scan is not None and keys:
            self._native = _scan.Scanner(
                [
                    (k, head, tail, entries)
                    for k, (entries, head, tail) in zip(keys, patterns, strict=True)
                ],
                PARTICLES,
                LATIN_SUFFIXES,
                _MAX_PARTICLES,
                plain_characters(),
                expanded_characters(),
            )

    @property
    def native(self) -> bool:
        """Whether the scan runs in the C extension (``monitor.rules._scan``)."""
        return self._native is not None

    @property
    def _automaton(self) -> ahocorasick_rs.AhoCorasick | None:
        # The Python path's automaton, built on first use: with the C scanner it is only
        # wanted by the benchmarks and the tests that compare the two.
        if self._python_automaton is None and self._keys:
            self._python_automaton = ahocorasick_rs.AhoCorasick(
                self._keys, implementation=ahocorasick_rs.Implementation.DFA
            )
        return self._python_automaton

    @classmethod
    def build(
        cls,
        terms: Mapping[str, Sequence[str]],
        *,
        groups: Mapping[str, str] | None = None,
        native: bool = True,
    ) -> Matcher:
        """Compile ``{term_id: [term, …]}``.

        ``groups`` maps term ids to groups whose hits may not overlap (leftmost, then
        longest wins); an id not in it is a group of its own. Without ``groups`` every
        id is in one group, as entity aliases should be.
        """
        entries: dict[str, list[_Entry]] = {}
        for term_id, written in terms.items():
            group = "" if groups is None else groups.get(term_id, "\x00" + term_id)
            for term in written:
                variants = spacing_variants(term)
                if not variants or not variants[0].strip():
                    raise ValueError(f"{term_id}: empty term {term!r}")
                if SEPARATOR in term:
                    raise ValueError(f"{term_id}: a term may not contain {SEPARATOR!r}")
                for key in variants:
                    found = entries.setdefault(key, [])
                    if all(e[0] != term_id for e in found):
                        found.append((term_id, term, group))
        keys = list(entries)
        patterns = [(tuple(entries[k]), _char_class(k[0]), _char_class(k[-1])) for k in keys]
        return cls(keys, patterns, native=native and not _NATIVE_OFF)

    def __len__(self) -> int:
        """The number of patterns (terms with their spacing variants)."""
        return len(self._patterns)

    def find(self, text: str, *, field: str | None = None) -> list[Hit]:
        """Every hit in ``text``, in order of position; ``field`` is copied into each."""
        if not self._keys or not text:
            return []
        native = self._native
        if native is not None:
            # Most texts need no folding but lower-case ASCII: the scanner reads them so.
            found = native.find(text, field, Hit)
            if found is not None:
                return found  # type: ignore[return-value]
        folded, offsets = fold_text(text)
        if native is not None:
            if offsets is None:
                return native.hits(folded, text, field, Hit)  # type: ignore[return-value]
            return native.mapped(folded, text, field, Hit, offsets.segments)  # type: ignore[return-value]
        hits = []
        for start, end, term_id, term in self._scan(folded):
            if offsets is not None:
                start, end = offsets.span(start, end)
            hits.append(_new_hit(Hit, (term_id, start, end, text[start:end], term, field)))
        return hits

    def find_all(
        self, texts: Sequence[str], *, fields: Sequence[str | None] | None = None
    ) -> list[list[Hit]]:
        """The hits of each text, as :meth:`find` would give them, in one scan.

        Each text is folded on its own; the folded texts are joined with
        :data:`~monitor.rules.model.SEPARATOR` (which no term contains) and scanned
        once, which saves the fixed cost of a scan per text: about 14 % on a batch of
        100 titles, nothing on ten-times-longer texts, a loss on two texts.
        ``fields[i]`` goes into the hits of ``texts[i]``.
        """
        if fields is None:
            fields = [None] * len(texts)
        elif len(fields) != len(texts):
            raise ValueError("fields and texts differ in length")
        if self._native is not None:
            # The C scan has no fixed cost per text worth saving.
            return [self.find(text, field=f) for text, f in zip(texts, fields, strict=True)]
        found_by_text: list[list[Hit]] = [[] for _ in texts]
        if not self._keys:
            return found_by_text
        folds = [fold_text(text) for text in texts]
        joined = SEPARATOR.join(folded for folded, _ in folds)
        # Where each folded text starts in the joined one.
        starts = [0, *itertools.accumulate(len(folded) + 1 for folded, _ in folds)]
        for start, end, term_id, term in self._scan(joined):
            which = bisect_right(starts, start) - 1
            start -= starts[which]
            end -= starts[which]
            offsets = folds[which][1]
            if offsets is not None:
                start, end = offsets.span(start, end)
            text = texts[which]
            found_by_text[which].append(
                _new_hit(Hit, (term_id, start, end, text[start:end], term, fields[which]))
            )
        return found_by_text

    def _scan(self, folded: str) -> list[tuple[int, int, str, str]]:
        """(start, end, term id, term) of every hit in a folded text."""
        if not folded:
            return []
        if self._native is not None:
            return self._native.spans(folded)
        return self._python_scan(folded)

    def _python_scan(self, folded: str) -> list[tuple[int, int, str, str]]:
        """:meth:`_scan` over ahocorasick-rs, in Python: where the C scanner is not built."""
        automaton = self._automaton
        if automaton is None or not folded:
            return []
        found = automaton.find_matches_as_indexes(folded, overlapping=True)
        if not found:
            return []
        patterns = self._patterns
        size = len(folded)
        # (start, -length) orders leftmost first, then longest; spans are unique per
        # pattern, so the tuples never compare their entries.
        valid: list[tuple[int, int, int, tuple[_Entry, ...]]] = []
        for index, start, end in found:
            entries, head, tail = patterns[index]
            if start and head:
                before = folded[start - 1]
                if head == _HANGUL:
                    if _is_hangul(before):
                        continue
                elif before < "\u1100" and (before.isalnum() or before == "_"):
                    continue
            if end < size and tail:
                after = folded[end]
                # A space or punctuation ends any term; only letters need a closer look.
                if (after >= "\u1100" or after.isalnum() or after == "_") and not _ends_word(
                    folded, end, tail
                ):
                    continue
            valid.append((start, start - end, end, entries))
        if len(valid) == 1 and len(valid[0][3]) == 1:  # the common case: nothing competes
            start, _, end, ((term_id, term, _),) = valid[0]
            return [(start, end, term_id, term)]
        valid.sort()
        taken: dict[str, tuple[int, int]] = {}  # group → span of its last hit
        out: list[tuple[int, int, str, str]] = []
        for start, _, end, entries in valid:
            span = (start, end)
            for term_id, term, group in entries:
                last = taken.get(group)
                if last is not None and last[1] > start and last != span:
                    continue
                taken[group] = span
                out.append((start, end, term_id, term))
        return out


def _ends_word(folded: str, end: int, tail: int) -> bool:
    after = folded[end]
    if tail == _HANGUL:
        return not _is_hangul(after) or _PARTICLE_CHAIN.match(folded, end) is not None
    if not _is_word(after):
        return True
    for suffix in LATIN_SUFFIXES:
        stop = end + len(suffix)
        if folded.startswith(suffix, end) and (stop >= len(folded) or not _is_word(folded[stop])):
            return True
    return False


# --- tagging items with a ruleset ---------------------------------------------------


class FiredRule(NamedTuple):
    """A news rule that matched, and why (the themes, terms and entities it saw)."""

    rule_id: str
    explanation: str


@dataclass(frozen=True)
class Tagging:
    """What one item is about.

    ``themes`` and ``entities`` map ids to their hits (``Hit.field`` says title or
    summary); a theme found by a near term lists the hits of its parts, one found by
    generic terms those terms. ``anchors`` are the anchors that hold, with the hits
    that make them hold. ``tickers`` are the entities' own and linked tickers;
    ``sectors`` those of the entities (and of the companies their tickers belong to)
    and of the themes. ``news_rules_fired`` are the news rules that matched, in ruleset
    order.
    """

    themes: dict[str, list[Hit]]
    entities: dict[str, list[Hit]]
    tickers: frozenset[str]
    sectors: frozenset[str]
    news_rules_fired: list[FiredRule]
    anchors: dict[str, list[Hit]] = dataclasses.field(default_factory=dict)


# Matcher ids for what is not an entity or theme carry a prefix with ':' (ids cannot).
_EXCLUDE, _TERM = "exclude:", "term:"

# What a matcher id stands for: (role, owner id, near-term index, part index).
_ENTITY, _THEME, _NEAR, _GENERIC, _GENERIC_NEAR = "entity", "theme", "near", "gen", "gnear"
_ANCHOR, _ANCHOR_NEAR, _REQUIRES, _REJECTS, _RULE_TERM = "anchor", "anear", "ctx+", "ctx-", "term"
_ANCHOR_REJECTS = "anchor-"
_Role = tuple[str, str, int, int]


@dataclass(frozen=True)
class _Index:
    matcher: Matcher
    news_rules: tuple[NewsRule, ...]
    # rule id → its terms condition, with one matcher id per term
    rule_terms: Mapping[str, Condition]
    entity_sectors: Mapping[str, frozenset[str]]
    roles: Mapping[str, _Role]
    # (role, owner, near index) → the near term, for themes, generic terms and anchors
    near: Mapping[tuple[str, str, int], NearTerm]
    # entity id → the references it answers to: its id, sector:TAG …, kind:KIND
    entity_refs: Mapping[str, frozenset[str]]
    # entities whose mentions their context decides
    contextual: frozenset[str]
    # rule id → the themes its ``all`` and ``any`` lists name
    rule_themes: Mapping[str, tuple[frozenset[str], frozenset[str]]]


_INDEXES: weakref.WeakKeyDictionary[Ruleset, _Index] = weakref.WeakKeyDictionary()


def compile_ruleset(ruleset: Ruleset) -> _Index:
    """The matcher and lookups for ``ruleset``, built once per ruleset object."""
    index = _INDEXES.get(ruleset)
    if index is not None:
        return index
    terms: dict[str, list[str]] = {}
    groups: dict[str, str] = {}
    roles: dict[str, _Role] = {}
    near: dict[tuple[str, str, int], NearTerm] = {}

    def add(term_id: str, written: Sequence[str], role: _Role) -> None:
        terms[term_id] = list(written)
        roles[term_id] = role

    def add_near(role: str, owner: str, specs: Sequence[NearTerm]) -> None:
        for k, spec in enumerate(specs):
            near[(role, owner, k)] = spec
            for n, alternatives in enumerate(spec.parts()):
                add(f"{role}:{owner}:{k}:{n}", alternatives, (role, owner, k, n))

    for entity in ruleset.entities.values():
        # Every alias competes with every other: the longest name wins.
        add(entity.id, entity.aliases, (_ENTITY, entity.id, 0, 0))
        groups[entity.id] = "entities"
        if entity.excludes:
            terms[_EXCLUDE + entity.id] = list(entity.excludes)
            groups[_EXCLUDE + entity.id] = "entities"
        context = entity.context
        if context is not None:
            if context.requires:
                add(f"{_REQUIRES}:{entity.id}", context.requires, (_REQUIRES, entity.id, 0, 0))
            if context.rejects:
                add(f"{_REJECTS}:{entity.id}", context.rejects, (_REJECTS, entity.id, 0, 0))
    for anchor in ruleset.anchors.values():
        if anchor.terms:
            add(f"{_ANCHOR}:{anchor.id}", anchor.terms, (_ANCHOR, anchor.id, 0, 0))
        if anchor.rejects:
            role = (_ANCHOR_REJECTS, anchor.id, 0, 0)
            add(f"{_ANCHOR_REJECTS}:{anchor.id}", anchor.rejects, role)
        add_near(_ANCHOR_NEAR, anchor.id, anchor.near)
    for theme in ruleset.themes.values():
        if theme.terms:  # its own group: themes may overlap
            add(theme.id, theme.terms, (_THEME, theme.id, 0, 0))
        add_near(_NEAR, theme.id, theme.near)
        if theme.generic is not None:
            if theme.generic.terms:
                add(f"{_GENERIC}:{theme.id}", theme.generic.terms, (_GENERIC, theme.id, 0, 0))
            add_near(_GENERIC_NEAR, theme.id, theme.generic.near)
    rule_terms: dict[str, Condition] = {}
    for rule in ruleset.news_rules():
        lists: dict[str, list[str]] = {}
        for list_name in ("any", "all", "none"):
            lists[list_name] = []
            for n, term in enumerate(getattr(rule.terms, list_name)):
                term_id = f"{_TERM}{rule.id}:{list_name}:{n}"
                add(term_id, [term], (_RULE_TERM, term_id, 0, 0))
                lists[list_name].append(term_id)
        rule_terms[rule.id] = Condition(**lists)
    entity_refs = {
        e.id: frozenset([e.id, "kind:" + e.kind, *("sector:" + t for t in ruleset.sectors_of(e))])
        for e in ruleset.entities.values()
    }
    index = _Index(
        matcher=Matcher.build(terms, groups=groups),
        news_rules=tuple(ruleset.news_rules()),
        rule_terms=rule_terms,
        entity_sectors={e.id: frozenset(ruleset.sectors_of(e)) for e in ruleset.entities.values()},
        roles=roles,
        near=near,
        entity_refs=entity_refs,
        contextual=frozenset(e.id for e in ruleset.entities.values() if e.context is not None),
        rule_themes={
            r.id: (frozenset(r.themes.all), frozenset(r.themes.any)) for r in ruleset.news_rules()
        },
    )
    _INDEXES[ruleset] = index
    return index


_HANGUL_SYLLABLE = re.compile("[\uac00-\ud7a3]")


def tag(
    item_title: str,
    item_summary: str,
    ruleset: Ruleset,
    *,
    source: str | None = None,
    language: str | None = None,
    source_type: str | None = None,
) -> Tagging:
    """Themes, entities, anchors, tickers and fired news rules of one news item.

    A news rule fires when its theme conditions hold; naming an entity resolves it
    (and its tickers) but is not a signal on its own. A rule with a ``sources`` (or
    ``source_types``) filter never fires when ``source`` (``source_type``) is not given;
    with no ``language`` given, an item with
    Hangul in it is Korean and any other is English.
    """
    index = compile_ruleset(ruleset)
    # Two scans: for two texts, joining them (find_all) costs more than it saves.
    hits = index.matcher.find(item_title, field="title")
    hits += index.matcher.find(item_summary, field="summary")
    themes: dict[str, list[Hit]] = {}
    entities: dict[str, list[Hit]] = {}
    terms: dict[str, list[Hit]] = {}
    # The rarer roles: near-term parts, generic terms, anchors, context words.
    other: dict[_Role, list[Hit]] = {}
    roles = index.roles
    for hit in hits:
        role = roles.get(hit.term_id)
        if role is None:
            continue  # an exclude: a longer name that means someone else; it only had to win
        kind = role[0]
        if kind == _THEME:
            themes.setdefault(hit.term_id, []).append(hit)
        elif kind == _ENTITY:
            entities.setdefault(hit.term_id, []).append(hit)
        elif kind == _RULE_TERM:
            terms.setdefault(hit.term_id, []).append(hit)
        else:
            other.setdefault(role, []).append(hit)
    words = _WordPositions({"title": item_title, "summary": item_summary})
    if index.contextual and not index.contextual.isdisjoint(entities):
        # Also with no context word found: a name that requires one is then no one.
        _apply_context(entities, other, ruleset, words)
    if other:
        for (kind, owner, k), found in _near_found(other, index.near, words).items():
            if kind == _NEAR:
                themes.setdefault(owner, []).extend(found)
            else:  # a generic or an anchor's near term: part -1 is the whole of it
                other.setdefault((kind, owner, k, -1), []).extend(found)
    _keep_fields(themes, ruleset)  # a title-only theme found in a summary is not there
    # An anchor holds by what was found: with nothing found (most items) none can.
    found_any = themes or entities or other
    anchors = (
        _anchors_holding(ruleset, index, themes, entities, other)
        if ruleset.anchors and found_any
        else {}
    )
    for (kind, owner, _, part), found in other.items():
        if kind == _GENERIC or (kind == _GENERIC_NEAR and part == -1):
            generic = ruleset.themes[owner].generic
            if generic is not None and generic.requires in anchors:
                themes.setdefault(owner, []).extend(found)
    _keep_fields(themes, ruleset)
    for found in themes.values():
        found.sort(key=lambda h: (h.field != "title", h.start))
    tickers: set[str] = set()
    sectors: set[str] = set()
    for entity_id in entities:
        tickers.update(ruleset.entities[entity_id].tickers())
        sectors |= index.entity_sectors[entity_id]
    for theme_id in themes:
        sectors.update(ruleset.themes[theme_id].sectors)
    fired: list[FiredRule] = []
    # Every news rule needs a theme or a term of its own: without one, none can fire.
    if themes or terms:
        if language is None:
            language = "ko" if _HANGUL_SYLLABLE.search(item_title + item_summary) else "en"
        evidence = _Evidence(themes, entities, terms, index)
        for rule in index.news_rules:
            if rule.sources is not None and source not in rule.sources:
                continue
            if rule.source_types is not None and source_type not in rule.source_types:
                continue
            if rule.languages is not None and language not in rule.languages:
                continue
            explanation = evidence.explain(rule)
            if explanation is not None:
                fired.append(FiredRule(rule.id, explanation))
    return Tagging(themes, entities, frozenset(tickers), frozenset(sectors), fired, anchors)


def _keep_fields(themes: dict[str, list[Hit]], ruleset: Ruleset) -> None:
    """Drop the hits of themes looked for in some fields only, outside them."""
    for theme_id in list(themes):
        fields = ruleset.themes[theme_id].fields
        if len(fields) < 2:
            kept = [h for h in themes[theme_id] if h.field in fields]
            if kept:
                themes[theme_id] = kept
            else:
                del themes[theme_id]


# A sentence ends at . ! ? or 。 before a space, or at a line break. A title is one
# unit whatever it holds ("…" and "," join its clauses).
_SENTENCE_END = re.compile(r"[.!?\u3002](?=\s)|\n")
_TOKEN = re.compile(r"\S+")


class _WordPositions:
    """Where a hit stands, in words and sentences, in the text of its field; computed
    only for texts where a near term or a context word was found."""

    def __init__(self, texts: Mapping[str, str]) -> None:
        self._texts = texts
        self._cache: dict[str, tuple[list[int], list[int]]] = {}
        self._places: dict[int, tuple[Sequence[Hit], list[tuple[str, int, int]]]] = {}

    def _tables(self, field_name: str) -> tuple[list[int], list[int]]:
        tables = self._cache.get(field_name)
        if tables is None:
            text = self._texts.get(field_name, "")
            starts = [m.start() for m in _TOKEN.finditer(text)]
            ends = [] if field_name == "title" else [m.end() for m in _SENTENCE_END.finditer(text)]
            tables = (starts, ends)
            self._cache[field_name] = tables
        return tables

    def where(self, hit: Hit) -> tuple[str | None, int, int]:
        """(field, sentence number, word number) of ``hit``."""
        starts, ends = self._tables(hit.field or "")
        return hit.field, bisect_right(ends, hit.start), bisect_right(starts, hit.start) - 1

    def places(self, hits: Sequence[Hit]) -> list[tuple[str, int, int]]:
        """(field, sentence, word) of each of ``hits``, sorted; kept per list."""
        key = id(hits)
        cached = self._places.get(key)
        if cached is None or cached[0] is not hits:
            where = self.where
            cached = (hits, sorted((h.field or "", *where(h)[1:]) for h in hits))
            self._places[key] = cached
        return cached[1]


def _near_found(
    other: Mapping[_Role, list[Hit]],
    specs: Mapping[tuple[str, str, int], NearTerm],
    words: _WordPositions,
) -> dict[tuple[str, str, int], list[Hit]]:
    """The near terms whose parts all stand within their window: their parts' hits."""
    parts: dict[tuple[str, str, int], dict[int, list[Hit]]] = {}
    for (kind, owner, k, n), hits in other.items():
        if kind in (_NEAR, _GENERIC_NEAR, _ANCHOR_NEAR) and n >= 0:
            parts.setdefault((kind, owner, k), {})[n] = hits
    found: dict[tuple[str, str, int], list[Hit]] = {}
    for key, by_part in parts.items():
        spec = specs[key]
        if len(by_part) < len(spec.all):
            continue
        # (field, sentence, word, part, hit), in text order: a window over it, so that a
        # long summary full of the parts costs n log n, not the product of their counts.
        placed = sorted(
            ((*words.where(h), n, h.start, h) for n, hits in by_part.items() for h in hits),
            key=lambda p: (p[0] or "", p[1], p[2], p[4]),
        )
        window = _ordered_window if spec.ordered else _any_order_window
        chosen = window(placed, len(spec.all), spec.within)
        if chosen is not None:
            found[key] = chosen
    return found


_Placed = tuple[str | None, int, int, int, int, Hit]  # field, sentence, word, part, start, hit


def _any_order_window(placed: Sequence[_Placed], parts: int, within: int) -> list[Hit] | None:
    """Hits of every part, one each, within ``within`` words in one field and sentence."""
    last: dict[int, _Placed] = {}  # part → its latest hit in the current sentence
    unit: tuple[str | None, int] | None = None
    for item in placed:
        if (item[0], item[1]) != unit:
            unit, last = (item[0], item[1]), {}
        last[item[3]] = item
        if len(last) == parts:
            first = min(last.values(), key=lambda p: p[2])
            spans = {(p[5].start, p[5].end) for p in last.values()}
            if item[2] - first[2] <= within and len(spans) == parts:
                return [p[5] for p in sorted(last.values(), key=lambda p: p[4])]
    return None


def _ordered_window(placed: Sequence[_Placed], parts: int, within: int) -> list[Hit] | None:
    """Hits of the parts in their written order, each after the one before, within
    ``within`` words in one field and sentence."""
    by_part: dict[int, list[_Placed]] = {}
    for item in placed:
        by_part.setdefault(item[3], []).append(item)
    # Per part, the keys its hits sort by (field, sentence, start): a bisect finds the
    # first hit of the next part after the one before.
    keys = {n: [(p[0] or "", p[1], p[4]) for p in items] for n, items in by_part.items()}
    for head in by_part.get(0, ()):
        chain = [head]
        for n in range(1, parts):
            previous = chain[-1]
            options, option_keys = by_part.get(n, []), keys.get(n, [])
            at = bisect_left(option_keys, (head[0] or "", head[1], previous[5].end))
            if at == len(options):
                break
            step = options[at]
            if (step[0], step[1]) != (head[0], head[1]) or step[2] - head[2] > within:
                break
            chain.append(step)
        if len(chain) == parts:
            return [p[5] for p in chain]
    return None


def _apply_context(
    entities: dict[str, list[Hit]],
    other: Mapping[_Role, list[Hit]],
    ruleset: Ruleset,
    words: _WordPositions,
) -> None:
    """Drop the mentions that their context says are someone else."""
    for entity_id in list(entities):
        context = ruleset.entities[entity_id].context
        if context is None:
            continue
        requires = other.get((_REQUIRES, entity_id, 0, 0), [])
        rejects = other.get((_REJECTS, entity_id, 0, 0), [])
        in_title = context.title and any(h.field == "title" for h in requires)
        kept = []
        for hit in entities[entity_id]:
            if rejects and _close(hit, rejects, context.within, words, context.rejects_before):
                continue
            if context.requires and not (
                _close(hit, requires, context.within, words) or (hit.field == "title" and in_title)
            ):
                continue
            kept.append(hit)
        if kept:
            entities[entity_id] = kept
        else:
            del entities[entity_id]


def _close(
    hit: Hit, others: Sequence[Hit], within: int, words: _WordPositions, before: bool = False
) -> bool:
    """Whether one of ``others`` stands within ``within`` words of ``hit`` (with
    ``before``, in front of it), in the same field and sentence (``others`` come in text
    order: one bisect, not a scan)."""
    field_name, sentence, number = words.where(hit)
    places = words.places(others)
    at = bisect_left(places, (field_name or "", sentence, number - within))
    # In front of the hit: up to the word before its own.
    last = number - 1 if before else number + within
    return at < len(places) and places[at] <= (field_name or "", sentence, last)


def _anchors_holding(
    ruleset: Ruleset,
    index: _Index,
    themes: Mapping[str, list[Hit]],
    entities: Mapping[str, list[Hit]],
    other: Mapping[_Role, list[Hit]],
) -> dict[str, list[Hit]]:
    """The anchors that hold in the item, each with the hits that make it hold."""
    holding: dict[str, list[Hit]] = {}
    for anchor in ruleset.anchors.values():
        found: list[Hit] = []
        if (_ANCHOR_REJECTS, anchor.id, 0, 0) not in other:
            found += other.get((_ANCHOR, anchor.id, 0, 0), ())
        for k in range(len(anchor.near)):
            found += other.get((_ANCHOR_NEAR, anchor.id, k, -1), ())
        if anchor.entities:
            wanted = set(anchor.entities)
            for entity_id, hits in entities.items():
                if not wanted.isdisjoint(index.entity_refs[entity_id]):
                    found += hits
        for theme_id in anchor.themes:
            # A theme's own terms and near terms only: its generic ones (added after this)
            # may need this very anchor.
            found += themes.get(theme_id, ())
        if found:
            holding[anchor.id] = sorted(found, key=lambda h: (h.field != "title", h.start))
    return holding


_Found = Mapping[str, list[Hit]]


class _Evidence:
    """The hits of one item, asked rule by rule (each rule reads its own fields)."""

    def __init__(self, themes: _Found, entities: _Found, terms: _Found, index: _Index) -> None:
        self.themes = themes
        self.entities = entities
        self.terms = terms
        self.index = index
        self._by_fields: dict[tuple[str, ...], tuple[_Found, _Found, _Found]] = {}

    def visible(self, fields: tuple[str, ...]) -> tuple[_Found, _Found, _Found]:
        """Themes, terms, and entities (with ``sector:TAG`` entries) seen in ``fields``."""
        found = self._by_fields.get(fields)
        if found is None:

            def only(hits_by_id: _Found) -> dict[str, list[Hit]]:
                kept = {k: [h for h in v if h.field in fields] for k, v in hits_by_id.items()}
                return {k: v for k, v in kept.items() if v}

            entities = only(self.entities)
            for entity_id, hits in list(entities.items()):
                for ref in self.index.entity_refs[entity_id]:
                    if ref != entity_id:
                        entities.setdefault(ref, []).extend(hits)
            found = (only(self.themes), only(self.terms), entities)
            self._by_fields[fields] = found
        return found

    def explain(self, rule: NewsRule) -> str | None:
        """Why ``rule`` fires, or ``None`` when it does not."""
        # What the item shows in any field is more than in the rule's fields: a rule
        # whose themes are absent from all of them cannot hold (most rules, most items).
        every, some = self.index.rule_themes[rule.id]
        found = self.themes.keys()
        if (every and not every <= found) or (some and found.isdisjoint(some)):
            return None
        themes, terms, entities = self.visible(tuple(rule.fields))
        term_refs = self.index.rule_terms[rule.id]
        if not (
            _holds(rule.themes, themes)
            and _holds(term_refs, terms)
            and _holds(rule.entities, entities)
        ):
            return None
        parts = []
        if shown := _evidence(rule.themes, themes):
            parts.append("themes " + shown)
        # A rule's own terms are shown as written, not by their internal ids.
        if shown := _evidence(term_refs, terms, lambda hits: hits[0].term):
            parts.append("terms " + shown)
        if shown := _evidence(rule.entities, entities):
            parts.append("about " + shown)
        return "; ".join(parts)


def _holds(condition: Condition, found: _Found) -> bool:
    return (
        (not condition.any or any(ref in found for ref in condition.any))
        and all(ref in found for ref in condition.all)
        and not any(ref in found for ref in condition.none)
    )


def _evidence(
    condition: Condition, found: _Found, name: Callable[[list[Hit]], str] | None = None
) -> str:
    """ "ref ('surface' in field), …" for the positive references that were found."""
    refs = [r for r in (*condition.any, *condition.all) if r in found]
    return ", ".join(_describe_hits(name(found[r]) if name else r, found[r]) for r in refs)


def _describe_hits(label: str, hits: Sequence[Hit]) -> str:
    shown: list[str] = []
    for hit in hits:
        text = f"{hit.surface!r} in {hit.field}" if hit.field else repr(hit.surface)
        if text not in shown:
            shown.append(text)
    return f"{label} ({', '.join(shown[:3])})"
