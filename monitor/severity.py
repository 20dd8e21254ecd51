"""The severity words of signals, rules and routes, defined once, in rising order."""

from __future__ import annotations

from typing import Literal

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITIES)}


def most_severe(severities: list[str]) -> str:
    """The highest known severity of ``severities`` (``info`` when none is known)."""
    known = [s for s in severities if s in SEVERITY_RANK]
    return max(known, key=SEVERITY_RANK.__getitem__, default="info")
