"""When a source is checked next: pure functions of its state and the clock.

- after a success: the interval, give or take ``jitter`` (a fraction), so that many
  sources with one interval drift apart instead of polling in bursts;
- after a transient failure: the interval doubled per consecutive error, capped at
  ``backoff_max``, jittered; never sooner than the server's Retry-After (which is
  itself capped at ``permanent_retry`` so a hostile header cannot park a source);
- after a permanent failure (gone, refused): ``permanent_retry`` (a day by default),
  so a feed that comes back is noticed without anybody restarting the daemon.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

Uniform = Callable[[float, float], float]


def jittered(seconds: float, jitter: float, uniform: Uniform = random.uniform) -> float:
    """``seconds`` scaled by a random factor in [1 - jitter, 1 + jitter]."""
    return seconds * uniform(1.0 - jitter, 1.0 + jitter) if jitter else seconds


def after_success(
    now: datetime, interval: float, *, jitter: float, uniform: Uniform = random.uniform
) -> datetime:
    return now + timedelta(seconds=jittered(interval, jitter, uniform))


def backoff_seconds(interval: float, error_count: int, *, backoff_max: float) -> float:
    """The un-jittered delay after the ``error_count``-th consecutive failure (1-based):
    ``interval`` doubled per failure, capped at ``backoff_max`` (never below ``interval``)."""
    exponent = min(max(error_count - 1, 0), 32)  # 2**32 intervals is past any cap
    return min(interval * 2.0**exponent, max(backoff_max, interval))


# The random factor of a retry delay: "equal jitter", half fixed and half random, so
# that retries of many rows spread out yet never come back almost at once.
EQUAL_JITTER = (0.5, 1.0)


def retry_seconds(
    interval: float,
    error_count: int,
    *,
    backoff_max: float,
    spread: tuple[float, float],
    retry_after: float | None,
    retry_after_max: float,
    uniform: Uniform = random.uniform,
) -> float:
    """Seconds to wait after the ``error_count``-th consecutive failure.

    :func:`backoff_seconds` scaled by a random factor drawn from ``spread`` (low,
    high), and never sooner than the server's ``retry_after``, which is itself capped
    at ``retry_after_max`` so that a hostile header cannot park anything.
    """
    delay = backoff_seconds(interval, error_count, backoff_max=backoff_max)
    low, high = spread
    if (low, high) != (1.0, 1.0):
        delay *= uniform(low, high)
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry_after_max))
    return delay


def after_transient_failure(
    now: datetime,
    interval: float,
    error_count: int,
    *,
    retry_after: float | None,
    backoff_max: float,
    retry_after_max: float,
    jitter: float,
    uniform: Uniform = random.uniform,
) -> datetime:
    delay = retry_seconds(
        interval,
        error_count,
        backoff_max=backoff_max,
        spread=(1.0 - jitter, 1.0 + jitter),
        retry_after=retry_after,
        retry_after_max=retry_after_max,
        uniform=uniform,
    )
    return now + timedelta(seconds=delay)


def after_permanent_failure(now: datetime, *, permanent_retry: float) -> datetime:
    return now + timedelta(seconds=permanent_retry)
