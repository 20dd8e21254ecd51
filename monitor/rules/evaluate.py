"""Evaluate rules into signals: news items, quotes, and moves that follow policy news.

Pure functions: no I/O, no clock, no database. The caller hands in what it knows (an
item's text and event time, a quote, the KOSPI's change, 52-week and volume figures)
and stores the :class:`Signal` s, deduplicating on ``dedup_key``.

- :func:`news_facts` turns an item tagged by :func:`monitor.rules.match.tag` into its
  facts and, when news rules fire, one signal keyed by story cluster, so that
  syndicated copies signal once.
- :func:`evaluate_moves` evaluates the move rules on one quote.
- :func:`evaluate_joined` evaluates the joined rules: a move of a stock after policy
  news about its company (or its sector) inside a window on *event* time, measured on
  the KRX calendar. All joined rules that hold for one ticker in one session make one
  ``policy_move`` signal (the most severe names it, the explanation lists them all):
  a user wants one alert for "Naver moved on policy news today", and a key without
  the rule id stays the same when a later intraday quote meets a different rule first.

A condition that cannot be checked (no KOSPI change for a move relative to the
KOSPI, no 52-week figures, no average volume) does not hold: a missing index quote
must not make a market-wide rally look like a stock's own move. Nor does a 52-week high
or low on fewer daily bars than the condition's ``min_bars``: with two bars stored the
second day's close would be "a 52-week high". Such a withheld claim is said in the
explanation of the quote's signals (:func:`not_claimed`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol, TypeVar

from adapters.records import DailyBar, Quote
from monitor import market
from monitor.kinds import SignalKind
from monitor.market import Session
from monitor.rules.explanation import (
    ChangeMatch,
    DisclosureExplanation,
    DisclosureMoveExplanation,
    DisclosureMoveMatch,
    Explanation,
    ExtremeMatch,
    FiredNewsRule,
    JoinedFiling,
    JoinedMatch,
    JoinedNews,
    MatchedMove,
    MoveExplanation,
    NewsExplanation,
    NewsWindow,
    PolicyMoveExplanation,
    QuoteFacts,
    SourceAuthExplanation,
    SourceStaleExplanation,
    TermHit,
    VolumeMatch,
)
from monitor.rules.match import Hit, Tagging
from monitor.rules.model import (
    DisclosureMoveRule,
    DisclosureRule,
    ExtremeCondition,
    JoinedRule,
    MoveRule,
    MoveSpec,
    Ruleset,
    SourceHealthRule,
    report_kind_of,
)
from monitor.rules.score import score_news, severity_of
from monitor.severity import SEVERITY_RANK
from monitor.stored import StoredFiling
from monitor.timefmt import KST


@dataclass(frozen=True)
class Signal:
    """Something worth telling the user, with the evidence for it.

    ``subject`` is a ticker for moves, an entity id (or theme id) for news.
    ``event_time`` is UTC. ``explanation`` is the evidence, of the kind's type
    (:mod:`monitor.rules.explanation`). ``dedup_key`` is stable: the same facts
    evaluated again give the same key.
    """

    kind: SignalKind
    rule_id: str
    severity: str
    subject: str
    event_time: datetime
    explanation: Explanation
    dedup_key: str


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"naive datetime {when!r}: event times need a zone")
    return when.astimezone(UTC)


# --- news ---------------------------------------------------------------------------


@dataclass(frozen=True)
class NewsFacts:
    """One tagged news item: what :func:`evaluate_joined` needs, and its signals."""

    item_id: str
    title: str
    event_time: datetime
    cluster: str
    rule_ids: tuple[str, ...]
    entities: frozenset[str]
    tickers: frozenset[str]
    sectors: frozenset[str]
    signals: tuple[Signal, ...]


def _hits(found: Mapping[str, list[Hit]]) -> dict[str, tuple[TermHit, ...]]:
    return {
        k: tuple(TermHit(h.surface, h.term, h.field, h.start, h.end) for h in hits)
        for k, hits in found.items()
    }


def _first(found: Mapping[str, list[Hit]], ruleset: Ruleset) -> str | None:
    """The id named first, title before summary; one with tickers before any other
    (a stock monitor's news is about the company, or the person linked to it, before
    the office that appointed them)."""
    ranked = sorted(
        (
            not (k in ruleset.entities and ruleset.entities[k].tickers()),
            min((h.field != "title", h.start) for h in hits),
            k,
        )
        for k, hits in found.items()
    )
    return ranked[0][2] if ranked else None


def news_facts(
    item_id: str,
    title: str,
    published_at: datetime,
    cluster: str,
    tagging: Tagging,
    ruleset: Ruleset,
    *,
    url: str | None = None,
    source: str | None = None,
    source_type: str | None = None,
) -> NewsFacts:
    """The facts and news signals of an item already tagged (:func:`tag`).

    The caller tags first and clusters only the items that fire a rule: most items
    fire none, and clustering is the dearer step.
    ``url`` and ``source`` (the item's link, its feed) join the explanation.
    """
    when = _utc(published_at)
    # The subject: an entity (see _first), else the first theme.
    subject = _first(tagging.entities, ruleset) or _first(tagging.themes, ruleset) or ""
    fired = tagging.news_rules_fired
    signals: tuple[Signal, ...] = ()
    if fired:
        # One story, one signal: every rule that fired is in the explanation, the most
        # severe names it (ties: the first in the ruleset), and the key has no rule id,
        # so a later copy that fires a different mix of rules is still the same signal.
        lead = max(fired, key=lambda f: SEVERITY_RANK[ruleset.rules[f.rule_id].severity])
        # Severity follows the relevance score, never below the lead rule's own.
        score = score_news(
            tagging, [f.rule_id for f in fired], ruleset, source=source, source_type=source_type
        )
        severity = severity_of(score.points, ruleset, ruleset.rules[lead.rule_id].severity)
        signals = (
            Signal(
                kind="news",
                rule_id=lead.rule_id,
                severity=severity,
                subject=subject,
                event_time=when,
                explanation=NewsExplanation(
                    item_id=item_id,
                    title=title,
                    published_at=when,
                    cluster=cluster,
                    url=url,
                    source=source,
                    themes=_hits(tagging.themes),
                    entities=_hits(tagging.entities),
                    tickers=tuple(sorted(tagging.tickers)),
                    sectors=tuple(sorted(tagging.sectors)),
                    why=lead.explanation,
                    rules=tuple(
                        FiredNewsRule(f.rule_id, ruleset.rules[f.rule_id].severity, f.explanation)
                        for f in fired
                    ),
                    score=score.points,
                    score_parts=tuple((p.label, p.points) for p in score.parts),
                    anchors=tuple(tagging.anchors),
                    source_type=source_type,
                ),
                # By cluster, not item: the same story from five outlets is one signal.
                dedup_key=f"news:{cluster}",
            ),
        )
    return NewsFacts(
        item_id=item_id,
        title=title,
        event_time=when,
        cluster=cluster,
        rule_ids=tuple(f.rule_id for f in tagging.news_rules_fired),
        entities=frozenset(tagging.entities),
        tickers=tagging.tickers,
        sectors=tagging.sectors,
        signals=signals,
    )


# --- moves -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MoveStats:
    """Figures a quote is compared with, from the caller's daily bars.

    ``high``/``low``: the extremes of the ``weeks`` weeks up to and including the
    quote's session, as quote pages report them ("52-week high 259,000" on the day
    Naver touched 259,000); a quote whose day high reaches ``high`` is at a new high.
    ``avg_volume``: the mean daily volume of the ``volume_days`` sessions before.
    ``bars``: how many daily bars of those weeks are behind ``high`` and ``low`` (None:
    not known, and no extreme is claimed).
    """

    high: float | None = None
    low: float | None = None
    weeks: int = 52
    avg_volume: float | None = None
    volume_days: int = 20
    bars: int | None = None


@dataclass(frozen=True)
class MoveFacts:
    """A quote and what it is compared with."""

    quote: Quote
    kospi_change_pct: float | None = None
    stats: MoveStats | None = None


@dataclass(frozen=True, slots=True)
class BarStats:
    """What a year of daily bars says about a ticker as of a day (bars before it)."""

    ticker: str
    prev_close: float | None
    prev_day: date | None
    high_52w: float | None
    low_52w: float | None
    avg_volume_20d: float | None
    last_bar_day: date | None
    bars_52w: int = 0


def bar_stats(ticker: str, bars: Sequence[DailyBar], *, before: date) -> BarStats:
    """Previous close, 52-week range (and the number of bars in it) and 20-day average
    volume from ``bars`` (one ticker's, oldest first) before ``before``;
    ``last_bar_day`` is the newest given."""
    days = [b.day for b in bars]
    end = bisect_left(days, before)
    year = bisect_left(days, before - timedelta(days=365), 0, end)
    highs = [b.high for b in bars[year:end] if b.high is not None]
    lows = [b.low for b in bars[year:end] if b.low is not None]
    recent = bars[max(0, end - 20) : end]
    volumes = [b.volume for b in recent if b.volume is not None]
    return BarStats(
        ticker=ticker,
        prev_close=recent[-1].close if recent else None,
        prev_day=recent[-1].day if recent else None,
        high_52w=max(highs) if highs else None,
        low_52w=min(lows) if lows else None,
        avg_volume_20d=sum(volumes) / len(volumes) if volumes else None,
        last_bar_day=days[-1] if days else None,
        bars_52w=end - year,
    )


def stats_from_bars(bars: BarStats | None, quote: Quote) -> MoveStats | None:
    """The figures a quote is compared with: the 52-week range up to and including the
    quote's session (the bars before it and the quote's own high and low)."""
    if bars is None:
        return None
    day_high = quote.high if quote.high is not None else quote.price
    day_low = quote.low if quote.low is not None else quote.price
    return MoveStats(
        high=max(bars.high_52w, day_high) if bars.high_52w is not None else None,
        low=min(bars.low_52w, day_low) if bars.low_52w is not None else None,
        avg_volume=bars.avg_volume_20d,
        bars=bars.bars_52w,
    )


def change_pct(quote: Quote) -> float | None:
    if quote.change_pct is not None:
        return quote.change_pct
    if quote.prev_close:
        return (quote.price - quote.prev_close) / quote.prev_close * 100
    return None


def _applies(spec: MoveSpec, ticker: str, ruleset: Ruleset) -> bool:
    if spec.tickers or spec.sectors:
        if ticker in spec.tickers:
            return True
        return not ruleset.ticker_sectors(ticker).isdisjoint(spec.sectors)
    # No list: every followed stock, and a KRX stock code starts with a digit; an index
    # (KOSPI) is the yardstick, not a mover.
    return ticker[:1].isdigit()


def _check_move(spec: MoveSpec, facts: MoveFacts) -> MatchedMove | None:
    """What the quote did that ``spec`` asks for, or None when a condition fails."""
    quote, stats = facts.quote, facts.stats
    change: ChangeMatch | None = None
    extreme: ExtremeMatch | None = None
    volume: VolumeMatch | None = None
    if spec.change is not None:
        cond = spec.change
        pct = change_pct(quote)
        if pct is None:
            return None
        measured = pct
        if cond.relative_to is not None:
            # Only the KOSPI's change is handed in; another index cannot be checked.
            if cond.relative_to != "KOSPI" or facts.kospi_change_pct is None:
                return None
            measured = pct - facts.kospi_change_pct
        # Rounded: 6.37 - 0.70 is 5.670000000000001 in floats.
        measured = round(measured, 6)
        ok = {
            "up": measured >= cond.pct,
            "down": measured <= -cond.pct,
            "either": abs(measured) >= cond.pct,
        }[cond.direction]
        if not ok:
            return None
        change = ChangeMatch(
            change_pct=pct,
            relative_to=cond.relative_to,
            index_change_pct=facts.kospi_change_pct if cond.relative_to else None,
            excess_pct=measured,
            threshold_pct=cond.pct,
            direction=cond.direction,
        )
    if spec.new_extreme is not None:
        extreme = _extreme(spec.new_extreme, quote, stats)
        if extreme is None or (extreme.bars or 0) < spec.new_extreme.min_bars:
            return None
    if spec.volume is not None:
        cond_v = spec.volume
        if (
            stats is None
            or stats.avg_volume is None
            or stats.volume_days != cond_v.days
            or quote.volume is None
        ):
            return None
        if quote.volume < cond_v.multiple * stats.avg_volume:
            return None
        volume = VolumeMatch(
            volume=quote.volume,
            avg_volume=stats.avg_volume,
            days=cond_v.days,
            multiple=cond_v.multiple,
        )
    return MatchedMove(change=change, new_extreme=extreme, volume=volume)


def _extreme(cond: ExtremeCondition, quote: Quote, stats: MoveStats | None) -> ExtremeMatch | None:
    """The extreme the day's range reaches against ``stats``, however few bars back it."""
    if stats is None or stats.weeks != cond.weeks:
        return None
    day_high = quote.high if quote.high is not None else quote.price
    day_low = quote.low if quote.low is not None else quote.price
    hit_high = stats.high is not None and day_high >= stats.high
    hit_low = stats.low is not None and day_low <= stats.low
    if not {"high": hit_high, "low": hit_low, "either": hit_high or hit_low}[cond.side]:
        return None
    return ExtremeMatch(
        weeks=cond.weeks,
        side="high" if hit_high else "low",
        day_high=day_high,
        day_low=day_low,
        high=stats.high,
        low=stats.low,
        bars=stats.bars,
    )


