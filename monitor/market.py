"""The KRX clock: when the Korea Exchange's regular session is open.

Pure functions of a date or of ``now`` (tz-aware; naive datetimes are refused with
ValueError, because guessing their zone is how a poller ends up an hour off).

- The regular session (KOSPI, KOSDAQ) is 09:00–15:30 Asia/Seoul, the half-open
  interval [opens_at, closes_at): at 15:30:00 the market is closed, and the closing
  price (set by the 15:20–15:30 closing auction) is known only after that instant.
- Closed days are weekends plus ``holidays.financial_holidays("XKRX")``, which carries
  the public holidays, election days, Workers' Day and the exchange's own year-end
  closing day (the last weekday of the year, e.g. Fri 2022-12-30 when Dec 31 is a
  Saturday). tests/monitor/test_market.py checks that year-end rule for every
  supported year, so a library upgrade that loses it fails loudly.
- Two kinds of day open an hour late (KRX notices, repeated in the press each year):
  the college entrance exam (수능, CSAT) day shifts the whole session by an hour,
  10:00–16:30, to keep commuters off the roads while candidates travel; the first
  trading day of the year opens at 10:00 after the opening ceremony, but still closes
  at 15:30.
- Hours are the ones in force since 2016-08-01 (the close was 15:00 before); older
  days get today's hours. Closed days are known for the library's range (2000–2100);
  other years raise ValueError rather than silently looking open.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from types import MappingProxyType

import holidays

from monitor.timefmt import KST

OPEN = time(9, 0)
CLOSE = time(15, 30)
LATE = timedelta(hours=1)

# CSAT days, published by the Ministry of Education years ahead; on each the KRX
# moved the regular session to 10:00–16:30 (KRX notices, e.g. 2023-11-02 for
# 2023-11-16). Not derivable from a rule (it moved to Dec 3 in 2020), so it is a
# table: pass ``late_open_days=CSAT_DAYS | {date(2027, 11, 18)}`` to extend it.
CSAT_DAYS: frozenset[date] = frozenset(
    {
        date(2022, 11, 17),
        date(2023, 11, 16),
        date(2024, 11, 14),
        date(2025, 11, 13),
        date(2026, 11, 19),
    }
)

# The longest run of closed days is about ten (Chuseok next to a weekend and a
# temporary holiday); a search that goes further means the calendar is broken.
_MAX_CLOSED_RUN = 60


@dataclass(frozen=True)
class Session:
    """One day's regular session, [opens_at, closes_at), both in KST."""

    day: date
    opens_at: datetime
    closes_at: datetime


@dataclass(frozen=True)
class MarketStatus:
    """``session`` is the open one, or else the next to open.

    ``reason`` is "open", or why not: "weekend", the holiday's English name from the
    library ("Memorial Day", "End of Year Holiday"), "before the open", "after the close".
    """

    now: datetime
    is_open: bool
    session: Session
    reason: str


@cache
def _closed_days(year: int) -> Mapping[date, str]:
    calendar = holidays.financial_holidays("XKRX")
    if not calendar.start_year <= year <= calendar.end_year:
        raise ValueError(
            f"the KRX calendar is known for {calendar.start_year}–{calendar.end_year}, not {year}"
        )
    # The language is pinned: left unset, the library follows the process locale and
    # a daemon started under ko_KR would say 현충일 where the tests expect Memorial Day.
    names = holidays.financial_holidays("XKRX", years=year, language="en_US")
    return MappingProxyType(dict(names))


def _check_day(day: date) -> None:
    # datetime is a date subclass; passing one would silently drop its time and zone.
    if isinstance(day, datetime):
        raise TypeError(f"expected a date, got the datetime {day!r}; use .astimezone(KST).date()")


def _local(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"naive datetime {now!r}: the KRX clock needs a time zone")
    return now.astimezone(KST)


def closed_reason(day: date) -> str | None:
    """Why the exchange is closed all of ``day`` ("weekend" or the holiday), or None."""
    _check_day(day)
    name = _closed_days(day.year).get(day)  # called first: it refuses unknown years
    if day.weekday() >= 5:
        return "weekend"
    return name


def is_trading_day(day: date) -> bool:
    """Whether the exchange holds a regular session on ``day``."""
    return closed_reason(day) is None


def _first_trading_day_of_year(day: date) -> bool:
    earlier = date(day.year, 1, 1)
    while earlier < day:
        if is_trading_day(earlier):
            return False
        earlier += timedelta(days=1)
    return True


def session_on(day: date, *, late_open_days: Collection[date] = CSAT_DAYS) -> Session | None:
    """The regular session on ``day``, or None when the exchange is closed that day."""
    if not is_trading_day(day):
        return None
    opens_at = datetime.combine(day, OPEN, KST)
    closes_at = datetime.combine(day, CLOSE, KST)
    if day in late_open_days:
        opens_at, closes_at = opens_at + LATE, closes_at + LATE
    elif _first_trading_day_of_year(day):
        opens_at += LATE
    return Session(day=day, opens_at=opens_at, closes_at=closes_at)


