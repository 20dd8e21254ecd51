"""RSS/Atom sources: fetch with :mod:`adapters.http`, parse with :mod:`adapters.feed`."""

from __future__ import annotations

from datetime import datetime

import aiohttp

from adapters.feed import parse_feed
from adapters.http import HttpLimits, fetch
from adapters.records import FeedResult, Validators

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.1"
)


async def fetch_feed(
    session: aiohttp.ClientSession,
    url: str,
    *,
    validators: Validators,
    limits: HttpLimits,
    fetched_at: datetime,
) -> FeedResult:
    """Fetch and parse one feed; raises the :mod:`adapters.errors` family on failure."""
    response = await fetch(session, url, validators=validators, limits=limits, accept=FEED_ACCEPT)
    if response.status == 304:
        return FeedResult(http_status=304, validators=response.validators, not_modified=True)
    parsed = parse_feed(response.body, content_type=response.content_type, fetched_at=fetched_at)
    return FeedResult(
        http_status=response.status,
        validators=response.validators,
        items=parsed.items,
        warnings=parsed.warnings,
    )
