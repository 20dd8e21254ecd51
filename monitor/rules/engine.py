"""The rules at work, as pure functions over records: no SQL, no I/O.

:class:`RulesEngine` judges what a stage has just stored: newly stored items
(:meth:`RulesEngine.judge_items`), newly stored quotes with the facts they are
compared with (:meth:`RulesEngine.judge_quotes`), newly stored filings
(:meth:`RulesEngine.judge_disclosures`), a failed poll
(:meth:`RulesEngine.judge_failure`). The caller (``monitor.ingest``) reads those facts
from the database and stores the signals; a ruleset with no rules judges nothing, which
is how rules are switched off.

What the engine keeps in memory is a cache, never the truth: the story clusters of the
last two days, which the caller restores from the stored copies after a restart
(:meth:`RulesEngine.restore`), so a late copy still joins its story.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from adapters.errors import AuthError, FetchError
from monitor.identity import nfc
from monitor.rules.cluster import MAX_HEADLINES, StoryClusters, StoryTags
from monitor.rules.evaluate import (
    KRX,
    Calendar,
    DisclosureFacts,
    MoveFacts,
    NewsFacts,
    Signal,
    evaluate_disclosure,
    evaluate_quote,
    evaluate_source_auth,
    evaluate_source_health,
    news_facts,
    news_window,
)
from monitor.rules.match import Tagging, tag
from monitor.rules.model import DisclosureMoveRule, JoinedRule, MoveRule, Ruleset
from monitor.stored import StoredFiling, StoredItem, StoryCopy

# The index a move "relative to the KOSPI" is measured against.
INDEX = "KOSPI"
# Old headlines leave the clusters this often (they leave the window anyway).
PRUNE_EVERY = timedelta(hours=1)


@dataclass
class NewsJudgement:
    """What the rules concluded about a batch of new items.

    ``facts``: one per item that fired a rule, in order; ``signals`` their news
    signals; ``links``: (signal dedup key, item id), every copy of a story linked to
    its story's signal.
    """

    facts: list[NewsFacts] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    links: list[tuple[str, int]] = field(default_factory=list)


def story_tags(tagging: Tagging) -> StoryTags:
    """What the clusterer reads of a tagging: the entities and themes of the title (a
    summary differs from outlet to outlet), its phrases (overlapping hits together)
    and the words they covered."""
    hits = sorted(
        (hit.start, hit.end, f"{prefix}{found_id}", hit.surface)
        for prefix, found in (("e:", tagging.entities), ("t:", tagging.themes))
        for found_id, found_hits in found.items()
        for hit in found_hits
        if hit.field == "title"
    )
    phrases: list[set[str]] = []
    reach = -1
    for start, end, found_id, _ in hits:
        if start >= reach:
            phrases.append(set())
        phrases[-1].add(found_id)
        reach = max(reach, end)
    return StoryTags.of(
        (i[2:] for _, _, i, _ in hits if i.startswith("e:")),
        (i[2:] for _, _, i, _ in hits if i.startswith("t:")),
        phrases,
        (surface for *_, surface in hits),
    )


def earliest_window_start(ruleset: Ruleset, now: datetime, calendar: Calendar = KRX) -> datetime:
    """The start of the widest joined-rule window for a quote at ``now``."""
    days = max(
        (
            r.window.trading_days_before
            for r in ruleset.rules.values()
            if isinstance(r, JoinedRule | DisclosureMoveRule)
        ),
        default=0,
    )
    start, _, _ = news_window(now, days, True, calendar)
    return start


def firing_positions(
    ruleset: Ruleset,
    texts: Sequence[tuple[str, str, str | None]],
    *,
    source: str | None,
    source_type: str | None,
) -> list[int]:
    """The positions in ``texts`` ((title, summary, language) as a feed gave them) of
    the items that fire a news rule of ``ruleset``, tagged as
    :meth:`RulesEngine.judge_items` tags them once stored (NFC). Most items fire
    nothing: this answer lets a caller tag elsewhere (another process) and judge only
    the few that fire."""
    return [
        n
        for n, (title, summary, language) in enumerate(texts)
        if tag(
            nfc(title),
            nfc(summary),
            ruleset,
            source=source,
            language=language,
            source_type=source_type,
        ).news_rules_fired
    ]


class RulesEngine:
    """One ruleset and the story clusters it has seen (at most ``story_headlines``
    headlines of them)."""

    def __init__(
        self,
        ruleset: Ruleset,
        *,
        calendar: Calendar = KRX,
        story_headlines: int | None = MAX_HEADLINES,
    ) -> None:
        self.ruleset = ruleset
        self.calendar = calendar
        self.clusters = StoryClusters(max_headlines=story_headlines)
        self.restored = False
        self._pruned_at: datetime | None = None

    @classmethod
    def off(cls) -> RulesEngine:
        """An engine with no rules: it tags nothing and raises no signal."""
        engine = cls(Ruleset(entities={}, themes={}, rules={}))
        engine.restored = True
        return engine

    @property
    def judges_news(self) -> bool:
        return bool(self.ruleset.news_rules())

    @property
    def judges_quotes(self) -> bool:
        """Whether quotes need their facts (bars, the KOSPI's change) read at all."""
        return any(
            isinstance(r, MoveRule | JoinedRule | DisclosureMoveRule)
            for r in self.ruleset.rules.values()
        )

    def restore(self, copies: Iterable[StoryCopy], *, now: datetime) -> None:
        """Put back the story clusters of the window: every stored copy of each story
        (a later retitle may resemble a copy more than the first headline), its title
        tagged again as :meth:`judge_items` tagged it (only the title's tags count)."""
        for copy in copies:
            tags = story_tags(tag(copy.title, "", self.ruleset))
            self.clusters.add(copy.title, copy.published_at, copy.cluster, tags)
        self.restored = True
        self._pruned_at = now

    def judge_items(
        self,
        items: Sequence[StoredItem],
        *,
        now: datetime,
        source_type: str | None = None,
        firing: Container[str] | None = None,
    ) -> NewsJudgement:
        """Tag newly stored items (of one source, of ``source_type``: news, government);
        cluster the ones that fire a rule into stories.

        ``firing``: when given, the external ids of the items known to fire a rule
        (:func:`firing_positions`, run elsewhere); the others are not tagged again."""
        judgement = NewsJudgement()
        if not items or not self.judges_news:
            return judgement
        if self._pruned_at is None or now - self._pruned_at > PRUNE_EVERY:
            self.clusters.prune(now)
            self._pruned_at = now
        for item in items:
            if firing is not None and item.external_id not in firing:
                continue
            tagging = tag(
                item.title,
                item.summary,
                self.ruleset,
                source=item.source,
                language=item.language,
                source_type=source_type,
            )
            if not tagging.news_rules_fired:
                continue  # most items: no clustering, no signal
            cluster = self.clusters.assign(item.title, item.published_at, story_tags(tagging))
            facts = news_facts(
                str(item.id),
                item.title,
                item.published_at,
                cluster,
                tagging,
                self.ruleset,
                url=item.url,
                source=item.source,
                source_type=source_type,
            )
            judgement.facts.append(facts)
            judgement.signals.extend(facts.signals)
            judgement.links.extend((s.dedup_key, item.id) for s in facts.signals)
        return judgement

    def news_since(self, moment: datetime) -> datetime:
        """How far back the news a quote at ``moment`` is compared with can reach."""
        return earliest_window_start(self.ruleset, moment, self.calendar)

    def judge_quotes(
        self,
        moves: Sequence[MoveFacts],
        news: Sequence[NewsFacts],
        disclosures: Sequence[DisclosureFacts] = (),
    ) -> list[Signal]:
        """Move, joined and disclosure_move rules on newly stored quotes (the index is
        never a mover)."""
        return [
            signal
            for move in moves
            if move.quote.ticker != INDEX
            for signal in evaluate_quote(move, news, self.ruleset, self.calendar, disclosures)
        ]

    def judge_disclosures(self, filings: Sequence[StoredFiling]) -> list[Signal]:
        """Disclosure rules on newly stored OpenDART filings."""
        return [signal for f in filings for signal in evaluate_disclosure(f, self.ruleset)]

    def judge_failure(
        self,
        source: str,
        error: FetchError,
        *,
        interval: float,
        last_success_at: datetime | None,
        failures: int,
        now: datetime,
    ) -> list[Signal]:
        """After a failed poll: ``source_auth`` when credentials were refused, and
        ``source_stale`` once the source has been silent for long enough."""
        message = f"{error.key}: {error}"
        signals = evaluate_source_health(
            source,
            interval=interval,
            last_success_at=last_success_at,
            failures=failures,
            last_error=message,
            now=now,
            ruleset=self.ruleset,
        )
        if isinstance(error, AuthError):
            signals += evaluate_source_auth(
                source, last_success_at=last_success_at, error=message, now=now
            )
        return signals
