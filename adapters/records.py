"""Plain records that adapters hand to the core."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

# Seoul time, the zone of every Korean source's dates that carry no offset. KRX and
# Korea have kept no daylight saving time since 1988: UTC+9 all year.
KST = timezone(timedelta(hours=9), "KST")


@dataclass(frozen=True, slots=True)
class RawItem:
    """One news entry as a feed gave it, text already decoded and made plain.

    ``published_at`` is timezone-aware UTC. When the feed gave no usable date it is
    the fetch time and ``date_estimated`` is true.
    """

    title: str
    url: str | None
    guid: str | None
    summary: str
    published_at: datetime
    date_estimated: bool = False
    author: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class Validators:
    """Conditional-GET validators kept by the caller between polls."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class FeedResult:
    """The outcome of one successful feed fetch.

    ``not_modified`` is true for a 304 answer; ``items`` is then empty.
    ``warnings`` lists recoverable oddities (``date_missing``, ``malformed``,
    ``dtd_removed`` …) so the caller can report them.
    """

    http_status: int
    validators: Validators
    items: list[RawItem] = field(default_factory=list)
    not_modified: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Ticker:
    """What a quote adapter is asked about.

    ``code`` is the KRX code ("035420") or an index name ("KOSPI"); ``market`` is the
    board a stock trades on (KOSPI or KOSDAQ), which some sources need in the symbol.
    """

    code: str
    kind: str = "stock"  # "stock" or "index"
    market: str = "KOSPI"


@dataclass(frozen=True, slots=True)
class Quote:
    """One snapshot of a ticker as a source reported it.

    Prices are in the instrument's own unit: won for stocks, index points for an index
    (never the ×100 integers some feeds send). ``change`` and ``change_pct`` are signed.
    ``volume`` is in shares (an index's thousands already multiplied out). ``as_of`` is
    the exchange time of the quote, timezone-aware UTC.
    """

    ticker: str
    as_of: datetime
    price: float
    source: str
    prev_close: float | None = None
    change: float | None = None
    change_pct: float | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    volume: int | None = None
    currency: str = "KRW"
    market_open: bool | None = None


@dataclass(frozen=True, slots=True)
class DailyBar:
    """One trading day of a ticker (OHLCV), ``day`` being the KST trading date."""

    ticker: str
    day: date
    open: float | None
    high: float | None
    low: float | None
    close: float
    volume: int | None
    source: str
