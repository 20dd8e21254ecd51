from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from monitor.market import (
    CSAT_DAYS,
    KST,
    MarketStatus,
    Session,
    closed_reason,
    current_session,
    is_open,
    is_trading_day,
    last_closed_session,
    market_status,
    next_quote_poll,
    next_session,
    previous_session,
    session_on,
    trading_days_before,
    trading_days_between,
)


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    """A Seoul wall-clock time."""
    return datetime(y, mo, d, h, mi, s, tzinfo=KST)


def regular(day: date) -> Session:
    y, m, d = day.year, day.month, day.day
    return Session(day, at(y, m, d, 9), at(y, m, d, 15, 30))


def late(day: date, close_hour: int = 16) -> Session:
    """A session opening at 10:00; CSAT days close at 16:30, the year's first day at 15:30."""
    y, m, d = day.year, day.month, day.day
    return Session(day, at(y, m, d, 10), at(y, m, d, close_hour, 30))


# The session is the half-open interval [opens_at, closes_at): 15:30:00 is closed.
STATUS = [
    # now, is_open, reason, session (the open one or the next)
    (at(2025, 6, 18, 10), True, "open", regular(date(2025, 6, 18))),
    (at(2025, 6, 18, 9), True, "open", regular(date(2025, 6, 18))),
    (at(2025, 6, 18, 15, 29, 59), True, "open", regular(date(2025, 6, 18))),
    (at(2025, 6, 18, 8, 59), False, "before the open", regular(date(2025, 6, 18))),
    (at(2025, 6, 18, 15, 30), False, "after the close", regular(date(2025, 6, 19))),
    (at(2025, 6, 18, 15, 31), False, "after the close", regular(date(2025, 6, 19))),
    (at(2025, 6, 18, 23, 59), False, "after the close", regular(date(2025, 6, 19))),
    (datetime(2025, 6, 18, 1, 0, tzinfo=UTC), True, "open", regular(date(2025, 6, 18))),
    (at(2025, 6, 6, 12), False, "Memorial Day", regular(date(2025, 6, 9))),
    (at(2025, 6, 3, 12), False, "Presidential Election Day", regular(date(2025, 6, 4))),
    (at(2025, 12, 31, 12), False, "End of Year Holiday", late(date(2026, 1, 2), 15)),
    (at(2025, 1, 1, 12), False, "New Year's Day", late(date(2025, 1, 2), 15)),
    (at(2026, 2, 16, 12), False, "The day preceding Korean New Year", regular(date(2026, 2, 19))),
    (at(2026, 2, 17, 12), False, "Korean New Year", regular(date(2026, 2, 19))),
    (at(2026, 2, 18, 12), False, "The second day of Korean New Year", regular(date(2026, 2, 19))),
    (at(2025, 6, 21, 12), False, "weekend", regular(date(2025, 6, 23))),  # Saturday
    (at(2025, 6, 22, 12), False, "weekend", regular(date(2025, 6, 23))),  # Sunday
    # CSAT day: 10:00–16:30.
    (at(2025, 11, 13, 9, 30), False, "before the open", late(date(2025, 11, 13))),
    (at(2025, 11, 13, 10, 30), True, "open", late(date(2025, 11, 13))),
    (at(2025, 11, 13, 16), True, "open", late(date(2025, 11, 13))),
    (at(2025, 11, 13, 16, 30), False, "after the close", regular(date(2025, 11, 14))),
    # First trading day of the year: 10:00–15:30.
    (at(2025, 1, 2, 9, 30), False, "before the open", late(date(2025, 1, 2), 15)),
    (at(2025, 1, 2, 10), True, "open", late(date(2025, 1, 2), 15)),
    (at(2025, 1, 2, 15, 30), False, "after the close", regular(date(2025, 1, 3))),
    # Year-end closing day when Dec 31 is a weekend: the Friday before.
    (at(2022, 12, 30, 12), False, "End of Year Holiday", late(date(2023, 1, 2), 15)),
    (at(2023, 12, 29, 12), False, "End of Year Holiday", late(date(2024, 1, 2), 15)),
    (at(2028, 12, 29, 12), False, "End of Year Holiday", late(date(2029, 1, 2), 15)),
    # Chuseok 2025 and National Foundation Day: closed 10-03 to 10-09.
    (at(2025, 10, 2, 16), False, "after the close", regular(date(2025, 10, 10))),
    (at(2025, 10, 3, 12), False, "National Foundation Day", regular(date(2025, 10, 10))),
    (at(2025, 10, 6, 12), False, "Chuseok", regular(date(2025, 10, 10))),
]


@pytest.mark.parametrize(("now", "open_", "reason", "session"), STATUS)
def test_market_status(now: datetime, open_: bool, reason: str, session: Session) -> None:
    assert market_status(now) == MarketStatus(now, open_, session, reason)
    assert is_open(now) is open_
    assert current_session(now) == (session if open_ else None)
    assert next_session(now) == session


