"""RSS/Atom sources: fetch with :mod:`adapters.http`, parse with :mod:`adapters.feed`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

import aiohttp

from adapters.errors import ParseError
from adapters.feed import ParsedFeed, parse_feed
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

# Parses a body elsewhere (a worker process): body, Content-Type, fetched_at and the
# seconds its parse may take, past which it raises TimeoutError.
BodyParser = Callable[[bytes, str | None, datetime, float], Awaitable[ParsedFeed]]


async def fetch_feed(
    session: aiohttp.ClientSession,
    url: str,
    *,
    validators: Validators,
    limits: HttpLimits,
    fetched_at: datetime,
    parse_timeout: float = PARSE_TIMEOUT,
    parse: BodyParser | None = None,
) -> FeedResult:
    """Fetch and parse one feed; raises the :mod:`adapters.errors` family on failure
    (``ParseError("parse_timeout")`` when parsing takes over ``parse_timeout`` s).

    ``parse`` parses the body instead of :func:`adapters.feed.parse_feed` in a thread:
    it raises what parse_feed raises, and TimeoutError once the parse itself (not a
    wait for a worker) took over ``parse_timeout``."""
    response = await fetch(session, url, validators=validators, limits=limits, accept=FEED_ACCEPT)
    if response.status == 304:
        return FeedResult(http_status=304, validators=response.validators, not_modified=True)
    parsing = (
        parse(response.body, response.content_type, fetched_at, parse_timeout)
        if parse is not None
        else asyncio.wait_for(
            asyncio.to_thread(
                parse_feed, response.body, content_type=response.content_type, fetched_at=fetched_at
            ),
            timeout=parse_timeout,
        )
    )
    try:
        parsed = await parsing
    except TimeoutError:
        # A thread cannot be stopped; it finishes on its own and its result is dropped.
        raise ParseError("parse_timeout", f"parsing took over {parse_timeout:g} s") from None
    return FeedResult(
        http_status=response.status,
        validators=response.validators,
        items=parsed.items,
        warnings=parsed.warnings,
    )
