"""Cost of story clustering: assigning new headlines against a 48 h window of stories.

Run: .venv/bin/python bench/cluster.py  (prints figures; not a test)

A synthetic two days of news is built from a fixed seed: stories of four to eight
words (one or two entity names and one or two theme terms of the default ruleset, the
rest newsroom words drawn with Zipf weights from ``--vocabulary`` words a language, now
and then a figure), 70 % Korean, each seen one to four times as an outlet would retitle
it (words reordered, a particle glued on, a [속보] tag or an outlet suffix).
``--members`` of them are put into the window the way a restart does
(:meth:`StoryClusters.add`), spread over 48 h; then ``--headlines`` more are assigned,
half of them further copies of stories in the window (an hour after the story), half
new stories, and timed. The items are tagged before the clock starts: tagging is the
matcher's cost, not the clusterer's. Each figure is the best of ``--rounds`` rounds
(fresh clusters each).

``--template``: instead, a flood of one policy story's coverage, the headlines
bench/profile_ingest.py serves at ``--topical 1`` (a company, an on-topic term, an
amount and a verb in every one, then four made-up words of its own: every headline a
story, each sharing its template with thousands); the copies assigned are those
headlines retitled as above.

Besides the cost: *copies joined*, the copies that joined their own story, and *new
merged*, the new stories that joined one in the window. The made-up stories combine a
few dozen entities and themes at random, so two of them can name the same entities and
themes by chance; *new merged* counts those too and is an upper bound on wrong merges.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import re
import sys
import time
import tracemalloc
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.rules.cluster import StoryClusters, StoryTags
from monitor.rules.engine import story_tags
from monitor.rules.match import tag
from monitor.rules.model import Ruleset, load_rules
from monitor.timefmt import KST

KO_WORDS = [
    "정부",
    "발표",
    "산업",
    "육성",
    "방안",
    "대규모",
    "예산",
    "편성",
    "기업",
    "지원",
    "확대",
    "시장",
    "전문가",
    "정책",
    "국내",
    "증시",
    "긍정적",
    "영향",
    "관계자",
    "하반기",
    "기술",
    "개발",
    "협력",
    "논의",
    "계획",
    "추진",
    "경쟁력",
    "강화",
    "글로벌",
    "진출",
    "업계",
    "서비스",
    "출시",
    "경제",
    "성장",
    "전망",
    "금리",
    "환율",
    "수출",
    "실적",
    "분기",
    "영업이익",
    "증가",
    "감소",
    "주가",
    "상승",
    "하락",
    "코스피",
    "거래",
    "투자자",
    "매도",
    "매수",
    "기록",
    "지역",
    "행사",
    "공개",
    "착수",
    "협약",
    "체결",
    "간담회",
    "개최",
    "방문",
    "점검",
    "확정",
    "검토",
    "추진단",
    "출범",
    "선정",
    "참여",
    "합류",
    "도입",
    "연기",
    "철회",
    "논란",
    "반발",
    "우려",
    "기대",
    "신설",
]
EN_WORDS = [
    "government",
    "expand",
    "support",
    "industry",
    "budget",
    "analysts",
    "expect",
    "policy",
    "lift",
    "shares",
    "officials",
    "plan",
    "measures",
    "boost",
    "growth",
    "exports",
    "earnings",
    "quarter",
    "profit",
    "market",
    "investors",
    "record",
    "company",
    "service",
    "launch",
    "global",
    "competition",
    "technology",
    "development",
    "cooperation",
    "deal",
    "signs",
    "unveils",
    "opens",
    "hosts",
    "delays",
    "scraps",
    "wins",
    "joins",
    "backs",
    "reviews",
    "warns",
    "eyes",
]
PARTICLES = ("", "", "가", "는", "의", "와", "에서", "도", "를", "이", "은")
TAGS = ("[속보] ", "[단독] ", "(종합) ", "[포토] ", "", "", "")
SUFFIXES = (" - 연합뉴스", " | 한국경제", " - 매일경제", " - Reuters", "", "", "")
START = datetime(2025, 6, 16, 0, 0, tzinfo=KST)
WINDOW = timedelta(hours=48)


def vocabulary(ruleset: Ruleset) -> dict[bool, tuple[list[str], list[str]]]:
    """Korean (True) and English (False) entity names and theme terms of ``ruleset``."""
    hangul = re.compile("[\uac00-\ud7a3]")
    names = [a for e in ruleset.entities.values() for a in e.aliases]
    terms = [t for th in ruleset.themes.values() for t in th.terms]
    return {
        korean: (
            [n for n in names if bool(hangul.search(n)) == korean],
            [t for t in terms if bool(hangul.search(t)) == korean],
        )
        for korean in (True, False)
    }


def newsroom_words(rng: random.Random, size: int) -> dict[bool, tuple[list[str], list[float]]]:
    """Korean and English vocabularies of ``size`` words with Zipf weights: the real
    words above first (the commonest), then made-up ones (two or three Hangul syllables,
    five to nine Latin letters). A day's headlines use thousands of words; a vocabulary
    of a hundred would make every headline share words with every other one."""
    out = {}
    for korean, real in ((True, KO_WORDS), (False, EN_WORDS)):
        words = list(real)
        while len(words) < size:
            if korean:
                made = "".join(chr(0xAC00 + rng.randrange(11172)) for _ in range(rng.randint(2, 3)))
            else:
                made = "".join(rng.choice("abcdefghiklmnoprstuw") for _ in range(rng.randint(5, 9)))
            words.append(made)
        out[korean] = (words, [1 / (rank + 1) for rank in range(len(words))])
    return out


def make_story(
    rng: random.Random,
    vocab: dict[bool, tuple[list[str], list[str]]],
    words_of: dict[bool, tuple[list[str], list[float]]],
) -> list[str]:
    korean = rng.random() < 0.7
    names, terms = vocab[korean]
    words = rng.sample(names, rng.randint(1, 2)) + rng.sample(terms, rng.randint(1, 2))
    common, weights = words_of[korean]
    words += rng.choices(common, weights, k=rng.randint(2, 4))
    if rng.random() < 0.3:
        words.append(f"{rng.randint(2, 999)}{'조' if korean else ''}")
    return words


def retitle(rng: random.Random, words: list[str]) -> str:
    """A copy of a story as another outlet would title it."""
    out = list(words)
    rng.shuffle(out)
    if any("\uac00" <= ch <= "\ud7a3" for w in out for ch in w):
        out = [w + rng.choice(PARTICLES) if rng.random() < 0.3 else w for w in out]
    return rng.choice(TAGS) + " ".join(out) + rng.choice(SUFFIXES)


def make_window(
    rng: random.Random,
    vocab: dict[bool, tuple[list[str], list[str]]],
    words_of: dict[bool, tuple[list[str], list[float]]],
    members: int,
) -> tuple[list[tuple[str, datetime, int]], list[tuple[list[str], datetime]]]:
    """``members`` headlines over 48 h (oldest first, each with the index of its story)
    and the stories they copy."""
    stories: list[tuple[list[str], datetime]] = []
    headlines: list[tuple[str, datetime, int]] = []
    while len(headlines) < members:
        words = make_story(rng, vocab, words_of)
        first = START + WINDOW * (len(headlines) / members)
        for n in range(rng.randint(1, 4)):
            headlines.append((retitle(rng, words), first + timedelta(minutes=7 * n), len(stories)))
        stories.append((words, first))
    headlines.sort(key=lambda h: h[1])
    return headlines[:members], stories


def template_window(members: int) -> list[tuple[str, datetime, int]]:
    """``members`` of bench/profile_ingest.py's on-topic headlines over 48 h, oldest
    first, each its own story."""
    from bench.profile_ingest import topical_entries

    titles = [
        entry.title
        for feed in range(members // 50 + 1)
        for entry in topical_entries(feed, 50, START, 1.0)
    ][:members]
    return [(title, START + WINDOW * (n / members), n) for n, title in enumerate(titles)]


@dataclass(frozen=True)
class Figures:
    seconds: float  # best, per assigned headline
    cpu: float  # CPU seconds per assigned headline, in the best round
    comparisons: float | None  # story pairs judged per assigned headline (None: not counted)
    held: int  # members in the window after warm-up
    stories: int
    joined: float  # share of copies that joined their story
    joined_recent: float  # the same, of stories in the last RECENT of the window
    merged: float  # share of new stories that joined another
    window_mb: float  # what the window's headlines and indexes take (tracemalloc)


# Copies of stories this young are most copies: outlets follow a story within hours.
RECENT = timedelta(hours=6)


def run(
    members: int,
    headlines: int,
    seed: int,
    rounds: int,
    vocabulary_size: int,
    bound: int | None = None,
    template: bool = False,
) -> Figures:
    """Seconds per assigned headline and how well copies and new stories fared, with
    the window holding at most ``bound`` headlines (None: the 48 h alone)."""
    rng = random.Random(seed)
    ruleset = load_rules(None)
    now = START + WINDOW
    new: list[tuple[str, datetime, int | None]] = []
    if template:
        window = template_window(members + headlines // 2 + 1)
        window, fresh = window[:members], [title for title, *_ in window[members:]]
        stories = [(title.split(), when) for title, when, _ in window]
    else:
        vocab = vocabulary(ruleset)
        words_of = newsroom_words(rng, vocabulary_size)
        window, stories = make_window(rng, vocab, words_of, members)
    for n in range(headlines):
        if n % 2:
            story = rng.randrange(len(stories))
            words, first = stories[story]
            when = max(first, now - WINDOW) + timedelta(hours=1)
            new.append((retitle(rng, words), when, story))
        elif template:
            new.append((fresh[n // 2], now, None))
        else:
            new.append((retitle(rng, make_story(rng, vocab, words_of)), now, None))
    tags: dict[str, StoryTags] = {
        title: story_tags(tag(title, "", ruleset)) for title, *_ in [*window, *new]
    }
    best = float("inf")
    cpu = 0.0
    count = 0
    comparisons: float | None = None
    got: list[str] = []
    window_mb = 0.0
    for round_ in range(rounds):
        gc.collect()
        if round_ == 0:
            tracemalloc.start()
        clusters = StoryClusters(max_headlines=bound)
        for title, when, story in window:
            clusters.add(title, when, f"w{story}", tags[title])
        count = len(clusters)
        if round_ == 0:
            gc.collect()
            window_mb = tracemalloc.get_traced_memory()[0] / 1e6
            tracemalloc.stop()
        judged = getattr(clusters, "comparisons", None)  # counted since the clusterer has it
        started, cpu_started = time.perf_counter(), time.process_time()
        got = [clusters.assign(title, when, tags[title]) for title, when, _ in new]
        seconds = (time.perf_counter() - started) / headlines
        if seconds < best:
            best, cpu = seconds, (time.process_time() - cpu_started) / headlines
        if judged is not None:
            comparisons = (clusters.comparisons - judged) / headlines
    copies = [
        (cid, story) for cid, (_, _, story) in zip(got, new, strict=True) if story is not None
    ]
    joined = sum(cid == f"w{story}" for cid, story in copies) / len(copies)
    recent = [(cid, story) for cid, story in copies if stories[story][1] >= now - RECENT]
    joined_recent = sum(cid == f"w{story}" for cid, story in recent) / max(1, len(recent))
    fresh = [cid for cid, (_, _, story) in zip(got, new, strict=True) if story is None]
    merged = sum(cid.startswith("w") for cid in fresh) / len(fresh)
    return Figures(
        best, cpu, comparisons, count, len(stories), joined, joined_recent, merged, window_mb
    )


JUDGEMENT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "judgement"


def judgement_sets() -> None:
    """The labelled headline sets, each as one window (two minutes apart, in file
    order): how many fire a news rule, how many stories they make, and every story of
    more than one headline, to be read."""
    ruleset = load_rules(None)
    for path in sorted(JUDGEMENT.glob("*.tsv")):
        rows = [
            line.split("\t")
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        clusters = StoryClusters()
        stories: dict[str, list[str]] = {}
        for n, (_, title, *_) in enumerate(rows):
            tagging = tag(title, "", ruleset)
            if tagging.news_rules_fired:
                when = START + timedelta(minutes=2 * n)
                stories.setdefault(clusters.assign(title, when, story_tags(tagging)), []).append(
                    title
                )
        fired = sum(len(titles) for titles in stories.values())
        print(f"{path.name}: {len(rows)} headlines, {fired} fire, {len(stories)} stories")
        for titles in stories.values():
            if len(titles) > 1:
                print("  one story:", *titles, sep="\n    ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--members", type=int, nargs="+", default=[500, 5000, 20000], help="headlines in the window"
    )
    parser.add_argument("--headlines", type=int, default=2000, help="headlines assigned")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--bound",
        type=int,
        nargs="+",
        help="headlines the window holds at most (0: no bound), several for several runs",
    )
    parser.add_argument("--seed", type=int, default=20250616)
    parser.add_argument(
        "--vocabulary", type=int, default=5000, help="words per language besides names and terms"
    )
    parser.add_argument(
        "--template",
        action="store_true",
        help="a flood of near-template headlines (bench/profile_ingest.py --topical 1)",
    )
    parser.add_argument(
        "--judgement",
        action="store_true",
        help="instead: the stories of the labelled headline sets in tests/fixtures/judgement",
    )
    args = parser.parse_args()
    if args.judgement:
        judgement_sets()
        return
    if hasattr(os, "sched_setaffinity"):
        # One core: the daemon clusters on its one event-loop thread.
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    words = "template headlines" if args.template else f"{args.vocabulary:,} words a language"
    print(
        f"Python {sys.version.split()[0]}; {args.headlines} headlines, best of {args.rounds};"
        f" {words}"
    )
    print(
        f"{'members in window':>18}  {'bound':>7}  {'held':>7}  {'stories':>8}"
        f"  {'µs per headline':>16}  {'CPU µs':>7}  {'compared':>8}  {'copies joined':>13}"
        f"  {'of stories < 6 h':>16}  {'new merged':>10}  {'window MB':>9}"
    )
    figures = []
    for members in args.members:
        for bound in args.bound or [0]:
            got = run(
                members,
                args.headlines,
                args.seed,
                args.rounds,
                args.vocabulary,
                bound or None,
                args.template,
            )
            figures.append(got.seconds)
            compared = "-" if got.comparisons is None else f"{got.comparisons:.1f}"
            print(
                f"{members:>18,}  {bound or '-':>7}  {got.held:>7,}  {got.stories:>8,}"
                f"  {got.seconds * 1e6:>16.1f}  {got.cpu * 1e6:>7.1f}  {compared:>8}"
                f"  {got.joined:>13.1%}  {got.joined_recent:>16.1%}  {got.merged:>10.1%}"
                f"  {got.window_mb:>9.1f}"
            )
    if len(figures) > 1 and not args.bound:
        growth = figures[-1] / figures[0]
        print(f"cost ratio, largest to smallest window: {growth:.2f}")


if __name__ == "__main__":
    main()