@pytest.mark.parametrize(
    ("day", "reason"),
    [
        (date(2025, 6, 18), None),
        (date(2025, 6, 6), "Memorial Day"),
        (date(2025, 6, 3), "Presidential Election Day"),
        (date(2025, 12, 31), "End of Year Holiday"),
        (date(2025, 1, 1), "New Year's Day"),
        (date(2025, 5, 1), "Workers' Day"),  # an exchange holiday, not a public one
        (date(2025, 10, 10), None),  # the day after the long Chuseok weekend traded
        (date(2022, 12, 30), "End of Year Holiday"),
        (date(2028, 12, 29), "End of Year Holiday"),
        (date(2028, 12, 31), "weekend"),
        (date(2025, 6, 21), "weekend"),
        (date(2025, 6, 22), "weekend"),
    ],
)
def test_closed_reason(day: date, reason: str | None) -> None:
    assert closed_reason(day) == reason
    assert is_trading_day(day) is (reason is None)
    assert (session_on(day) is None) is (reason is not None)


def test_the_last_weekday_of_every_year_is_closed() -> None:
    # The exchange's year-end closing day comes from the library; this guards upgrades.
    for year in range(2000, 2101):
        last = date(year, 12, 31)
        while last.weekday() >= 5:
            last -= timedelta(days=1)
        assert closed_reason(last) == "End of Year Holiday", last


@pytest.mark.parametrize(
    ("day", "session"),
    [
        (date(2025, 6, 18), regular(date(2025, 6, 18))),
        (date(2023, 11, 16), late(date(2023, 11, 16))),
        (date(2024, 11, 14), late(date(2024, 11, 14))),
        (date(2026, 11, 19), late(date(2026, 11, 19))),
        (date(2023, 1, 2), late(date(2023, 1, 2), 15)),
        (date(2026, 1, 2), late(date(2026, 1, 2), 15)),
        (date(2026, 1, 5), regular(date(2026, 1, 5))),
        (date(2022, 1, 3), late(date(2022, 1, 3), 15)),  # Jan 1 was a Saturday
    ],
)
def test_session_on(day: date, session: Session) -> None:
    assert session_on(day) == session


def test_late_open_days_can_be_extended() -> None:
    day = date(2027, 11, 18)
    assert session_on(day) == regular(day)
    assert session_on(day, late_open_days=CSAT_DAYS | {day}) == late(day)
    assert is_open(at(2027, 11, 18, 9, 30))
    assert not is_open(at(2027, 11, 18, 9, 30), late_open_days=CSAT_DAYS | {day})
    assert session_on(date(2025, 11, 13), late_open_days=()) == regular(date(2025, 11, 13))


@pytest.mark.parametrize(
    ("now", "session"),
    [
        (at(2025, 6, 18, 10), regular(date(2025, 6, 18))),  # open: this one
        (at(2025, 6, 18, 9), regular(date(2025, 6, 18))),
        (at(2025, 6, 18, 8, 59), regular(date(2025, 6, 17))),
        (at(2025, 6, 18, 16), regular(date(2025, 6, 18))),
        (at(2025, 6, 23, 8, 59), regular(date(2025, 6, 20))),  # Monday morning: Friday
        (at(2025, 10, 10, 8), regular(date(2025, 10, 2))),  # across Chuseok
        (at(2026, 1, 2, 9, 30), regular(date(2025, 12, 30))),  # across the year end
        (at(2025, 11, 13, 9, 30), regular(date(2025, 11, 12))),  # CSAT, not yet open
    ],
)
def test_previous_session(now: datetime, session: Session) -> None:
    assert previous_session(now) == session


@pytest.mark.parametrize(
    ("now", "day"),
    [
        (at(2025, 6, 18, 10, 31), date(2025, 6, 17)),  # trading: not this one yet
        (at(2025, 6, 18, 15, 30), date(2025, 6, 18)),  # at the close: this one
        (at(2025, 6, 18, 8), date(2025, 6, 17)),
        (at(2025, 6, 23, 10), date(2025, 6, 20)),  # Monday morning: Friday
        (at(2025, 10, 10, 8), date(2025, 10, 2)),  # across Chuseok
        (at(2025, 11, 13, 16, 0), date(2025, 11, 12)),  # CSAT: closes at 16:30
    ],
)
def test_last_closed_session(now: datetime, day: date) -> None:
    assert last_closed_session(now).day == day


