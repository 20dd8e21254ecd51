"""Judge the news rules on labelled headlines: precision, recall, and what went wrong.

A labelled file has one headline a line: ``+`` (wanted: a desk following Korean AI
policy wants the alert) or ``-``, a TAB, the text, and optionally a TAB and a class
(the theme a wanted line is about, the kind of trap an unwanted one is). Lines that are
empty or start with ``#`` are skipped. ``kmon rules eval`` reads such files; CI runs it
on the sets in ``tests/fixtures/judgement`` with the thresholds in docs/rules.md.

A line counts as an alert when a news rule fires on it, as the daemon would store a
news signal for it (and, with ``min_score``, when its score reaches that).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from monitor.rules import RulesError
from monitor.rules.match import tag
from monitor.rules.model import Ruleset
from monitor.rules.score import score_news


@dataclass(frozen=True, slots=True)
class Labelled:
    """One labelled headline: where it was written, its label, text and class."""

    where: str
    wanted: bool
    text: str
    group: str | None = None


def read_labelled(lines: Iterable[str], name: str) -> list[Labelled]:
    """The labelled lines of a file called ``name``; a bad line is a
    :class:`RulesError` naming ``name:line``."""
    cases: list[Labelled] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) not in (2, 3) or fields[0] not in ("+", "-") or not fields[1].strip():
            raise RulesError(
                f"{name}:{number}: expected '+' or '-', a TAB, the headline "
                f"(and optionally a TAB and a class), got {line[:60]!r}"
            )
        group = fields[2].strip() if len(fields) == 3 and fields[2].strip() else None
        cases.append(Labelled(f"{name}:{number}", fields[0] == "+", fields[1].strip(), group))
    return cases


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the rules made of one labelled line."""

    case: Labelled
    fired: tuple[tuple[str, str], ...]  # (rule id, why)
    score: int | None  # None: nothing fired

    def alerts(self, min_score: int = 0) -> bool:
        return self.score is not None and self.score >= min_score


def judge(cases: Sequence[Labelled], ruleset: Ruleset) -> list[Outcome]:
    """Each line through the matcher and the news rules, as the daemon tags a title."""
    outcomes = []
    for case in cases:
        tagging = tag(case.text, "", ruleset)
        fired = tuple((f.rule_id, f.explanation) for f in tagging.news_rules_fired)
        score = (
            score_news(tagging, [r for r, _ in fired], ruleset, source=None).points
            if fired
            else None
        )
        outcomes.append(Outcome(case, fired, score))
    return outcomes


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def counts(outcomes: Sequence[Outcome], min_score: int = 0) -> tuple[int, int, int, int]:
    """(wanted lines, unwanted lines, wanted alerts, unwanted alerts)."""
    positives = sum(1 for o in outcomes if o.case.wanted)
    tp = sum(1 for o in outcomes if o.case.wanted and o.alerts(min_score))
    fp = sum(1 for o in outcomes if not o.case.wanted and o.alerts(min_score))
    return positives, len(outcomes) - positives, tp, fp


def _counts(outcomes: Sequence[Outcome], min_score: int) -> dict[str, object]:
    positives, negatives, tp, fp = counts(outcomes, min_score)
    return {
        "positives": positives,
        "negatives": negatives,
        "true_positives": tp,
        "false_positives": fp,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, positives),
        "false_positive_rate": _ratio(fp, negatives),
    }


def report(outcomes: Sequence[Outcome], *, min_score: int = 0) -> dict[str, object]:
    """The figures: overall, per class, per rule, at each score, and every mistake."""
    result = _counts(outcomes, min_score)
    groups: dict[str, list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault(
            o.case.group or ("(wanted)" if o.case.wanted else "(unwanted)"), []
        ).append(o)
    result["by_class"] = {
        name: {
            "wanted": members[0].case.wanted,
            "lines": len(members),
            "alerts": sum(1 for o in members if o.alerts(min_score)),
        }
        for name, members in sorted(groups.items())
    }
    by_rule: dict[str, dict[str, int]] = {}
    for o in outcomes:
        if not o.alerts(min_score):
            continue
        for rule_id, _ in o.fired:
            counts = by_rule.setdefault(rule_id, {"alerts": 0, "wanted": 0})
            counts["alerts"] += 1
            counts["wanted"] += o.case.wanted
    result["by_rule"] = {
        rule_id: {**c, "precision": _ratio(c["wanted"], c["alerts"])}
        for rule_id, c in sorted(by_rule.items())
    }
    scores = sorted({o.score for o in outcomes if o.score is not None and o.score >= min_score})
    result["by_score"] = [
        {
            "min_score": s,
            **{
                k: v for k, v in _counts(outcomes, s).items() if k not in ("positives", "negatives")
            },
        }
        for s in scores
    ]

    def line(o: Outcome) -> dict[str, object]:
        return {
            "where": o.case.where,
            "text": o.case.text,
            "class": o.case.group,
            "score": o.score,
            "fired": [{"rule_id": r, "why": why} for r, why in o.fired],
        }

    result["misses"] = [line(o) for o in outcomes if o.case.wanted and not o.alerts(min_score)]
    result["false_hits"] = [line(o) for o in outcomes if not o.case.wanted and o.alerts(min_score)]
    return result
