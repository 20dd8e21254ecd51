"""How relevant a news signal is: a score from 0 to 100 out of its evidence.

The weights are the ruleset's :class:`~monitor.rules.model.Scoring` (the default ones sit
in ``default.yaml``, beside the rules they weigh). Hand-set, not fitted: each is a fact a
desk can read back in ``kmon signals show`` ("rule ai-policy 40, a theme in the title
15, anchor korea-policy 15 …") and move in a rules file of its own; ``kmon rules eval``
prints precision and recall at each score, which is how a change is judged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from monitor.rules.match import Tagging, compile_ruleset
from monitor.rules.model import NewsRule, Ruleset
from monitor.severity import SEVERITY_RANK, Severity


@dataclass(frozen=True, slots=True)
class ScorePart:
    """One piece of evidence and the points it adds."""

    label: str
    points: int


@dataclass(frozen=True, slots=True)
class Score:
    """The score (capped at 100) and the parts it adds up from, in order."""

    points: int
    parts: tuple[ScorePart, ...]

    def describe(self) -> str:
        """``75 (rule ai-policy 30, title 15, …)``."""
        return f"{self.points} ({', '.join(f'{p.label} {p.points}' for p in self.parts)})"


def score_news(
    tagging: Tagging,
    fired_rules: Iterable[str],
    ruleset: Ruleset,
    *,
    source: str | None,
    source_type: str | None = None,
) -> Score:
    """The score of an item whose news rules ``fired_rules`` fired; ``source_type``
    (``government`` …) adds the weight of ``scoring.source_types``."""
    weights = ruleset.scoring
    parts: list[ScorePart] = []
    rules = [r for r in (ruleset.rules[i] for i in fired_rules) if isinstance(r, NewsRule)]
    base = max(rules, key=lambda r: r.score, default=None)
    if base is not None:
        parts.append(ScorePart(f"rule {base.id}", base.score))
    # The themes the fired rules ask for, not the marks beside them (a price-move word,
    # "AI" as a market word): each further one is more of the story.
    wanted = {t for r in rules for t in (*r.themes.any, *r.themes.all)}
    themes = [t for t in tagging.themes if t in wanted]
    if weights.title and any(h.field == "title" for t in themes for h in tagging.themes[t]):
        parts.append(ScorePart("a theme in the title", weights.title))
    extra = min(len(themes) - 1, weights.max_extra_themes)
    if extra > 0 and weights.extra_theme:
        label = f"{extra} more theme{'s' if extra > 1 else ''}"
        parts.append(ScorePart(label, extra * weights.extra_theme))
    for anchor_id, points in weights.anchors.items():
        if points and anchor_id in tagging.anchors:
            parts.append(ScorePart(f"anchor {anchor_id}", points))
    if weights.entities and tagging.entities:
        refs = compile_ruleset(ruleset).entity_refs
        named: set[str] = set()
        for entity_id in tagging.entities:
            named |= refs[entity_id]
        for ref, points in weights.entities.items():
            if points and ref in named:
                parts.append(ScorePart(f"names {ref}", points))
    if source is not None and weights.sources.get(source):
        parts.append(ScorePart(f"source {source}", weights.sources[source]))
    for kind, points in weights.source_types.items():
        if points and kind == source_type:
            parts.append(ScorePart(f"a {kind} source", points))
    return Score(min(100, sum(p.points for p in parts)), tuple(parts))


def severity_of(score: int, ruleset: Ruleset, floor: str) -> Severity:
    """The severity a score earns, never below ``floor`` (the lead rule's)."""
    weights = ruleset.scoring
    earned: Severity = "info"
    if score >= weights.critical:
        earned = "critical"
    elif score >= weights.warning:
        earned = "warning"
    if SEVERITY_RANK.get(floor, 0) > SEVERITY_RANK[earned]:
        return floor  # type: ignore[return-value]
    return earned
