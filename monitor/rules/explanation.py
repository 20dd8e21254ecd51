"""A signal's explanation: the evidence for it, one typed value per signal kind.

:mod:`monitor.rules.evaluate` builds these; :func:`to_json` is the one place that
writes what is stored in ``signals.explanation``, and :func:`parse` the one place that
reads a stored row back. ``parse`` is tolerant: rows written by an older version, or
edited by hand, lose detail (a missing or odd value becomes its default: ``None``, an
empty string or an empty tuple), never raise.

The stored JSON, by kind (keys in this order)::

    news          item_id title published_at cluster url source themes entities
                  tickers sectors why rules[rule_id severity why] score score_parts
                  anchors source_type
    move          quote{…} matched{change? new_extreme? volume?} not_claimed?
    policy_move   move{…} rules[rule_id severity matched window news[…]] not_claimed?
    source_stale  source since silent_seconds interval_seconds missed_intervals
                  failures last_error
    source_auth   source since last_error
    disclosure    item_id rcept_no corp_name stock_code report_nm filer received
                  published_at url correction rules[rule_id severity why]
    disclosure_move  move{…} rules[rule_id severity matched window filings[item_id
                  rcept_no corp_name report_nm event_time url disclosure_rules]]
                  not_claimed?

``quote``/``move``: ticker as_of price prev_close change_pct high low volume source.
``not_claimed`` (only when there is one): why a rule's 52-week high or low was not
claimed for the quote, e.g. "policy-high: 52-week high not claimed: 37 bars, 200 needed".
Times are ISO 8601 strings (UTC), days ISO dates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any, Literal, overload

JSON = dict[str, Any]


# --- the parts ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TermHit:
    """One matched term in a news item: ``surface`` is ``text[start:end]`` of ``field``."""

    surface: str
    term: str
    field: str | None
    start: int | None
    end: int | None


@dataclass(frozen=True, slots=True)
class FiredNewsRule:
    """A news rule that fired on the story, and why in words."""

    rule_id: str
    severity: str
    why: str


@dataclass(frozen=True, slots=True)
class QuoteFacts:
    """The quote a move signal judged (``change_pct`` as measured, given or computed)."""

    ticker: str
    as_of: datetime | None
    price: float | None
    prev_close: float | None = None
    change_pct: float | None = None
    high: float | None = None
    low: float | None = None
    volume: float | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class ChangeMatch:
    """The change a move rule asked for: ``excess_pct`` is the change beyond the index
    (``relative_to``), or the change itself."""

    change_pct: float | None
    relative_to: str | None
    index_change_pct: float | None
    excess_pct: float | None
    threshold_pct: float | None
    direction: str


@dataclass(frozen=True, slots=True)
class ExtremeMatch:
    """A new ``weeks``-week high or low: the day's range against the period's, which
    ``bars`` daily bars before the session give."""

    weeks: int = 52
    side: str = "high"
    day_high: float | None = None
    day_low: float | None = None
    high: float | None = None
    low: float | None = None
    bars: int | None = None


@dataclass(frozen=True, slots=True)
class VolumeMatch:
    """Volume at least ``multiple`` times the ``days``-day average."""

    volume: float | None = None
    avg_volume: float | None = None
    days: int = 20
    multiple: float | None = None


@dataclass(frozen=True, slots=True)
class MatchedMove:
    """What the quote did of what a move rule asks for (the conditions it has)."""

    change: ChangeMatch | None = None
    new_extreme: ExtremeMatch | None = None
    volume: VolumeMatch | None = None


@dataclass(frozen=True, slots=True)
class NewsWindow:
    """News with ``start`` < event time <= ``end`` counted, for the ``session`` day."""

    start: datetime | None = None
    end: datetime | None = None
    session: date | None = None
    trading_days_before: int | None = None
    same_session: bool = False


@dataclass(frozen=True, slots=True)
class JoinedNews:
    """A news item a joined rule counted: its news rules, and whether it is about the
    ticker's company (``entity``) or its sector."""

    item_id: str
    title: str
    event_time: datetime | None
    cluster: str
    news_rules: tuple[str, ...] = ()
    about: str = ""


@dataclass(frozen=True, slots=True)
class JoinedMatch:
    """One joined rule that held: the move it matched, its window, the news in it."""

    rule_id: str
    severity: str
    matched: MatchedMove
    window: NewsWindow
    news: tuple[JoinedNews, ...] = ()


