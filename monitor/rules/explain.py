"""A signal's explanation in words, for the CLI and the alerts.

The explanation (:mod:`monitor.rules.explanation`, built in
:mod:`monitor.rules.evaluate`) is the evidence; these functions only read it. A
stored row is read with :func:`monitor.rules.explanation.parse` first, which fills in
what an older version did not write.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from monitor.rules.explanation import (
    DisclosureExplanation,
    DisclosureMoveExplanation,
    Explanation,
    MatchedMove,
    MoveExplanation,
    NewsExplanation,
    PolicyMoveExplanation,
    QuoteFacts,
    SourceAuthExplanation,
    SourceStaleExplanation,
    TermHit,
)
from monitor.timefmt import kst


def _pct(value: float | None) -> str:
    return f"{value:+.2f}%" if value is not None else "?"


def _when(when: datetime | None) -> str:
    return kst(when) if when is not None else "?"


def _hits(hits_by_id: Mapping[str, tuple[TermHit, ...]]) -> str:
    parts = []
    for key, hits in hits_by_id.items():
        spots = ", ".join(f"{h.surface!r} {h.field}[{h.start}:{h.end}]" for h in hits)
        parts.append(f"{key} ({spots})")
    return "; ".join(parts)


def _move(matched: MatchedMove) -> str:
    parts = []
    if (change := matched.change) is not None:
        text = f"change {_pct(change.change_pct)}"
        if change.relative_to:
            text += (
                f" vs {change.relative_to} {_pct(change.index_change_pct)}"
                f" = {_pct(change.excess_pct)}"
            )
        text += f" (threshold {change.direction} {change.threshold_pct}%)"
        parts.append(text)
    if (extreme := matched.new_extreme) is not None:
        level = extreme.high if extreme.side == "high" else extreme.low
        over = f" over {extreme.bars} bars" if extreme.bars is not None else ""
        parts.append(f"new {extreme.weeks}-week {extreme.side} {level}{over}")
    if (volume := matched.volume) is not None:
        parts.append(
            f"volume {volume.volume} ≥ {volume.multiple}× "
            f"the {volume.days}-day average {volume.avg_volume}"
        )
    return ", ".join(parts)


def _quote(quote: QuoteFacts | None) -> str:
    if quote is None:
        return "quote: ?"
    return (
        f"quote: {quote.ticker} {quote.price} {_pct(quote.change_pct)}"
        f" at {_when(quote.as_of)} KST (source {quote.source})"
    )


def _news(exp: NewsExplanation) -> list[str]:
    lines = [f"news: {exp.title!r} ({_when(exp.published_at)} KST)"]
    if exp.source or exp.url:
        lines.append(f"  from {exp.source or '?'} {exp.url or ''}".rstrip())
    if exp.score is not None:
        parts = ", ".join(f"{label} {points}" for label, points in exp.score_parts)
        lines.append(f"  score: {exp.score} ({parts})" if parts else f"  score: {exp.score}")
    for rule in exp.rules:
        lines.append(f"  rule {rule.rule_id} [{rule.severity}]: {rule.why}")
    if not exp.rules and exp.why:
        lines.append(f"  why: {exp.why}")
    if exp.themes:
        lines.append(f"  themes: {_hits(exp.themes)}")
    if exp.entities:
        lines.append(f"  entities: {_hits(exp.entities)}")
    if exp.anchors:
        lines.append(f"  anchored: {', '.join(exp.anchors)}")
    if exp.tickers:
        lines.append(f"  tickers: {', '.join(exp.tickers)}")
    lines.append(f"  story: {exp.cluster}")
    return lines


def _policy_move(exp: PolicyMoveExplanation) -> list[str]:
    lines = [_quote(exp.move)]
    for rule in exp.rules:
        window = rule.window
        lines.append(f"  rule {rule.rule_id} [{rule.severity}]: {_move(rule.matched)}")
        lines.append(
            f"    window: news after {_when(window.start)} up to "
            f"{_when(window.end)} KST (session {window.session}, "
            f"{window.trading_days_before} trading days before"
            f"{', same session' if window.same_session else ''})"
        )
        for news in rule.news:
            lines.append(
                f"    news #{news.item_id} {_when(news.event_time)} KST "
                f"({', '.join(news.news_rules)}; about the {news.about}):"
                f" {news.title!r}"
            )
    return lines + _not_claimed(exp.not_claimed)


def _disclosure(exp: DisclosureExplanation) -> list[str]:
    lines = [
        f"disclosure: [{exp.corp_name}] {exp.report_nm!r} (receipt {exp.rcept_no},"
        f" received {exp.received or '?'}, filer {exp.filer or '?'})"
    ]
    if exp.url:
        lines.append(f"  {exp.url}")
    if exp.correction:
        lines.append("  a correction of an earlier filing")
    for rule in exp.rules:
        lines.append(f"  rule {rule.rule_id} [{rule.severity}]: {rule.why}")
    return lines


def _disclosure_move(exp: DisclosureMoveExplanation) -> list[str]:
    lines = [_quote(exp.move)]
    for rule in exp.rules:
        window = rule.window
        lines.append(f"  rule {rule.rule_id} [{rule.severity}]: {_move(rule.matched)}")
        lines.append(
            f"    window: filings after {_when(window.start)} up to "
            f"{_when(window.end)} KST (session {window.session})"
        )
        for filing in rule.filings:
            lines.append(
                f"    filing {filing.rcept_no} {_when(filing.event_time)} KST "
                f"({', '.join(filing.disclosure_rules)}): [{filing.corp_name}]"
                f" {filing.report_nm!r}"
            )
    return lines + _not_claimed(exp.not_claimed)


def _not_claimed(notes: tuple[str, ...]) -> list[str]:
    return [f"  {note}" for note in notes]


def describe(explanation: Explanation | None) -> list[str]:
    """Lines saying why a signal fired (no trailing newline, untrusted text as is);
    none for an explanation of a kind this version does not know."""
    match explanation:
        case NewsExplanation():
            return _news(explanation)
        case MoveExplanation():
            return [
                _quote(explanation.quote),
                f"  matched: {_move(explanation.matched)}",
                *_not_claimed(explanation.not_claimed),
            ]
        case PolicyMoveExplanation():
            return _policy_move(explanation)
        case DisclosureExplanation():
            return _disclosure(explanation)
        case DisclosureMoveExplanation():
            return _disclosure_move(explanation)
        case SourceStaleExplanation():
            s = explanation
            return [
                f"source {s.source}: no successful poll since "
                f"{_when(s.since) + ' KST' if s.since else 'it was added'}"
                f" ({s.failures} failures; {s.missed_intervals} intervals of"
                f" {s.interval_seconds} s allowed)",
                f"  last error: {s.last_error}",
            ]
        case SourceAuthExplanation():
            a = explanation
            return [
                f"source {a.source}: credentials refused (401/403); a human has to act"
                f" (last success: {_when(a.since) + ' KST' if a.since else 'never'})",
                f"  last error: {a.last_error}",
            ]
    return []