def not_claimed(move: MoveFacts, ruleset: Ruleset) -> tuple[str, ...]:
    """Why a rule's new high or low is not claimed for the quote: the day's range
    reaches the extreme of the bars there are, but too few bars are behind it, e.g.
    "policy-high: 52-week high not claimed: 37 bars, 200 needed"."""
    notes = []
    for rule in ruleset.rules.values():
        spec = (
            _move_spec(rule, ruleset) if isinstance(rule, JoinedRule | DisclosureMoveRule) else rule
        )
        if not isinstance(spec, MoveSpec) or spec.new_extreme is None:
            continue
        if not _applies(spec, move.quote.ticker, ruleset):
            continue
        cond = spec.new_extreme
        seen = _extreme(cond, move.quote, move.stats)
        if seen is not None and (seen.bars or 0) < cond.min_bars:
            bars = "no count of" if seen.bars is None else str(seen.bars)
            notes.append(
                f"{rule.id}: {cond.weeks}-week {seen.side} not claimed: "
                f"{bars} bars, {cond.min_bars} needed"
            )
    return tuple(notes)


def trading_day_of(when: datetime) -> date:
    """The KST calendar day of ``when``: the session a quote belongs to."""
    return _utc(when).astimezone(KST).date()


def _quote_facts(quote: Quote) -> QuoteFacts:
    return QuoteFacts(
        ticker=quote.ticker,
        as_of=_utc(quote.as_of),
        price=quote.price,
        prev_close=quote.prev_close,
        change_pct=change_pct(quote),
        high=quote.high,
        low=quote.low,
        volume=quote.volume,
        source=quote.source,
    )