# --- one per kind ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewsExplanation:
    """A news story: the copy that raised it, its hits and every news rule that fired
    (``why`` is the lead rule's reason)."""

    item_id: str
    title: str
    published_at: datetime | None
    cluster: str
    url: str | None = None
    source: str | None = None
    themes: Mapping[str, tuple[TermHit, ...]] = field(default_factory=dict)
    entities: Mapping[str, tuple[TermHit, ...]] = field(default_factory=dict)
    tickers: tuple[str, ...] = ()
    sectors: tuple[str, ...] = ()
    why: str = ""
    rules: tuple[FiredNewsRule, ...] = ()
    # The relevance score (None: stored before scores) and its parts, (label, points).
    score: int | None = None
    score_parts: tuple[tuple[str, int], ...] = ()
    anchors: tuple[str, ...] = ()
    # The type of the copy's source (news, government; None: stored before types).
    source_type: str | None = None

    def terms(self) -> list[str]:
        """The surfaces of the theme hits, as they appeared, first occurrence of each."""
        seen: dict[str, None] = {}
        for hits in self.themes.values():
            for hit in hits:
                if hit.surface.strip():
                    seen.setdefault(hit.surface, None)
        return list(seen)


@dataclass(frozen=True, slots=True)
class MoveExplanation:
    """A move rule met by a quote (``quote`` is None only in a row that lost it)."""

    quote: QuoteFacts | None
    matched: MatchedMove = MatchedMove()
    not_claimed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyMoveExplanation:
    """Every joined rule that held for one quote (the stored key of the quote is
    ``move``)."""

    move: QuoteFacts | None
    rules: tuple[JoinedMatch, ...] = ()
    not_claimed: tuple[str, ...] = ()

    def lead(self, rule_id: str) -> JoinedMatch | None:
        """The rule ``rule_id`` (the one naming the signal), else the first."""
        return next((r for r in self.rules if r.rule_id == rule_id), None) or next(
            iter(self.rules), None
        )


@dataclass(frozen=True, slots=True)
class SourceStaleExplanation:
    """A source silent for ``missed_intervals`` of its intervals (``since``: its last
    success, None if it never had one)."""

    source: str
    since: datetime | None
    silent_seconds: float | None = None
    interval_seconds: float | None = None
    missed_intervals: int | None = None
    failures: int | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class SourceAuthExplanation:
    """A source refusing our credentials (401/403)."""

    source: str
    since: datetime | None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class DisclosureExplanation:
    """An OpenDART filing that disclosure rules fired on (``rules``: each, with why;
    the first names the signal)."""

    item_id: str
    rcept_no: str
    corp_name: str
    stock_code: str | None
    report_nm: str
    filer: str = ""
    received: date | None = None
    published_at: datetime | None = None
    url: str | None = None
    correction: bool = False
    rules: tuple[FiredNewsRule, ...] = ()


@dataclass(frozen=True, slots=True)
class JoinedFiling:
    """A filing a disclosure_move rule counted, with the disclosure rules it fired."""

    item_id: str
    rcept_no: str
    corp_name: str
    report_nm: str
    event_time: datetime | None
    url: str | None = None
    disclosure_rules: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DisclosureMoveMatch:
    """One disclosure_move rule that held: the move, its window, the filings in it."""

    rule_id: str
    severity: str
    matched: MatchedMove
    window: NewsWindow
    filings: tuple[JoinedFiling, ...] = ()


@dataclass(frozen=True, slots=True)
class DisclosureMoveExplanation:
    """Every disclosure_move rule that held for one quote."""

    move: QuoteFacts | None
    rules: tuple[DisclosureMoveMatch, ...] = ()
    not_claimed: tuple[str, ...] = ()

    def lead(self, rule_id: str) -> DisclosureMoveMatch | None:
        """The rule ``rule_id`` (the one naming the signal), else the first."""
        return next((r for r in self.rules if r.rule_id == rule_id), None) or next(
            iter(self.rules), None
        )


Explanation = (
    NewsExplanation
    | MoveExplanation
    | PolicyMoveExplanation
    | SourceStaleExplanation
    | SourceAuthExplanation
    | DisclosureExplanation
    | DisclosureMoveExplanation
)


# --- writing -----------------------------------------------------------------------


def _iso(when: datetime | date | None) -> str | None:
    return when.isoformat() if when is not None else None


