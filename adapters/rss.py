"""RSS/Atom sources: fetch with :mod:`adapters.http`, parse with :mod:`adapters.feed`."""

from __future__ import annotations

import asyncio
from datetime import datetime

import aiohttp

from adapters.errors import ParseError
from adapters.feed import parse_feed
from adapters.http import HttpLimits, fetch
from adapters.records import FeedResult, Validators

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.1"
)
# Parsing is CPU work: it runs in a worker thread so the event loop (health checks,
# other polls) keeps its turn, and a body that takes longer than this to parse is
# a parse error rather than a stuck poll.
PARSE_TIMEOUT = 10.0


async def fetch_feed(
    session: aiohttp.ClientSession,
    url: str,
    *,
    validators: Validators,
    limits: HttpLimits,
    fetched_at: datetime,
    parse_timeout: float = PARSE_TIMEOUT,
) -> FeedResult:
    """Fetch and parse one feed; raises the :mod:`adapters.errors` family on failure
    (``ParseError("parse_timeout")`` when parsing takes over ``parse_timeout`` s)."""
    response = await fetch(session, url, validators=validators, limits=limits, accept=FEED_ACCEPT)
    if response.status == 304:
        return FeedResult(http_status=304, validators=response.validators, not_modified=True)
    parsing = asyncio.to_thread(
        parse_feed, response.body, content_type=response.content_type, fetched_at=fetched_at
    )
    try:
        parsed = await asyncio.wait_for(parsing, timeout=parse_timeout)
    except TimeoutError:
        # The thread cannot be stopped; it finishes on its own and its result is dropped.
        raise ParseError("parse_timeout", f"parsing took over {parse_timeout:g} s") from None
    return FeedResult(
        http_status=response.status,
        validators=response.validators,
        items=parsed.items,
        warnings=parsed.warnings,
    )
