"""What the quote adapter tests share: the project's fixtures, tickers, Seoul times."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from adapters.http import HttpLimits
from adapters.records import Ticker
from monitor.timefmt import KST

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "quotes"
NAVER = Ticker("035420")
KAKAO = Ticker("035720")
KOSPI = Ticker("KOSPI", kind="index")
LIMITS = HttpLimits(total_timeout=5)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def kst(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, us: int = 0) -> datetime:
    """A Seoul wall-clock time, as the UTC instant the adapters return."""
    return datetime(y, mo, d, h, mi, s, us, tzinfo=KST).astimezone(UTC)