def _hits_json(hits_by_id: Mapping[str, tuple[TermHit, ...]]) -> JSON:
    return {
        key: [
            {"surface": h.surface, "term": h.term, "field": h.field, "start": h.start, "end": h.end}
            for h in hits
        ]
        for key, hits in hits_by_id.items()
    }


def _quote_json(quote: QuoteFacts | None) -> JSON:
    if quote is None:
        return {}
    return {
        "ticker": quote.ticker,
        "as_of": _iso(quote.as_of),
        "price": quote.price,
        "prev_close": quote.prev_close,
        "change_pct": quote.change_pct,
        "high": quote.high,
        "low": quote.low,
        "volume": quote.volume,
        "source": quote.source,
    }


def _matched_json(matched: MatchedMove) -> JSON:
    # The flat parts are stored field for field, in their fields' order.
    parts = {
        "change": matched.change,
        "new_extreme": matched.new_extreme,
        "volume": matched.volume,
    }
    return {key: asdict(part) for key, part in parts.items() if part is not None}


def _joined_json(rule: JoinedMatch) -> JSON:
    return {
        "rule_id": rule.rule_id,
        "severity": rule.severity,
        "matched": _matched_json(rule.matched),
        "window": _window_json(rule.window),
        "news": [
            {
                "item_id": n.item_id,
                "title": n.title,
                "event_time": _iso(n.event_time),
                "cluster": n.cluster,
                "news_rules": list(n.news_rules),
                "about": n.about,
            }
            for n in rule.news
        ],
    }


def _window_json(w: NewsWindow) -> JSON:
    return {
        "start": _iso(w.start),
        "end": _iso(w.end),
        "session": _iso(w.session),
        "trading_days_before": w.trading_days_before,
        "same_session": w.same_session,
    }


def _disclosure_move_json(rule: DisclosureMoveMatch) -> JSON:
    return {
        "rule_id": rule.rule_id,
        "severity": rule.severity,
        "matched": _matched_json(rule.matched),
        "window": _window_json(rule.window),
        "filings": [
            {
                "item_id": f.item_id,
                "rcept_no": f.rcept_no,
                "corp_name": f.corp_name,
                "report_nm": f.report_nm,
                "event_time": _iso(f.event_time),
                "url": f.url,
                "disclosure_rules": list(f.disclosure_rules),
            }
            for f in rule.filings
        ],
    }


def _not_claimed_json(notes: tuple[str, ...]) -> JSON:
    # Only when there is something to say: most moves claim what their bars support.
    return {"not_claimed": list(notes)} if notes else {}


def to_json(explanation: Explanation) -> JSON:
    """What is stored in ``signals.explanation`` for ``explanation``."""
    match explanation:
        case NewsExplanation():
            e = explanation
            return {
                "item_id": e.item_id,
                "title": e.title,
                "published_at": _iso(e.published_at),
                "cluster": e.cluster,
                "url": e.url,
                "source": e.source,
                "themes": _hits_json(e.themes),
                "entities": _hits_json(e.entities),
                "tickers": list(e.tickers),
                "sectors": list(e.sectors),
                "why": e.why,
                "rules": [
                    {"rule_id": r.rule_id, "severity": r.severity, "why": r.why} for r in e.rules
                ],
                "score": e.score,
                "score_parts": [{"label": label, "points": n} for label, n in e.score_parts],
                "anchors": list(e.anchors),
                "source_type": e.source_type,
            }
        case MoveExplanation():
            return {
                "quote": _quote_json(explanation.quote),
                "matched": _matched_json(explanation.matched),
                **_not_claimed_json(explanation.not_claimed),
            }
        case PolicyMoveExplanation():
            return {
                "move": _quote_json(explanation.move),
                "rules": [_joined_json(r) for r in explanation.rules],
                **_not_claimed_json(explanation.not_claimed),
            }
        case SourceStaleExplanation():
            s = explanation
            return {
                "source": s.source,
                "since": _iso(s.since),
                "silent_seconds": s.silent_seconds,
                "interval_seconds": s.interval_seconds,
                "missed_intervals": s.missed_intervals,
                "failures": s.failures,
                "last_error": s.last_error,
            }
        case SourceAuthExplanation():
            a = explanation
            return {"source": a.source, "since": _iso(a.since), "last_error": a.last_error}
        case DisclosureExplanation():
            d = explanation
            return {
                "item_id": d.item_id,
                "rcept_no": d.rcept_no,
                "corp_name": d.corp_name,
                "stock_code": d.stock_code,
                "report_nm": d.report_nm,
                "filer": d.filer,
                "received": _iso(d.received),
                "published_at": _iso(d.published_at),
                "url": d.url,
                "correction": d.correction,
                "rules": [
                    {"rule_id": r.rule_id, "severity": r.severity, "why": r.why} for r in d.rules
                ],
            }
        case DisclosureMoveExplanation():
            return {
                "move": _quote_json(explanation.move),
                "rules": [_disclosure_move_json(r) for r in explanation.rules],
                **_not_claimed_json(explanation.not_claimed),
            }