def evaluate_moves(
    quote: Quote,
    *,
    kospi_change_pct: float | None,
    stats: MoveStats | None,
    ruleset: Ruleset,
) -> list[Signal]:
    """One signal per move rule the quote meets (joined rules: :func:`evaluate_joined`)."""
    facts = MoveFacts(quote, kospi_change_pct, stats)
    day = trading_day_of(quote.as_of)
    signals: list[Signal] = []
    notes: tuple[str, ...] | None = None
    for rule in ruleset.rules.values():
        if not isinstance(rule, MoveRule) or not _applies(rule, quote.ticker, ruleset):
            continue
        seen = _check_move(rule, facts)
        if seen is None:
            continue
        if notes is None:
            notes = not_claimed(facts, ruleset)
        signals.append(
            Signal(
                kind="move",
                rule_id=rule.id,
                severity=rule.severity,
                subject=quote.ticker,
                event_time=_utc(quote.as_of),
                explanation=MoveExplanation(
                    quote=_quote_facts(quote), matched=seen, not_claimed=notes
                ),
                dedup_key=f"move:{rule.id}:{quote.ticker}:{day.isoformat()}",
            )
        )
    return signals


# --- moves after news ---------------------------------------------------------------


class Calendar(Protocol):
    """The KRX calendar as :mod:`monitor.market` gives it."""

    def session_on(self, day: date) -> Session | None: ...

    def trading_days_before(self, day: date, n: int) -> list[date]: ...