def current_session(
    now: datetime, *, late_open_days: Collection[date] = CSAT_DAYS
) -> Session | None:
    """The session open at ``now``, or None."""
    local = _local(now)
    session = session_on(local.date(), late_open_days=late_open_days)
    if session is not None and session.opens_at <= local < session.closes_at:
        return session
    return None


def is_open(now: datetime, *, late_open_days: Collection[date] = CSAT_DAYS) -> bool:
    """Whether the regular session is open at ``now``."""
    return current_session(now, late_open_days=late_open_days) is not None


def _search(start: date, step: int, late_open_days: Collection[date]) -> Session:
    day = start
    for _ in range(_MAX_CLOSED_RUN):
        session = session_on(day, late_open_days=late_open_days)
        if session is not None:
            return session
        day += timedelta(days=step)
    raise RuntimeError(f"no KRX session within {_MAX_CLOSED_RUN} days of {start}")


def next_session(now: datetime, *, late_open_days: Collection[date] = CSAT_DAYS) -> Session:
    """The session open at ``now``, or else the next one to open."""
    local = _local(now)
    today = session_on(local.date(), late_open_days=late_open_days)
    if today is not None and local < today.closes_at:
        return today
    return _search(local.date() + timedelta(days=1), 1, late_open_days)


def previous_session(now: datetime, *, late_open_days: Collection[date] = CSAT_DAYS) -> Session:
    """The last session that has opened by ``now``: the open one, or the last closed one.

    For "is this quote older than the last session" checks: a quote from before
    ``previous_session(now).opens_at`` predates the most recent trading.
    """
    local = _local(now)
    today = session_on(local.date(), late_open_days=late_open_days)
    if today is not None and today.opens_at <= local:
        return today
    return _search(local.date() - timedelta(days=1), -1, late_open_days)


def market_status(now: datetime, *, late_open_days: Collection[date] = CSAT_DAYS) -> MarketStatus:
    """Whether the market is open at ``now``, the relevant session, and why not."""
    local = _local(now)
    upcoming = next_session(now, late_open_days=late_open_days)
    if upcoming.opens_at <= local:
        reason = "open"
    elif (closed := closed_reason(local.date())) is not None:
        reason = closed
    elif upcoming.day == local.date():
        reason = "before the open"
    else:
        reason = "after the close"
    return MarketStatus(now=now, is_open=reason == "open", session=upcoming, reason=reason)


def next_quote_poll(
    now: datetime,
    *,
    interval: float,
    after_close: float,
    late_open_days: Collection[date] = CSAT_DAYS,
) -> datetime:
    """When to poll quotes next (seconds for ``interval`` and ``after_close``).

    While open, ``now + interval``, unless that would reach the close: then the
    session's last poll, ``closes_at + after_close``, which picks up the closing
    price. Between the close and that poll, that poll; otherwise the next session's
    opening. The result is in ``now``'s time zone.
    """
    if interval <= 0 or after_close < 0:
        raise ValueError(f"need interval > 0 and after_close >= 0, got {interval}, {after_close}")
    local = _local(now)
    step = timedelta(seconds=interval)
    last_poll = timedelta(seconds=after_close)
    session = current_session(now, late_open_days=late_open_days)
    if session is not None:
        when = session.closes_at + last_poll
        # Added in UTC: wall-clock arithmetic in a zone with DST would be off by the shift.
        if (soon := now.astimezone(UTC) + step) < session.closes_at:
            when = soon
    else:
        last = previous_session(now, late_open_days=late_open_days)
        if local < last.closes_at + last_poll:
            when = last.closes_at + last_poll
        else:
            when = next_session(now, late_open_days=late_open_days).opens_at
    return when.astimezone(now.tzinfo)


def last_closed_session(now: datetime, *, late_open_days: Collection[date] = CSAT_DAYS) -> Session:
    """The last session that has closed by ``now``: a daily bar of a later one (the
    session trading now) is not that day's bar yet."""
    local = _local(now)
    session = previous_session(now, late_open_days=late_open_days)
    if session.closes_at <= local:
        return session
    return _search(session.day - timedelta(days=1), -1, late_open_days)


def trading_days_between(start: date, end: date) -> list[date]:
    """The trading days from ``start`` to ``end``, both included, oldest first."""
    _check_day(start)
    _check_day(end)
    days = []
    day = start
    while day <= end:
        if is_trading_day(day):
            days.append(day)
        day += timedelta(days=1)
    return days


def trading_days_before(day: date, n: int) -> list[date]:
    """The ``n`` trading days strictly before ``day``, oldest first."""
    _check_day(day)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    days: list[date] = []
    earlier = day
    while len(days) < n:
        earlier -= timedelta(days=1)
        if is_trading_day(earlier):
            days.append(earlier)
    return days[::-1]