# --- reading -----------------------------------------------------------------------


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _strs(value: object) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _num(value: object) -> float | None:
    # As stored (an int stays an int: a listing shows 259000, not 259,000.00).
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _day(value: object) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _hits(value: object) -> dict[str, tuple[TermHit, ...]]:
    return {
        str(key): tuple(
            TermHit(
                surface=_text(h.get("surface")),
                term=_text(h.get("term")),
                field=_str(h.get("field")),
                start=_int(h.get("start")),
                end=_int(h.get("end")),
            )
            for h in _dicts(hits)
        )
        for key, hits in _dict(value).items()
    }


def _quote(value: object) -> QuoteFacts | None:
    q = _dict(value)
    if not q:
        return None
    return QuoteFacts(
        ticker=_text(q.get("ticker")),
        as_of=_time(q.get("as_of")),
        price=_num(q.get("price")),
        prev_close=_num(q.get("prev_close")),
        change_pct=_num(q.get("change_pct")),
        high=_num(q.get("high")),
        low=_num(q.get("low")),
        volume=_num(q.get("volume")),
        source=_str(q.get("source")),
    )


def _matched(value: object) -> MatchedMove:
    m = _dict(value)
    c, x, v = _dict(m.get("change")), _dict(m.get("new_extreme")), _dict(m.get("volume"))
    return MatchedMove(
        change=ChangeMatch(
            change_pct=_num(c.get("change_pct")),
            relative_to=_str(c.get("relative_to")),
            index_change_pct=_num(c.get("index_change_pct")),
            excess_pct=_num(c.get("excess_pct")),
            threshold_pct=_num(c.get("threshold_pct")),
            direction=_text(c.get("direction")),
        )
        if c
        else None,
        new_extreme=ExtremeMatch(
            weeks=_int(x.get("weeks")) or 52,
            side=_str(x.get("side")) or "high",
            day_high=_num(x.get("day_high")),
            day_low=_num(x.get("day_low")),
            high=_num(x.get("high")),
            low=_num(x.get("low")),
            bars=_int(x.get("bars")),
        )
        if x
        else None,
        volume=VolumeMatch(
            volume=_num(v.get("volume")),
            avg_volume=_num(v.get("avg_volume")),
            days=_int(v.get("days")) or 20,
            multiple=_num(v.get("multiple")),
        )
        if v
        else None,
    )


def _joined(rule: Mapping[str, Any]) -> JoinedMatch:
    return JoinedMatch(
        rule_id=_text(rule.get("rule_id")),
        severity=_text(rule.get("severity")),
        matched=_matched(rule.get("matched")),
        window=_window(rule.get("window")),
        news=tuple(
            JoinedNews(
                item_id=_text(n.get("item_id")),
                title=_text(n.get("title")),
                event_time=_time(n.get("event_time")),
                cluster=_text(n.get("cluster")),
                news_rules=_strs(n.get("news_rules")),
                about=_text(n.get("about")),
            )
            for n in _dicts(rule.get("news"))
        ),
    )


def _window(value: object) -> NewsWindow:
    w = _dict(value)
    return NewsWindow(
        start=_time(w.get("start")),
        end=_time(w.get("end")),
        session=_day(w.get("session")),
        trading_days_before=_int(w.get("trading_days_before")),
        same_session=w.get("same_session") is True,
    )


def _disclosure_move(rule: Mapping[str, Any]) -> DisclosureMoveMatch:
    return DisclosureMoveMatch(
        rule_id=_text(rule.get("rule_id")),
        severity=_text(rule.get("severity")),
        matched=_matched(rule.get("matched")),
        window=_window(rule.get("window")),
        filings=tuple(
            JoinedFiling(
                item_id=_text(f.get("item_id")),
                rcept_no=_text(f.get("rcept_no")),
                corp_name=_text(f.get("corp_name")),
                report_nm=_text(f.get("report_nm")),
                event_time=_time(f.get("event_time")),
                url=_str(f.get("url")),
                disclosure_rules=_strs(f.get("disclosure_rules")),
            )
            for f in _dicts(rule.get("filings"))
        ),
    )