class _KRX:
    def session_on(self, day: date) -> Session | None:
        return market.session_on(day)

    def trading_days_before(self, day: date, n: int) -> list[date]:
        return market.trading_days_before(day, n)


KRX: Calendar = _KRX()


def news_window(
    as_of: datetime, trading_days_before: int, same_session: bool, calendar: Calendar
) -> tuple[datetime, datetime, date]:
    """(start, end, session day): news with start < event time <= end counts.

    The session is the quote's KST day (the last trading day before it when the quote
    is stamped on a closed day). ``same_session`` covers the previous trading day's
    close up to the quote; each of ``trading_days_before`` adds one whole trading day
    before that, counted close to close, so news after a close (an evening
    announcement) belongs to the next session, as the market sees it. Never news after
    the quote: it cannot have caused the move.
    """
    end = _utc(as_of)
    day = trading_day_of(as_of)
    if calendar.session_on(day) is None:
        day = calendar.trading_days_before(day, 1)[0]
    before = calendar.trading_days_before(day, trading_days_before + 1)
    start_session = calendar.session_on(before[0])
    assert start_session is not None  # trading_days_before returns trading days
    start = start_session.closes_at.astimezone(UTC)
    if not same_session:
        last = calendar.session_on(before[-1])
        assert last is not None
        end = min(end, last.closes_at.astimezone(UTC))
    return start, end, day


