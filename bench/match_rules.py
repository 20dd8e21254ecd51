"""Throughput of rule matching: the default ruleset's matcher and tag() on one core.

Run: .venv/bin/python bench/match_rules.py  (prints figures; not a test)

A synthetic corpus of Korean and English news items (title + summary, ≥ 10 MB of
UTF-8 by default) is built from a fixed seed: general newsroom vocabulary with entity
names and theme terms as 4 % of the words (the seed corpus, all on-topic, has 3 %),
glued to particles, and in 15 % of the texts a "…", "㈜", full-width letters or a
double space, which take the slower folding path. MB/s counts UTF-8 bytes of the input
text (a Hangul syllable is 3 bytes).
Each figure is the best of ``--rounds`` rounds: on a shared machine noise only adds time.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import random
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.rules.match import Hit, Matcher, compile_ruleset, fold_text, spacing_variants, tag
from monitor.rules.model import Ruleset, load_rules, merge_rules, parse_rules_file


def _words(text: str) -> list[str]:
    return text.split()


KO_WORDS = _words(
    "정부는 오늘 발표했다 산업 육성 방안을 위해 대규모 예산을 편성하고 기업 지원을 확대한다고 "
    "밝혔다 시장 전문가들은 이번 정책이 국내 증시에 긍정적 영향을 줄 것으로 내다봤다 관계자는 "
    "올해 하반기 기술 개발 협력 논의 계획 추진 경쟁력 강화 글로벌 진출 업계 서비스 출시 "
    "경제 성장 전망 금리 인상 환율 수출 실적 발표 분기 영업이익 증가 감소 주가 상승 하락 "
    "코스피 거래 투자자 매도 매수 기록 지난 대비 이날 오전 오후 서울 부산 지역 주민 행사"
)
EN_WORDS = _words(
    "the government said on tuesday it would expand support for the industry with a large "
    "budget and analysts expect the policy to lift local shares while officials plan new "
    "measures to boost growth exports earnings rose fell quarter operating profit market "
    "investors sold bought record session morning afternoon seoul company service launch "
    "global competition technology development cooperation plan"
)
PARTICLE_TAILS = ("", "", "", "가", "는", "의", "와", "에서", "도", "를", "이", "은")
ODD = ("…", "  ", "ＡＩ", "㈜")


def corpus_terms(ruleset: Ruleset) -> tuple[list[str], list[str], list[str], list[str]]:
    """(Korean entity names, English ones, Korean theme terms, English ones)."""
    hangul = re.compile("[\uac00-\ud7a3]")
    names = [a for e in ruleset.entities.values() for a in e.aliases]
    terms = [t for th in ruleset.themes.values() for t in th.terms]
    return (
        [n for n in names if hangul.search(n)],
        [n for n in names if not hangul.search(n)],
        [t for t in terms if hangul.search(t)],
        [t for t in terms if not hangul.search(t)],
    )


def make_items(ruleset: Ruleset, megabytes: float, seed: int) -> list[tuple[str, str]]:
    """Titles and summaries, 70 % Korean, until the corpus holds ``megabytes`` of UTF-8."""
    rng = random.Random(seed)
    ko_names, en_names, ko_terms, en_terms = corpus_terms(ruleset)

    def text(words: int, korean: bool) -> str:
        vocab, names, terms = (
            (KO_WORDS, ko_names, ko_terms) if korean else (EN_WORDS, en_names, en_terms)
        )
        out: list[str] = []
        for _ in range(words):
            roll = rng.random()
            if roll < 0.022:
                word = rng.choice(names)
            elif roll < 0.04:
                word = rng.choice(terms)
            else:
                word = rng.choice(vocab)
            if korean and roll < 0.04:
                word += rng.choice(PARTICLE_TAILS)
            out.append(word)
        if rng.random() < 0.15:
            out.insert(rng.randrange(len(out)), rng.choice(ODD))
        return " ".join(out)

    items: list[tuple[str, str]] = []
    size = 0
    target = megabytes * 1_000_000
    while size < target:
        korean = rng.random() < 0.7
        title = text(rng.randint(6, 12), korean)
        summary = text(rng.randint(30, 80), korean)
        items.append((title, summary))
        size += len(title.encode()) + len(summary.encode())
    return items


def best_time(fn: Callable[[], object], rounds: int) -> float:
    fn()  # warm-up: caches, the matcher build
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=12.0, help="corpus size in MB of UTF-8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20250618)
    parser.add_argument("--batch", type=int, default=50, help="items per find_all call")
    parser.add_argument(
        "--baselines", action="store_true", help="also time a single regex and pyahocorasick"
    )
    parser.add_argument(
        "--headlines",
        action="store_true",
        help="also time find() and tag() on the labelled headlines of tests/fixtures/judgement",
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="also time a first-stage matcher without the words only some items need "
        "(context words, generic terms, all but one part of each near term), and count the "
        "items that would need the rest",
    )
    parser.add_argument(
        "--hyperscan",
        action="store_true",
        help="also compile the patterns with their word boundaries for Hyperscan (the "
        "hyperscan package, if installed) and time its scan with a callback per match",
    )
    parser.add_argument(
        "--vectorised",
        action="store_true",
        help="also time a rough numpy pass over each text's candidates (the word-start "
        "check and the easy word ends only), beside the matcher's whole Python pass",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        help="a rules file on its own (no defaults under it): its automaton and find() on "
        "the same corpus, beside the default ruleset's",
    )
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        # One core: the daemon runs rules on its one event-loop thread.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    build_start = time.perf_counter()
    ruleset = load_rules(None)
    loaded = time.perf_counter()
    index = compile_ruleset(ruleset)
    built = time.perf_counter()
    matcher = index.matcher

    items = make_items(ruleset, args.mb, args.seed)
    texts = [t for item in items for t in item]
    nbytes = sum(len(t.encode()) for t in texts)
    nchars = sum(len(t) for t in texts)
    slow = sum(1 for t in texts if fold_text(t)[1] is not None)

    def run_find() -> int:
        return sum(len(matcher.find(t)) for t in texts)

    batches = [
        [t for item in items[i : i + args.batch] for t in item]
        for i in range(0, len(items), args.batch)
    ]

    def run_find_batches() -> int:
        return sum(len(h) for batch in batches for h in matcher.find_all(batch))

    def run_fold() -> int:
        return sum(len(fold_text(t)[0]) for t in texts)

    def run_tag() -> int:
        return sum(len(tag(title, summary, ruleset).news_rules_fired) for title, summary in items)

    hits = run_find()
    if run_find_batches() != hits:
        raise SystemExit("find_all found other hits than find: a bug")
    fired = run_tag()
    results: list[tuple[str, float, float | None]] = []
    t_find = best_time(run_find, args.rounds)
    name = "Matcher.find, one call per text (title, summary)"
    results.append((name, nbytes / t_find, len(items) / t_find))
    t_batches = best_time(run_find_batches, args.rounds)
    name = f"Matcher.find_all, {args.batch} items ({2 * args.batch} texts) per call"
    results.append((name, nbytes / t_batches, len(items) / t_batches))
    t_fold = best_time(run_fold, args.rounds)
    results.append(
        ("  fold_text alone (what find() does first for odd texts)", nbytes / t_fold, None)
    )
    t_tag = best_time(run_tag, args.rounds)
    results.append(("tag(): both fields, then the news rules", nbytes / t_tag, len(items) / t_tag))
    if matcher.native:
        # The same patterns on the Python path, for builds without a C compiler.
        python = Matcher(matcher._keys, matcher._patterns, native=False)
        if sum(len(python.find(t)) for t in texts) != hits:
            raise SystemExit("the Python path found other hits than the C scanner: a bug")
        t_python = best_time(lambda: sum(len(python.find(t)) for t in texts), args.rounds)
        name = "Matcher.find on the Python path (KMON_NATIVE_MATCHER=off)"
        results.append((name, nbytes / t_python, len(items) / t_python))

    if args.baselines:
        folded = [fold_text(t)[0] for t in texts]
        keys = sorted(
            {v for term_list in _all_terms(ruleset) for v in spacing_variants(term_list)},
            key=len,
            reverse=True,
        )
        alternation = re.compile("|".join(map(re.escape, keys)))
        t_re = best_time(lambda: sum(len(alternation.findall(t)) for t in folded), args.rounds)
        name = f"baseline: one regex of {len(keys)} terms, scan only"
        results.append((name, nbytes / t_re, None))
        try:
            import ahocorasick  # type: ignore[import-not-found]
        except ImportError:
            print("pyahocorasick is not installed: its baseline is skipped")
        else:
            automaton = ahocorasick.Automaton()
            for n, key in enumerate(keys):
                automaton.add_word(key, n)
            automaton.make_automaton()
            t_pa = best_time(lambda: sum(1 for t in folded for _ in automaton.iter(t)), args.rounds)
            results.append(("baseline: pyahocorasick, scan only", nbytes / t_pa, None))
        import ahocorasick_rs

        rs = ahocorasick_rs.AhoCorasick(keys, implementation=ahocorasick_rs.Implementation.DFA)
        t_rs = best_time(
            lambda: sum(len(rs.find_matches_as_indexes(t, overlapping=True)) for t in folded),
            args.rounds,
        )
        results.append(("baseline: ahocorasick-rs DFA, scan only", nbytes / t_rs, None))

    sets = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "judgement"
    titles = [
        line.split("\t")[1]
        for path in sorted(sets.glob("*.tsv"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line[:1] in ("+", "-")
    ]
    if args.headlines:
        size = sum(len(t.encode()) for t in titles)
        t_find = best_time(lambda: [matcher.find(t) for t in titles], args.rounds)
        t_tag = best_time(lambda: [tag(t, "", ruleset) for t in titles], args.rounds)
        name = f"headlines ({len(titles):,} labelled titles): Matcher.find"
        results.append((name, size / t_find, len(titles) / t_find))
        results.append(("headlines: tag(), title only", size / t_tag, len(titles) / t_tag))

    notes: list[str] = []
    if args.stages:
        results += _stages(ruleset, items, texts, titles, nbytes, args.rounds, notes)
    if args.hyperscan:
        results += _hyperscan(matcher, texts, nbytes, args.rounds, notes)
    if args.vectorised:
        results += _vectorised(matcher, texts, nbytes, args.rounds, notes)

    if args.compare is not None:
        folded = [fold_text(t)[0] for t in texts]
        for label, rules in (
            ("default", ruleset),
            (str(args.compare), merge_rules([parse_rules_file(args.compare)])),
        ):
            other = compile_ruleset(rules).matcher
            automaton = other._automaton
            assert automaton is not None
            candidates = sum(
                len(automaton.find_matches_as_indexes(f, overlapping=True)) for f in folded
            )
            t_scan = best_time(
                lambda a=automaton: [
                    a.find_matches_as_indexes(f, overlapping=True) for f in folded
                ],
                args.rounds,
            )
            t_other = best_time(lambda m=other: [m.find(t) for t in texts], args.rounds)
            results.append(
                (
                    f"{label}: {len(other)} patterns, {candidates:,} candidates; automaton only",
                    nbytes / t_scan,
                    None,
                )
            )
            results.append((f"{label}: Matcher.find", nbytes / t_other, len(items) / t_other))

    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs (pinned to one); Python "
        f"{platform.python_version()}; ahocorasick-rs {version('ahocorasick_rs')}, "
        f"pydantic {version('pydantic')}"
    )
    print(
        f"ruleset: {len(ruleset.entities)} entities, {len(ruleset.themes)} themes, "
        f"{len(ruleset.rules)} rules -> {len(matcher)} patterns; "
        f"load {loaded - build_start:.3f} s, compile {built - loaded:.3f} s; "
        f"scanner: {'C (monitor/rules/_scan.c)' if matcher.native else 'Python'}"
    )
    print(
        f"corpus: {len(items):,} items, {nbytes / 1e6:.1f} MB UTF-8 ({nchars / 1e6:.1f} M chars), "
        f"{slow / len(texts):.0%} of texts on the slow folding path; {hits:,} hits, "
        f"{fired:,} news rules fired; best of {args.rounds} rounds"
    )
    for note in notes:
        print(note)
    print()
    print("| what | MB/s | items/s |")
    print("|---|---|---|")
    for name, rate, per_item in results:
        items_s = f"{per_item:,.0f}" if per_item is not None else ""
        print(f"| {name} | {rate / 1e6:.1f} | {items_s} |")


def _stages(
    ruleset: Ruleset,
    items: list[tuple[str, str]],
    texts: list[str],
    headlines: list[str],
    nbytes: int,
    rounds: int,
    notes: list[str],
) -> list[tuple[str, float, float | None]]:
    """A two-stage scan, measured without being built: every text scanned for the
    first stage's terms, the second stage's scanned only in the items whose first
    stage calls for it (a name whose context decides it, the trigger part of a near
    term, a generic term's anchor holding)."""
    index = compile_ruleset(ruleset)
    written: dict[str, list[str]] = {}
    groups: dict[str, str] = {}
    for entries, _, _ in index.matcher._patterns:
        for term_id, term, group in entries:
            if term not in written.setdefault(term_id, []):
                written[term_id].append(term)
            groups[term_id] = group
    # Per near term, the part whose shortest alternative is longest: short words
    # ("AI", "to") are everywhere.
    trigger = {
        key: max(
            range(len(spec.parts())),
            key=lambda n, s=spec: (min(len(spacing_variants(a)[0]) for a in s.parts()[n]), -n),
        )
        for key, spec in index.near.items()
    }
    lazy_kinds = ("ctx+", "ctx-", "gen", "gnear")

    def first(term_id: str) -> bool:
        role = index.roles.get(term_id)
        if role is None:
            return True
        if role[0] in lazy_kinds:
            return False
        if role[0] in ("near", "anear"):
            return trigger[role[:3]] == role[3]
        return True

    one = Matcher.build({k: v for k, v in written.items() if first(k)}, groups=groups)
    two = Matcher.build({k: v for k, v in written.items() if not first(k)}, groups=groups)

    def needs_second(title: str, summary: str, hits: list[Hit]) -> bool:
        roles = [index.roles.get(h.term_id) for h in hits]
        anchors = tag(title, summary, ruleset).anchors
        return (
            any(r is not None and r[0] == "entity" and r[1] in index.contextual for r in roles)
            or any(r is not None and r[0] in ("near", "anear") for r in roles)
            or any(
                t.generic is not None and t.generic.requires in anchors
                for t in ruleset.themes.values()
            )
        )

    for label, pairs in (("items", items), ("headlines", [(t, "") for t in headlines])):
        needing = made = every = 0
        for title, summary in pairs:
            hits = one.find(title) + one.find(summary)
            every += len(index.matcher.find(title)) + len(index.matcher.find(summary))
            made += len(hits)
            if needs_second(title, summary, hits):
                needing += 1
                made += len(two.find(title)) + len(two.find(summary))
        notes.append(
            f"stages, {label}: {needing / len(pairs):.0%} would need the second stage; "
            f"{made:,} hits made in two stages against {every:,} in one"
        )
    notes.append(f"stages: first {len(one)} patterns, second {len(two)}")
    size = sum(len(t.encode()) for t in headlines)
    t_one = best_time(lambda: [one.find(t) for t in texts], rounds)
    t_full = best_time(lambda: [index.matcher.find(t) for t in texts], rounds)
    t_heads = best_time(lambda: [one.find(t) for t in headlines], rounds)
    t_heads_full = best_time(lambda: [index.matcher.find(t) for t in headlines], rounds)
    return [
        ("stages: first stage, Matcher.find", nbytes / t_one, len(items) / t_one),
        ("stages: beside it, the whole matcher again", nbytes / t_full, len(items) / t_full),
        ("stages: headlines, first stage", size / t_heads, len(headlines) / t_heads),
        ("stages: headlines, the whole matcher again", size / t_heads_full, None),
    ]


def _hyperscan(
    matcher: Matcher, texts: list[str], nbytes: int, rounds: int, notes: list[str]
) -> list[tuple[str, float, float | None]]:
    """The matcher's patterns as Hyperscan regexes carrying their word boundaries
    (consumed, as Hyperscan has no lookaround; a chain of any number of particles, as
    it refuses the patterns with {1,4}), leftmost start of match: its compile time and
    a scan with a Python callback per match, the least that path would cost before any
    hit is made."""
    try:
        import hyperscan  # type: ignore[import-not-found]
    except ImportError:
        notes.append("hyperscan is not installed: its figures are skipped")
        return []
    from monitor.rules import match

    keys = _keys(matcher)
    # The letters and digits below U+1100 (match._is_word), as ranges of code points.
    word_chars = [c for c in range(0x1100) if chr(c).isalnum() or chr(c) == "_"]
    runs: list[list[int]] = []
    for c in word_chars:
        if runs and runs[-1][1] == c - 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    word = "".join(f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in runs)
    hangul = "".join(
        f"\\x{{{a:x}}}-\\x{{{b:x}}}"
        for a, b in (
            (0x1100, 0x11FF),
            (0x3130, 0x318F),
            (0xA960, 0xA97F),
            (0xAC00, 0xD7A3),
            (0xD7B0, 0xD7FF),
        )
    )
    particle = "(?:" + "|".join(sorted(match.PARTICLES, key=len, reverse=True)) + ")"
    left = {match._HANGUL: f"(?:^|[^{hangul}])", match._WORD: f"(?:^|[^{word}])"}
    right = {
        match._HANGUL: f"{particle}*(?:[^{hangul}]|$)",
        match._WORD: f"(?:e?s)?(?:[^{word}]|$)",
    }

    def expression(key: str) -> bytes:
        body = "".join(c if c.isalnum() or ord(c) > 127 else "\\" + c for c in key)
        head, tail = match._char_class(key[0]), match._char_class(key[-1])
        return (left.get(head, "") + body + right.get(tail, "")).encode()

    start = time.perf_counter()
    database = hyperscan.Database()
    database.compile(
        expressions=[expression(k) for k in keys],
        ids=list(range(len(keys))),
        elements=len(keys),
        flags=[hyperscan.HS_FLAG_SOM_LEFTMOST | hyperscan.HS_FLAG_UTF8] * len(keys),
    )
    compiled = time.perf_counter() - start
    size = len(hyperscan.dumpb(database))
    encoded = [fold_text(t)[0].encode() for t in texts]
    found: list[tuple[int, int, int]] = []

    def on_match(pattern: int, start: int, end: int, flags: int, context: object) -> None:
        found.append((pattern, start, end))

    def scan() -> None:
        found.clear()
        for data in encoded:
            database.scan(data, match_event_handler=on_match)

    t_scan = best_time(scan, rounds)
    automaton = matcher._automaton
    assert automaton is not None
    folded = [fold_text(t)[0] for t in texts]
    t_automaton = best_time(
        lambda: [automaton.find_matches_as_indexes(f, overlapping=True) for f in folded], rounds
    )
    notes.append(
        f"hyperscan {version('hyperscan')}: {len(keys)} patterns compiled in {compiled:.1f} s "
        f"({size / 1e6:.1f} MB serialised); {len(found):,} matches"
    )
    return [
        (
            "hyperscan, boundaries in the patterns: scan + a callback per match",
            nbytes / t_scan,
            None,
        ),
        ("beside it: the matcher's automaton, scan only", nbytes / t_automaton, None),
    ]


def _vectorised(
    matcher: Matcher, texts: list[str], nbytes: int, rounds: int, notes: list[str]
) -> list[tuple[str, float, float | None]]:
    """Part of the matcher's per-candidate checks as numpy operations on one text's
    candidates: only what the array part could do (the class of the character before
    and after each), less than the Python pass does (no particles, plurals, overlaps,
    offsets or hits), to see what numpy's cost per call leaves."""
    try:
        import numpy as np
    except ImportError:
        notes.append("numpy is not installed: the vectorised figures are skipped")
        return []
    automaton = matcher._automaton
    assert automaton is not None
    patterns = matcher._patterns
    head = np.array([p[1] for p in patterns], dtype=np.int8)
    tail = np.array([p[2] for p in patterns], dtype=np.int8)
    folded = [fold_text(t)[0] for t in texts]

    def checks(text: str) -> object:
        found = automaton.find_matches_as_indexes(text, overlapping=True)
        if not found:
            return None
        table = np.array(found, dtype=np.int64)
        code = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        # Hangul syllables 1, ASCII 2, the rest 0: rougher than the matcher's classes.
        kind = np.where((code >= 0xAC00) & (code <= 0xD7A3), 1, np.where(code < 0x80, 2, 0))
        index, start, end = table[:, 0], table[:, 1], table[:, 2]
        before = np.where(start > 0, kind[np.maximum(start - 1, 0)], 0)
        after = np.where(end < len(text), kind[np.minimum(end, len(text) - 1)], 0)
        starts_word = ~((head[index] != 0) & (before == head[index]))
        ends_plainly = (after == 0) | (tail[index] == 0)
        return starts_word & ends_plainly

    t_numpy = best_time(lambda: [checks(f) for f in folded], rounds)
    t_python = best_time(lambda: [matcher._scan(f) for f in folded], rounds)
    t_lists = best_time(
        lambda: [automaton.find_matches_as_indexes(f, overlapping=True) for f in folded], rounds
    )
    t_arrays = best_time(
        lambda: [
            np.array(automaton.find_matches_as_indexes(f, overlapping=True), dtype=np.int64)
            for f in folded
        ],
        rounds,
    )
    notes.append(f"numpy {version('numpy')}")
    return [
        ("vectorised: automaton + a part of the checks in numpy, per text", nbytes / t_numpy, None),
        ("beside it: automaton + the whole Python pass (_scan)", nbytes / t_python, None),
        ("beside it: the automaton alone", nbytes / t_lists, None),
        ("beside it: the automaton, its candidates made an array", nbytes / t_arrays, None),
    ]


def _keys(matcher: Matcher) -> list[str]:
    """The matcher's patterns (the folded terms with their spacing variants), in order."""
    keys: dict[str, None] = {}
    for entries, _, _ in matcher._patterns:
        for _, term, _ in entries:
            for key in spacing_variants(term):
                keys.setdefault(key, None)
    return list(keys)


def _all_terms(ruleset: Ruleset) -> list[str]:
    terms = [a for e in ruleset.entities.values() for a in (*e.aliases, *e.excludes)]
    return terms + [t for th in ruleset.themes.values() for t in th.terms]


if __name__ == "__main__":
    main()