@overload
def parse(kind: Literal["news"], data: object) -> NewsExplanation: ...
@overload
def parse(kind: Literal["move"], data: object) -> MoveExplanation: ...
@overload
def parse(kind: Literal["policy_move"], data: object) -> PolicyMoveExplanation: ...
@overload
def parse(kind: Literal["source_stale"], data: object) -> SourceStaleExplanation: ...
@overload
def parse(kind: Literal["source_auth"], data: object) -> SourceAuthExplanation: ...
@overload
def parse(kind: Literal["disclosure"], data: object) -> DisclosureExplanation: ...
@overload
def parse(kind: Literal["disclosure_move"], data: object) -> DisclosureMoveExplanation: ...
@overload
def parse(kind: str, data: object) -> Explanation | None: ...


def parse(kind: str, data: object) -> Explanation | None:
    """The explanation of a stored signal of ``kind`` from its JSON; None for a kind
    this version does not know. Missing or odd values become defaults."""
    d = _dict(data)
    if kind == "news":
        return NewsExplanation(
            item_id=_text(d.get("item_id")),
            title=_text(d.get("title")),
            published_at=_time(d.get("published_at")),
            cluster=_text(d.get("cluster")),
            url=_str(d.get("url")),
            source=_str(d.get("source")),
            themes=_hits(d.get("themes")),
            entities=_hits(d.get("entities")),
            tickers=_strs(d.get("tickers")),
            sectors=_strs(d.get("sectors")),
            why=_text(d.get("why")),
            rules=tuple(
                FiredNewsRule(
                    rule_id=_text(r.get("rule_id")),
                    severity=_text(r.get("severity")),
                    why=_text(r.get("why")),
                )
                for r in _dicts(d.get("rules"))
            ),
            score=_int(d.get("score")),
            score_parts=tuple(
                (_text(part.get("label")), _int(part.get("points")) or 0)
                for part in _dicts(d.get("score_parts"))
            ),
            anchors=_strs(d.get("anchors")),
            source_type=_str(d.get("source_type")),
        )
    if kind == "move":
        return MoveExplanation(
            quote=_quote(d.get("quote")),
            matched=_matched(d.get("matched")),
            not_claimed=_strs(d.get("not_claimed")),
        )
    if kind == "policy_move":
        return PolicyMoveExplanation(
            move=_quote(d.get("move")),
            rules=tuple(_joined(r) for r in _dicts(d.get("rules"))),
            not_claimed=_strs(d.get("not_claimed")),
        )
    if kind == "source_stale":
        return SourceStaleExplanation(
            source=_text(d.get("source")),
            since=_time(d.get("since")),
            silent_seconds=_num(d.get("silent_seconds")),
            interval_seconds=_num(d.get("interval_seconds")),
            missed_intervals=_int(d.get("missed_intervals")),
            failures=_int(d.get("failures")),
            last_error=_str(d.get("last_error")),
        )
    if kind == "source_auth":
        return SourceAuthExplanation(
            source=_text(d.get("source")),
            since=_time(d.get("since")),
            last_error=_str(d.get("last_error")),
        )
    if kind == "disclosure":
        return DisclosureExplanation(
            item_id=_text(d.get("item_id")),
            rcept_no=_text(d.get("rcept_no")),
            corp_name=_text(d.get("corp_name")),
            stock_code=_str(d.get("stock_code")),
            report_nm=_text(d.get("report_nm")),
            filer=_text(d.get("filer")),
            received=_day(d.get("received")),
            published_at=_time(d.get("published_at")),
            url=_str(d.get("url")),
            correction=d.get("correction") is True,
            rules=tuple(
                FiredNewsRule(
                    rule_id=_text(r.get("rule_id")),
                    severity=_text(r.get("severity")),
                    why=_text(r.get("why")),
                )
                for r in _dicts(d.get("rules"))
            ),
        )
    if kind == "disclosure_move":
        return DisclosureMoveExplanation(
            move=_quote(d.get("move")),
            rules=tuple(_disclosure_move(r) for r in _dicts(d.get("rules"))),
            not_claimed=_strs(d.get("not_claimed")),
        )
    return None