POLL = [
    # now, next poll; interval 60 s, after_close 120 s
    (at(2025, 6, 18, 10), at(2025, 6, 18, 10, 1)),  # mid-session
    (at(2025, 6, 18, 7), at(2025, 6, 18, 9)),  # before the open
    (at(2025, 6, 18, 15, 28, 59), at(2025, 6, 18, 15, 29, 59)),
    (at(2025, 6, 18, 15, 29), at(2025, 6, 18, 15, 32)),  # would land on the close
    (at(2025, 6, 18, 15, 29, 30), at(2025, 6, 18, 15, 32)),  # near the close
    (at(2025, 6, 18, 15, 30), at(2025, 6, 18, 15, 32)),  # just after the close
    (at(2025, 6, 18, 15, 31), at(2025, 6, 18, 15, 32)),
    (at(2025, 6, 18, 15, 32), at(2025, 6, 19, 9)),  # the after-close poll is done
    (at(2025, 6, 18, 20), at(2025, 6, 19, 9)),
    (at(2025, 6, 20, 18), at(2025, 6, 23, 9)),  # Friday evening: Monday
    (at(2025, 6, 21, 12), at(2025, 6, 23, 9)),  # Saturday
    (at(2025, 6, 5, 18), at(2025, 6, 9, 9)),  # Thursday before Memorial Day (Fri)
    (at(2025, 10, 2, 15, 31), at(2025, 10, 2, 15, 32)),  # before Chuseok
    (at(2025, 10, 2, 15, 40), at(2025, 10, 10, 9)),
    (at(2025, 12, 30, 16), at(2026, 1, 2, 10)),  # year end; the new year opens late
    (at(2025, 11, 13, 9, 30), at(2025, 11, 13, 10)),  # CSAT
    (at(2025, 11, 13, 16, 29, 30), at(2025, 11, 13, 16, 32)),
    (at(2025, 11, 13, 16, 32), at(2025, 11, 14, 9)),
]


@pytest.mark.parametrize(("now", "expected"), POLL)
def test_next_quote_poll(now: datetime, expected: datetime) -> None:
    assert next_quote_poll(now, interval=60, after_close=120) == expected


def test_next_quote_poll_keeps_the_callers_zone() -> None:
    now = datetime(2025, 6, 18, 1, 0, tzinfo=UTC)  # 10:00 KST
    polled = next_quote_poll(now, interval=60, after_close=120)
    assert polled == datetime(2025, 6, 18, 1, 1, tzinfo=UTC)
    assert polled.tzinfo is UTC
    evening = next_quote_poll(datetime(2025, 6, 18, 12, tzinfo=UTC), interval=60, after_close=120)
    assert evening == datetime(2025, 6, 19, 0, 0, tzinfo=UTC)
    assert evening.tzinfo is UTC


def test_next_quote_poll_without_an_after_close_poll() -> None:
    def poll(now: datetime) -> datetime:
        return next_quote_poll(now, interval=60, after_close=0)

    assert poll(at(2025, 6, 18, 15, 29, 30)) == at(2025, 6, 18, 15, 30)
    assert poll(at(2025, 6, 18, 15, 30)) == at(2025, 6, 19, 9)


@pytest.mark.parametrize(("interval", "after_close"), [(0, 120), (-1, 120), (60, -1)])
def test_next_quote_poll_refuses_nonsense(interval: float, after_close: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        next_quote_poll(at(2025, 6, 18, 10), interval=interval, after_close=after_close)


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        (
            date(2025, 9, 30),
            date(2025, 10, 14),
            [
                *(date(2025, 9, 30), date(2025, 10, 1), date(2025, 10, 2)),
                *(date(2025, 10, 10), date(2025, 10, 13), date(2025, 10, 14)),
            ],
        ),
        (date(2025, 6, 18), date(2025, 6, 18), [date(2025, 6, 18)]),
        (date(2025, 6, 21), date(2025, 6, 22), []),
        (date(2025, 6, 19), date(2025, 6, 18), []),
    ],
)
def test_trading_days_between(start: date, end: date, days: list[date]) -> None:
    assert trading_days_between(start, end) == days


@pytest.mark.parametrize(
    ("day", "n", "days"),
    [
        (date(2025, 10, 10), 3, [date(2025, 9, 30), date(2025, 10, 1), date(2025, 10, 2)]),
        (date(2025, 6, 9), 3, [date(2025, 6, 2), date(2025, 6, 4), date(2025, 6, 5)]),
        (date(2025, 6, 18), 1, [date(2025, 6, 17)]),
        (date(2026, 1, 2), 2, [date(2025, 12, 29), date(2025, 12, 30)]),
        (date(2025, 6, 18), 0, []),
    ],
)
def test_trading_days_before(day: date, n: int, days: list[date]) -> None:
    assert trading_days_before(day, n) == days


def test_trading_days_before_refuses_negative_n() -> None:
    with pytest.raises(ValueError, match="n must be"):
        trading_days_before(date(2025, 6, 18), -1)


NAIVE = datetime(2025, 6, 18, 10, 0)


@pytest.mark.parametrize(
    "call",
    [
        is_open,
        current_session,
        next_session,
        previous_session,
        market_status,
        lambda now: next_quote_poll(now, interval=60, after_close=120),
    ],
)
def test_naive_datetimes_are_refused(call: Callable[[datetime], Any]) -> None:
    with pytest.raises(ValueError, match="naive"):
        call(NAIVE)


def test_a_datetime_is_not_a_day() -> None:
    with pytest.raises(TypeError, match="expected a date"):
        session_on(at(2025, 6, 18, 10))


@pytest.mark.parametrize("day", [date(1999, 12, 30), date(2101, 1, 3)])
def test_years_the_calendar_does_not_know_are_refused(day: date) -> None:
    with pytest.raises(ValueError, match="KRX calendar is known for 2000"):
        session_on(day)
