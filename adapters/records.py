"""Plain records that adapters hand to the core."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


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
    final_url: str | None = None
