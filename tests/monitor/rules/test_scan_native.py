"""The C scanner (monitor/rules/_scan.c) against the Python path it stands in for.

The two must give the same hits, field for field, on any text: random texts made of
the pieces that decide a match (terms of the default ruleset, particles, capitals,
characters that fold to another length, combining marks, jamo, whitespace of every
kind, characters above the BMP), the labelled headlines and the seed corpus. And the
scanner must refuse malformed input with an error rather than read out of bounds.
KMON_FUZZ_EXAMPLES raises the number of random examples (default 300).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.rules import match
from monitor.rules.match import LATIN_SUFFIXES, PARTICLES, Hit, Matcher, compile_ruleset
from monitor.rules.model import SEPARATOR, load_rules

ROOT = Path(__file__).resolve().parents[3]
JUDGEMENT = ROOT / "tests" / "fixtures" / "judgement"
CORPUS = ROOT.parent / "shared" / "corpus"

EXAMPLES = int(os.environ.get("KMON_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("KMON_FUZZ_EXAMPLES") is None,  # the suite stays stable
)

needs_native = pytest.mark.skipif(match._scan is None, reason="the C scanner is not built")


def test_the_c_scanner_is_built() -> None:
    """An install with a C compiler has it; KMON_BUILD_NATIVE=off builds without it."""
    if os.environ.get("KMON_BUILD_NATIVE", "").lower() in ("off", "0", "no", "false"):
        pytest.skip("built without the C scanner on purpose")
    assert match._scan is not None
    assert compile_ruleset(load_rules(None)).matcher.native


@pytest.fixture(scope="module")
def default_pair() -> tuple[Matcher, Matcher]:
    native = compile_ruleset(load_rules(None)).matcher
    python = Matcher(native._keys, native._patterns, native=False)
    return native, python


def both(pair: tuple[Matcher, Matcher], text: str, field: str | None = "title") -> list[Hit]:
    native, python = pair
    found = native.find(text, field=field)
    expected = python.find(text, field=field)
    assert found == expected, text
    assert all(type(hit) is Hit for hit in found)
    return found


def _default_pieces() -> list[str]:
    ruleset = load_rules(None)
    pieces = [a for e in ruleset.entities.values() for a in e.aliases]
    pieces += [t for th in ruleset.themes.values() for t in th.terms]
    return sorted(set(pieces))


PIECES = _default_pieces()
ODD = [
    "…",
    "㈜",
    "Ａ",
    "ＡＩ",
    "  ",
    "\t",
    "\n",
    "\u00a0",
    "\u3000",
    "e\u0301",
    "\u0301",
    "ᄒ",
    "\u1161",
    "ᆫ",
    "ㄱ",
    "ㅏ",
    "ß",
    "İ",
    "Σ",
    "“",
    "·",
    "，",
    "😀",
    "𠀀",
    "\u20dd",
    "ﬁ",
    "™",
    "①",
    "½",
    "É",
    "Ⅻ",
    "ﾠ",
    "㎏",
    "ｶ",
    "Ω",
    "ǅ",
    SEPARATOR,
    "_",
    "'",
    "’",
]
text_pieces = st.one_of(
    st.sampled_from(PIECES),
    st.sampled_from(PIECES).map(str.upper),
    st.sampled_from(PARTICLES),
    st.sampled_from(LATIN_SUFFIXES),
    st.sampled_from(ODD),
    st.sampled_from([" ", " ", "-", "(", ")", "정부", "발표", "네", "카", "the", "said", "AI"]),
    st.text(max_size=4),
)
texts = st.lists(text_pieces, max_size=24).map("".join)


@needs_native
@FUZZ
@given(texts)
def test_the_scanner_finds_what_the_python_path_finds(
    default_pair: tuple[Matcher, Matcher], text: str
) -> None:
    for hit in both(default_pair, text):
        assert hit.surface == text[hit.start : hit.end]


@needs_native
@FUZZ
@given(
    st.lists(
        st.sampled_from(["ab", "b", "abc", "가", "가나", "나다", "AI", "ai 기본"]), min_size=1
    ),
    texts,
)
def test_any_terms_and_groups_give_the_same_hits(words: list[str], text: str) -> None:
    terms = {f"t{i}": [w] for i, w in enumerate(dict.fromkeys(words))}
    groups = {term_id: ("g" if i % 2 else "h") for i, term_id in enumerate(terms)}
    for grouping in (None, groups, {}):
        native = Matcher.build(terms, groups=grouping)
        python = Matcher.build(terms, groups=grouping, native=False)
        assert native.native and not python.native
        assert native.find(text) == python.find(text), (terms, grouping, text)


@needs_native
def test_the_labelled_headlines_and_the_corpus_give_the_same_hits(
    default_pair: tuple[Matcher, Matcher],
) -> None:
    lines = [
        line.split("\t")[1]
        for path in sorted(JUDGEMENT.glob("*.tsv"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.count("\t") >= 1 and not line.startswith("#")
    ]
    assert len(lines) > 1000
    if CORPUS.is_dir():
        lines += [
            line
            for path in sorted(CORPUS.glob("*.txt"))
            for line in path.read_text(encoding="utf-8").splitlines()
        ]
    hits = sum(len(both(default_pair, line, field=None)) for line in lines)
    assert hits > len(lines)  # the comparison was not between two empty lists


@needs_native
@pytest.mark.parametrize(
    "text",
    [
        "네이버가",
        "NAVER's",
        "AI기본법을",
        "GPUs",
        "GPUS",
        "㈜네이버의 발표",
        "발표…네이버가",
        "",
        " ",
    ],
)
def test_edge_texts(default_pair: tuple[Matcher, Matcher], text: str) -> None:
    both(default_pair, text)


@needs_native
def test_a_term_above_the_bmp_is_found() -> None:
    terms = {"rocket": ["🚀 발사"], "han": ["𠀀자"]}
    for text in ("오늘 🚀 발사가", "🚀발사", "𠀀자는", "x𠀀자"):
        assert Matcher.build(terms).find(text) == Matcher.build(terms, native=False).find(text)
    assert [h.term_id for h in Matcher.build(terms).find("오늘 🚀 발사가")] == ["rocket"]


# --- malformed input is refused -----------------------------------------------------


@needs_native
@pytest.mark.parametrize(
    ("patterns", "error"),
    [
        ([("", 1, 1, (("a", "a", "g"),))], ValueError),
        ([("a", 1, 1, (("a", "a", "g"),)), ("a", 1, 1, (("b", "b", "g"),))], ValueError),
        ([("a", 1, 1)], TypeError),
        ([("a", 1, 1, [("a", "a", "g")])], TypeError),
        ([("a", 1, 1, (("a", "a"),))], TypeError),
        ([("a", 1, 1, ((1, "a", "g"),))], TypeError),
        ([b"a"], TypeError),
        (5, TypeError),
    ],
)
def test_bad_patterns_are_refused(patterns: object, error: type[Exception]) -> None:
    assert match._scan is not None
    with pytest.raises(error):
        match._scan.Scanner(patterns, PARTICLES, LATIN_SUFFIXES, 4, "")  # type: ignore[arg-type]


@needs_native
def test_bad_settings_and_calls_are_refused() -> None:
    assert match._scan is not None
    Scanner = match._scan.Scanner
    pattern = [("ab", 2, 2, (("x", "ab", "g"),))]
    with pytest.raises(ValueError):
        Scanner(pattern, PARTICLES, LATIN_SUFFIXES, 99, "")
    with pytest.raises(ValueError):
        Scanner(pattern, PARTICLES, LATIN_SUFFIXES, 4, "a")  # ASCII is not a plain extra
    with pytest.raises(TypeError):
        Scanner(pattern, [1], LATIN_SUFFIXES, 4, "")
    scanner = Scanner(pattern, PARTICLES, LATIN_SUFFIXES, 4, "")
    with pytest.raises(ValueError):
        scanner.hits("ab", "abc", None, Hit)
    with pytest.raises(TypeError):
        scanner.hits("ab", "ab", None, dict)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        scanner.spans(b"ab")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        scanner.mapped("ab", "ab", None, Hit, [])
    with pytest.raises(ValueError):
        scanner.mapped("ab", "ab", None, Hit, [(0, 0, 9, True)])
    with pytest.raises(ValueError):
        scanner.mapped("ab", "ab", None, Hit, [(1, 0, 2, True), (0, 0, 2, True)])
    assert scanner.find("AB", "title", Hit) == [Hit("x", 0, 2, "AB", "ab", "title")]
    assert scanner.find("a…b", None, Hit) is None  # needs folding first
    assert scanner.spans("xab ab") == [(4, 6, "x", "ab")]


def test_the_python_path_can_be_chosen_at_start() -> None:
    code = (
        "from monitor.rules.match import compile_ruleset; from monitor.rules.model import "
        "load_rules; print(compile_ruleset(load_rules(None)).matcher.native)"
    )
    env = {**os.environ, "KMON_NATIVE_MATCHER": "off"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
