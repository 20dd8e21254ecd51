from datetime import UTC, datetime, timedelta

import pytest

from monitor import schedule

NOW = datetime(2025, 6, 18, 1, 0, tzinfo=UTC)


def low(a: float, b: float) -> float:
    return a


def high(a: float, b: float) -> float:
    return b


@pytest.mark.parametrize(
    ("interval", "errors", "cap", "expected"),
    [
        (60, 1, 3600, 60),
        (60, 2, 3600, 120),
        (60, 3, 3600, 240),
        (60, 7, 3600, 3600),  # 60 * 64 capped
        (60, 500, 3600, 3600),  # no overflow for long outages
        (7200, 3, 3600, 7200),  # the cap never goes below the interval itself
        (60, 0, 3600, 60),
    ],
)
def test_backoff_doubles_and_caps(
    interval: float, errors: int, cap: float, expected: float
) -> None:
    assert schedule.backoff_seconds(interval, errors, backoff_max=cap) == expected


@pytest.mark.parametrize(("uniform", "factor"), [(low, 0.9), (high, 1.1)])
def test_success_is_jittered_within_bounds(uniform: schedule.Uniform, factor: float) -> None:
    at = schedule.after_success(NOW, 600, jitter=0.1, uniform=uniform)
    assert at == NOW + timedelta(seconds=600 * factor)


@pytest.mark.parametrize(
    ("retry_after", "expected_seconds"),
    [
        (None, 240),  # third error: 60 * 4
        (30, 240),  # a shorter Retry-After does not make us come back sooner
        (1800, 1800),  # a longer one is honoured
        (10**9, 86400),  # but capped, so a hostile header cannot park a source
    ],
)
def test_transient_failure_honours_retry_after(
    retry_after: float | None, expected_seconds: float
) -> None:
    at = schedule.after_transient_failure(
        NOW,
        60,
        3,
        retry_after=retry_after,
        backoff_max=3600,
        retry_after_max=86400,
        jitter=0,
    )
    assert at == NOW + timedelta(seconds=expected_seconds)


def test_permanent_failure_waits_the_retry_period() -> None:
    assert schedule.after_permanent_failure(NOW, permanent_retry=86400) == NOW + timedelta(days=1)


@pytest.mark.parametrize(
    ("spread", "draw", "retry_after", "expected"),
    [
        ((1.0, 1.0), "never", None, 240),  # no spread: no draw at all
        (schedule.EQUAL_JITTER, "low", None, 120),
        (schedule.EQUAL_JITTER, "high", None, 240),
        ((0.9, 1.1), "low", None, 216),
        ((0.9, 1.1), "high", 1800, 1800),
        ((0.9, 1.1), "high", 10**9, 86400),
    ],
)
def test_retry_seconds(
    spread: tuple[float, float], draw: str, retry_after: float | None, expected: float
) -> None:
    def uniform(a: float, b: float) -> float:
        assert draw != "never"
        return a if draw == "low" else b

    got = schedule.retry_seconds(
        60,
        3,
        backoff_max=3600,
        spread=spread,
        retry_after=retry_after,
        retry_after_max=86400,
        uniform=uniform,
    )
    assert got == pytest.approx(expected)