def _move_spec(rule: JoinedRule | DisclosureMoveRule, ruleset: Ruleset) -> MoveSpec:
    if isinstance(rule.move, str):
        spec = ruleset.rules[rule.move]
        assert isinstance(spec, MoveRule)  # load_rules checks the reference
        return spec
    return rule.move


def _about(rule: JoinedRule, news: NewsFacts, ticker: str, ruleset: Ruleset) -> str | None:
    """How ``news`` is about ``ticker`` under ``rule.about``: "entity", "sector" or None."""
    if rule.about in ("entity", "either") and ticker in news.tickers:
        return "entity"
    if rule.about in ("sector", "either") and not ruleset.ticker_sectors(ticker).isdisjoint(
        news.sectors
    ):
        return "sector"
    return None


_Joined = TypeVar("_Joined", JoinedRule, DisclosureMoveRule)


def _moves_held(
    kind: type[_Joined], move: MoveFacts, ruleset: Ruleset, calendar: Calendar
) -> Iterator[tuple[_Joined, MatchedMove, NewsWindow]]:
    """Each rule of ``kind`` whose move the quote makes, with the move as matched and the
    window its news (or filings) must fall in."""
    for rule in ruleset.rules.values():
        if not isinstance(rule, kind):
            continue
        spec = _move_spec(rule, ruleset)
        if not _applies(spec, move.quote.ticker, ruleset):
            continue
        seen = _check_move(spec, move)
        if seen is None:
            continue
        start, end, day = news_window(
            move.quote.as_of, rule.window.trading_days_before, rule.window.same_session, calendar
        )
        window = NewsWindow(
            start=start,
            end=end,
            session=day,
            trading_days_before=rule.window.trading_days_before,
            same_session=rule.window.same_session,
        )
        yield rule, seen, window


def evaluate_joined(
    move: MoveFacts,
    news: Sequence[NewsFacts],
    ruleset: Ruleset,
    calendar: Calendar = KRX,
) -> list[Signal]:
    """At most one ``policy_move`` for the quote: every joined rule whose move the quote
    makes after news of the rule's news rules about the ticker, inside its window."""
    quote = move.quote
    matched: list[JoinedMatch] = []
    for rule, seen, window in _moves_held(JoinedRule, move, ruleset, calendar):
        start, end = window.start, window.end
        assert start is not None and end is not None
        wanted = set(rule.news)
        found: list[JoinedNews] = []
        for item in sorted(news, key=lambda n: (n.event_time, n.item_id)):
            if not start < item.event_time <= end:
                continue
            rules = [r for r in item.rule_ids if not wanted or r in wanted]
            if not rules:
                continue
            about = _about(rule, item, quote.ticker, ruleset)
            if about is None:
                continue
            found.append(
                JoinedNews(
                    item_id=item.item_id,
                    title=item.title,
                    event_time=item.event_time,
                    cluster=item.cluster,
                    news_rules=tuple(rules),
                    about=about,
                )
            )
        if found:
            matched.append(JoinedMatch(rule.id, rule.severity, seen, window, tuple(found)))
    return _session_signal(
        "policy_move",
        matched,
        move,
        lambda rules: PolicyMoveExplanation(
            move=_quote_facts(quote), rules=rules, not_claimed=not_claimed(move, ruleset)
        ),
    )


