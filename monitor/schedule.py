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
    """The un-jittered delay after the ``error_count``-th consecutive failure (1-based)."""
    exponent = min(max(error_count - 1, 0), 32)  # 2**32 intervals is past any cap
    return min(interval * 2.0**exponent, max(backoff_max, interval))


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
    delay = jittered(
        backoff_seconds(interval, error_count, backoff_max=backoff_max), jitter, uniform
    )
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry_after_max))
    return now + timedelta(seconds=delay)


def after_permanent_failure(now: datetime, *, permanent_retry: float) -> datetime:
    return now + timedelta(seconds=permanent_retry)
