"""A signal's explanation in words, for the CLI and the alerts.

The explanation JSON (built in :mod:`monitor.rules.evaluate`) is the evidence; these
functions only read it, and tolerate keys that an older version did not write.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from monitor.timefmt import kst

JSON = Mapping[str, Any]


def _pct(value: object) -> str:
    return f"{value:+.2f}%" if isinstance(value, (int, float)) else "?"


def _when(text: object) -> str:
    if not isinstance(text, str):
        return "?"
    try:
        return kst(datetime.fromisoformat(text))
    except ValueError:
        return text


def matched_terms(explanation: JSON) -> list[str]:
    """The surfaces of the theme hits, as they appeared, first occurrence of each."""
    seen: dict[str, None] = {}
    for hits in (explanation.get("themes") or {}).values():
        for hit in hits:
            seen.setdefault(str(hit.get("surface", "")), None)
    return [term for term in seen if term]


def _hits(hits_by_id: JSON) -> str:
    parts = []
    for key, hits in hits_by_id.items():
        spots = ", ".join(
            f"{h.get('surface')!r} {h.get('field')}[{h.get('start')}:{h.get('end')}]" for h in hits
        )
        parts.append(f"{key} ({spots})")
    return "; ".join(parts)


def _move(matched: JSON) -> str:
    parts = []
    change = matched.get("change")
    if change:
        text = f"change {_pct(change.get('change_pct'))}"
        if change.get("relative_to"):
            text += (
                f" vs {change['relative_to']} {_pct(change.get('index_change_pct'))}"
                f" = {_pct(change.get('excess_pct'))}"
            )
        text += f" (threshold {change.get('direction')} {change.get('threshold_pct')}%)"
        parts.append(text)
    extreme = matched.get("new_extreme")
    if extreme:
        level = extreme.get("high") if extreme.get("side") == "high" else extreme.get("low")
        parts.append(f"new {extreme.get('weeks')}-week {extreme.get('side')} {level}")
    volume = matched.get("volume")
    if volume:
        parts.append(
            f"volume {volume.get('volume')} ≥ {volume.get('multiple')}× "
            f"the {volume.get('days')}-day average {volume.get('avg_volume')}"
        )
    return ", ".join(parts)


def describe(kind: str, explanation: JSON) -> list[str]:
    """Lines saying why a signal fired (no trailing newline, untrusted text as is)."""
    exp = explanation
    if kind == "news":
        lines = [f"news: {exp.get('title', '')!r} ({_when(exp.get('published_at'))} KST)"]
        if exp.get("source") or exp.get("url"):
            lines.append(f"  from {exp.get('source') or '?'} {exp.get('url') or ''}".rstrip())
        for rule in exp.get("rules") or []:
            lines.append(
                f"  rule {rule.get('rule_id')} [{rule.get('severity')}]: {rule.get('why')}"
            )
        if not exp.get("rules") and exp.get("why"):
            lines.append(f"  why: {exp['why']}")
        if exp.get("themes"):
            lines.append(f"  themes: {_hits(exp['themes'])}")
        if exp.get("entities"):
            lines.append(f"  entities: {_hits(exp['entities'])}")
        if exp.get("tickers"):
            lines.append(f"  tickers: {', '.join(exp['tickers'])}")
        lines.append(f"  story: {exp.get('cluster')}")
        return lines
    if kind in ("move", "policy_move"):
        quote = exp.get("quote") or exp.get("move") or {}
        lines = [
            f"quote: {quote.get('ticker')} {quote.get('price')} {_pct(quote.get('change_pct'))}"
            f" at {_when(quote.get('as_of'))} KST (source {quote.get('source')})"
        ]
        if kind == "move":
            lines.append(f"  matched: {_move(exp.get('matched') or {})}")
            return lines
        for rule in exp.get("rules") or []:
            window = rule.get("window") or {}
            lines.append(
                f"  rule {rule.get('rule_id')} [{rule.get('severity')}]: "
                f"{_move(rule.get('matched') or {})}"
            )
            lines.append(
                f"    window: news after {_when(window.get('start'))} up to "
                f"{_when(window.get('end'))} KST (session {window.get('session')}, "
                f"{window.get('trading_days_before')} trading days before"
                f"{', same session' if window.get('same_session') else ''})"
            )
            for news in rule.get("news") or []:
                lines.append(
                    f"    news #{news.get('item_id')} {_when(news.get('event_time'))} KST "
                    f"({', '.join(news.get('news_rules') or [])}; about the {news.get('about')}):"
                    f" {news.get('title')!r}"
                )
        return lines
    if kind == "source_stale":
        return [
            f"source {exp.get('source')}: no successful poll since "
            f"{_when(exp.get('since')) + ' KST' if exp.get('since') else 'it was added'}"
            f" ({exp.get('failures')} failures; {exp.get('missed_intervals')} intervals of"
            f" {exp.get('interval_seconds')} s allowed)",
            f"  last error: {exp.get('last_error')}",
        ]
    if kind == "source_auth":
        return [
            f"source {exp.get('source')}: credentials refused (401/403); a human has to act"
            f" (last success: {_when(exp.get('since')) + ' KST' if exp.get('since') else 'never'})",
            f"  last error: {exp.get('last_error')}",
        ]
    return [str(dict(exp))]