_Match = TypeVar("_Match", JoinedMatch, DisclosureMoveMatch)


def _session_signal(
    kind: SignalKind,
    matched: Sequence[_Match],
    move: MoveFacts,
    explain: Callable[[tuple[_Match, ...]], Explanation],
) -> list[Signal]:
    """One signal of ``kind`` for the quote's session, named by the most severe of the
    rules that held (ties: the first in the ruleset), or none when none held."""
    if not matched:
        return []
    lead = max(matched, key=lambda m: SEVERITY_RANK[m.severity])
    day = lead.window.session
    assert day is not None
    quote = move.quote
    return [
        Signal(
            kind=kind,
            rule_id=lead.rule_id,
            severity=lead.severity,
            subject=quote.ticker,
            event_time=_utc(quote.as_of),
            explanation=explain(tuple(matched)),
            # No rule id: one alert per ticker per session, whichever rule met it first.
            dedup_key=f"{kind}:{quote.ticker}:{day.isoformat()}",
        )
    ]


def evaluate_quote(
    move: MoveFacts,
    news: Sequence[NewsFacts],
    ruleset: Ruleset,
    calendar: Calendar = KRX,
    disclosures: Sequence[DisclosureFacts] = (),
) -> list[Signal]:
    """Move signals, the policy move and the disclosure move of one quote, in that order."""
    return [
        *evaluate_moves(
            move.quote, kospi_change_pct=move.kospi_change_pct, stats=move.stats, ruleset=ruleset
        ),
        *evaluate_joined(move, news, ruleset, calendar),
        *evaluate_disclosure_move(move, disclosures, ruleset, calendar),
    ]


# --- disclosures ------------------------------------------------------------------------


@dataclass(frozen=True)
class DisclosureFacts:
    """A filing that fired disclosure rules: what :func:`evaluate_disclosure_move` needs
    (read back from its stored signal)."""

    item_id: str
    rcept_no: str
    corp_name: str
    stock_code: str | None
    report_nm: str
    event_time: datetime
    url: str | None
    rule_ids: tuple[str, ...]


def _disclosure_fires(rule: DisclosureRule, filing: StoredFiling) -> str | None:
    """Why ``rule`` fires on ``filing`` in words, or None."""
    if filing.stock_code is None or (rule.tickers and filing.stock_code not in rule.tickers):
        return None
    kind, marked = report_kind_of(filing.report_nm)
    if (marked or filing.correction) and not rule.corrections:
        return None  # a correction of a filing, not a new event
    for report in rule.reports:
        if report in kind:
            note = " (a correction)" if marked or filing.correction else ""
            return f"report {filing.report_nm!r} is a {report}{note}"
    return None


def evaluate_disclosure(filing: StoredFiling, ruleset: Ruleset) -> list[Signal]:
    """One ``disclosure`` signal for a filing that fires disclosure rules (the most
    severe names it; ties: the first in the ruleset), keyed by its receipt number."""
    fired: list[tuple[DisclosureRule, str]] = []
    for rule in ruleset.rules.values():
        if isinstance(rule, DisclosureRule) and (why := _disclosure_fires(rule, filing)):
            fired.append((rule, why))
    if not fired or filing.stock_code is None:
        return []
    lead, _ = max(fired, key=lambda f: SEVERITY_RANK[f[0].severity])
    when = _utc(filing.published_at)
    return [
        Signal(
            kind="disclosure",
            rule_id=lead.id,
            severity=lead.severity,
            subject=filing.stock_code,
            event_time=when,
            explanation=DisclosureExplanation(
                item_id=str(filing.item_id),
                rcept_no=filing.rcept_no,
                corp_name=filing.corp_name,
                stock_code=filing.stock_code,
                report_nm=filing.report_nm,
                filer=filing.flr_nm,
                received=filing.rcept_dt,
                published_at=when,
                url=filing.url,
                correction=filing.correction,
                rules=tuple(FiredNewsRule(r.id, r.severity, why) for r, why in fired),
            ),
            dedup_key=f"disclosure:{filing.rcept_no}",
        )
    ]


