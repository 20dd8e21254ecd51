"""Reading and showing times: UTC inside, Asia/Seoul for people."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time, timedelta

# Asia/Seoul as a fixed UTC+9: adapters read source dates in it, the core shows times
# in it, and both mean the same zone.
from adapters.records import KST as KST

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


# The longest duration a setting may hold: beyond it a schedule overflows the clock
# (APScheduler, timedelta) and no sensible poll or retry waits that long.
MAX_DURATION = 30 * 86400.0


def utcnow() -> datetime:
    """The current moment, in UTC: the clock every component is given by default."""
    return datetime.now(UTC)


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, *, now: datetime) -> datetime:
    """A point in time from the command line, as UTC.

    ``2d``, ``36h``, ``90m``, ``1w`` are that long before ``now``; ``today`` and
    ``yesterday`` are midnight in Seoul; ``2025-06-18`` is that day's midnight in
    Seoul; ISO date-times without an offset are Seoul wall-clock times.
    Raises ValueError with a message fit for the user.
    """
    try:
        return _parse_when(text, now=now)
    except OverflowError:
        raise ValueError(f"{text!r} is out of the range of dates kmon can store") from None


def _parse_when(text: str, *, now: datetime) -> datetime:
    value = text.strip().lower()
    if match := _RELATIVE.match(value):
        amount, unit = match.groups()
        return now - timedelta(**{_UNITS[unit]: float(amount)})
    if value in ("now",):
        return now
    if value in ("today", "yesterday"):
        day = now.astimezone(KST).date() - timedelta(days=value == "yesterday")
        return datetime.combine(day, time(), KST).astimezone(UTC)
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), KST).astimezone(UTC)
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use e.g. 2d, 36h, 90m, today, 2025-06-18 "
            "or 2025-06-18T09:30 (Seoul time unless an offset is given)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=KST)
    return parsed.astimezone(UTC)


def kst(value: datetime | None, *, seconds: bool = False) -> str:
    """``2025-06-18 09:30`` in Seoul time, or an empty string for None."""
    if value is None:
        return ""
    return value.astimezone(KST).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def kst_iso(value: datetime | None) -> str | None:
    return value.astimezone(KST).isoformat() if value is not None else None


def parse_duration(value: object) -> object:
    """Accept seconds as a number or text such as ``90``, ``15m``, ``1.5h``, ``2d``."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use e.g. 90, 30s, 15m, 2h, 1d)")
        number, unit = match.groups()
        return float(number) * _UNIT_SECONDS[unit or "s"]
    return value


def bounded_duration(value: float) -> float:
    """A parsed duration, refused when infinite or longer than :data:`MAX_DURATION`."""
    if not math.isfinite(value):
        raise ValueError("must be a finite duration")
    if value > MAX_DURATION:
        raise ValueError(f"{value:g}s is longer than the {MAX_DURATION / 86400:g} days allowed")
    return value
