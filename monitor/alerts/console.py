"""Console: alerts as log lines, for a first run before Slack or email is set up.

One line per signal, event ``alert`` with the fields severity, rule, subject, title,
url and why, through structlog (``stream: log``, the daemon's own log) or as a JSON
object per line on standard output (``stream: stdout``, for piping into another
tool). Titles and URLs stay data: JSON escapes quotes and line breaks, and control
and bidi-override characters are replaced before they reach a terminal, where the
console renderer would otherwise print them raw.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog

from adapters.text import one_line
from monitor.alerting import ConsoleConfig
from monitor.alerts.message import AlertMessage, AlertSignal, Sent
from monitor.severity import SEVERITY_RANK
from monitor.timefmt import KST

__all__ = ["ConsoleChannel"]

LOGGER_NAME = "kmon.alert"

log = structlog.get_logger(LOGGER_NAME)


class ConsoleChannel:
    """Writes one line per signal; never fails for reasons outside the process."""

    def __init__(self, name: str, config: ConsoleConfig, *, stdout: TextIO | None = None) -> None:
        self.name = name
        self._config = config
        self._stdout = stdout

    async def send(self, message: AlertMessage) -> Sent:
        """Write ``message``'s signals; ``Sent.detail`` says how many lines."""
        for signal in message.signals:
            fields = _fields(self.name, message, signal)
            if self._config.stream == "stdout":
                out = self._stdout or sys.stdout
                record = {"logger": LOGGER_NAME, "event": "alert", **fields}
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()
            else:
                level = signal.severity if signal.severity in SEVERITY_RANK else "info"
                getattr(log, level)("alert", logger=LOGGER_NAME, **fields)
        count = len(message.signals)
        detail = f"wrote {count} line{'s' if count != 1 else ''}"
        if message.folded:
            detail += f" (+{message.folded} folded)"
        return Sent(detail=detail)

    async def close(self) -> None:
        """Nothing to release."""


def _fields(channel: str, message: AlertMessage, signal: AlertSignal) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "channel": channel,
        "severity": signal.severity,
        "rule": one_line(signal.rule_id),
        "subject": one_line(signal.subject),
        "title": one_line(signal.title),
        "url": one_line(signal.url) if signal.url else None,
        "why": _why(signal),
        "event_time": _kst_iso(signal.event_time),
        "signal_id": signal.id,
    }
    if signal.source:
        fields["source"] = one_line(signal.source)
    if signal.move is not None:
        fields["move"] = {
            "ticker": one_line(signal.move.ticker),
            "name": one_line(signal.move.name) if signal.move.name else None,
            "price": signal.move.price,
            "change_pct": signal.move.change_pct,
        }
    if message.folded:
        fields["folded"] = message.folded
    if message.digest:
        fields["digest"] = True
    if message.test:
        fields["test"] = True
    return fields


def _why(signal: AlertSignal) -> str:
    parts = [one_line(signal.why)] if signal.why else []
    if signal.terms:
        parts.append("terms: " + ", ".join(one_line(term) for term in signal.terms))
    return "; ".join(parts)


def _kst_iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(KST).isoformat()