def evaluate_disclosure_move(
    move: MoveFacts,
    filings: Sequence[DisclosureFacts],
    ruleset: Ruleset,
    calendar: Calendar = KRX,
) -> list[Signal]:
    """At most one ``disclosure_move`` for the quote: every disclosure_move rule whose
    move the quote makes after a filing of the same company, inside its window."""
    quote = move.quote
    matched: list[DisclosureMoveMatch] = []
    for rule, seen, window in _moves_held(DisclosureMoveRule, move, ruleset, calendar):
        start, end = window.start, window.end
        assert start is not None and end is not None
        wanted = set(rule.disclosures)
        found = [
            JoinedFiling(
                item_id=f.item_id,
                rcept_no=f.rcept_no,
                corp_name=f.corp_name,
                report_nm=f.report_nm,
                event_time=f.event_time,
                url=f.url,
                disclosure_rules=tuple(r for r in f.rule_ids if not wanted or r in wanted),
            )
            for f in sorted(filings, key=lambda f: (f.event_time, f.rcept_no))
            if f.stock_code == quote.ticker
            and start < f.event_time <= end
            and any(not wanted or r in wanted for r in f.rule_ids)
        ]
        if found:
            matched.append(DisclosureMoveMatch(rule.id, rule.severity, seen, window, tuple(found)))
    return _session_signal(
        "disclosure_move",
        matched,
        move,
        lambda rules: DisclosureMoveExplanation(
            move=_quote_facts(quote), rules=rules, not_claimed=not_claimed(move, ruleset)
        ),
    )


# --- source health ------------------------------------------------------------------


def _since_key(since: datetime | None) -> str:
    return since.isoformat() if since is not None else "never"


def evaluate_source_health(
    source: str,
    *,
    interval: float,
    last_success_at: datetime | None,
    failures: int,
    last_error: str | None,
    now: datetime,
    ruleset: Ruleset,
) -> list[Signal]:
    """A ``source_stale`` signal per source-health rule the failing ``source`` meets.

    Stale: no successful poll for ``missed_intervals`` of its intervals, on the clock
    (back-off stretches the gaps between polls, so counting failures would flag a
    source later and later); a source that never succeeded counts its failures. One
    signal per outage: the key holds the time of the last success.
    """
    signals = []
    for rule in ruleset.rules.values():
        if not isinstance(rule, SourceHealthRule):
            continue
        if rule.sources and source not in rule.sources:
            continue
        if last_success_at is not None:
            silent = (_utc(now) - _utc(last_success_at)).total_seconds()
            stale = silent >= rule.missed_intervals * interval
        else:
            silent = None
            stale = failures >= rule.missed_intervals
        if not stale:
            continue
        since = _utc(last_success_at) if last_success_at else None
        signals.append(
            Signal(
                kind="source_stale",
                rule_id=rule.id,
                severity=rule.severity,
                subject=source,
                event_time=_utc(now),
                explanation=SourceStaleExplanation(
                    source=source,
                    since=since,
                    silent_seconds=silent,
                    interval_seconds=interval,
                    missed_intervals=rule.missed_intervals,
                    failures=failures,
                    last_error=last_error,
                ),
                dedup_key=f"source_stale:{rule.id}:{source}:{_since_key(since)}",
            )
        )
    return signals


# The rule of an auth failure: not a ruleset's rule (every source has it), but named
# like one, so that routes and `kmon signals list --rule` can select it.
SOURCE_AUTH_RULE = "source-auth"


def evaluate_source_auth(
    source: str, *, last_success_at: datetime | None, error: str, now: datetime
) -> list[Signal]:
    """A ``source_auth`` signal: ``source`` refused our credentials (401/403), and a
    human has to act (a key expired, a paywall). One signal per outage, like stale."""
    since = _utc(last_success_at) if last_success_at else None
    return [
        Signal(
            kind="source_auth",
            rule_id=SOURCE_AUTH_RULE,
            severity="warning",
            subject=source,
            event_time=_utc(now),
            explanation=SourceAuthExplanation(source=source, since=since, last_error=error),
            dedup_key=f"source_auth:{source}:{_since_key(since)}",
        )
    ]
