"""Tests of adapters.http.fetch against a real local server (tests.servers)."""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
import pytest_asyncio

from adapters.errors import (
    AuthError,
    FetchError,
    ParseError,
    PermanentError,
    TransientError,
)
from adapters.http import (
    USER_AGENT,
    HttpLimits,
    fetch,
    make_client_session,
    parse_retry_after,
)
from adapters.records import Validators
from tests.servers import FakeSource, Reply

pytest_plugins = ["tests.servers"]

ETAG = '"v1"'
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
FEED = "<rss><channel><title>뉴스</title></channel></rss>".encode()


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_client_session() as client:
        yield client


def host_of(server: FakeSource) -> str:
    return f"127.0.0.1:{server.port}"


def assert_clean_message(err: FetchError, server: FakeSource) -> None:
    message = str(err)
    assert "\n" not in message
    assert host_of(server) in message
    assert "secret" not in message


# -- successful answers -------------------------------------------------------


async def test_ok_returns_body_type_validators_and_url(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve(
        "/rss",
        FEED,
        headers={"Content-Type": "application/rss+xml; charset=utf-8"},
        etag=ETAG,
        last_modified=LAST_MODIFIED,
    )

    resp = await fetch(session, http_server.url("/rss"))

    assert resp.status == 200
    assert resp.body == FEED
    assert resp.content_type == "application/rss+xml; charset=utf-8"
    assert resp.validators == Validators(etag=ETAG, last_modified=LAST_MODIFIED)
    assert resp.url == http_server.url("/rss")
    [request] = http_server.requests
    assert request.method == "GET"
    assert "If-None-Match" not in request.headers
    assert "If-Modified-Since" not in request.headers
    assert "application/rss+xml" in request.headers["Accept"]
    assert "gzip" in request.headers["Accept-Encoding"]


async def test_user_agent_is_sent(http_server: FakeSource, session: aiohttp.ClientSession) -> None:
    http_server.serve("/rss", FEED)

    await fetch(session, http_server.url("/rss"))

    assert USER_AGENT.startswith("kmon/")
    assert "aiohttp/" in USER_AGENT
    assert http_server.requests[0].headers["User-Agent"] == USER_AGENT


async def test_custom_accept_is_sent(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve("/quote", b"{}")

    await fetch(session, http_server.url("/quote"), accept="application/json")

    assert http_server.requests[0].headers["Accept"] == "application/json"


async def test_not_modified_sends_validators_and_keeps_them(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve("/rss", FEED, etag=ETAG, last_modified=LAST_MODIFIED)
    old = Validators(etag=ETAG, last_modified=LAST_MODIFIED)

    resp = await fetch(session, http_server.url("/rss"), validators=old)

    assert resp.status == 304
    assert resp.body == b""
    # The 304 repeats the ETag but not Last-Modified: the old one must survive.
    assert resp.validators == old
    [request] = http_server.requests
    assert request.headers["If-None-Match"] == ETAG
    assert request.headers["If-Modified-Since"] == LAST_MODIFIED


async def test_not_modified_by_date_alone(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve("/rss", FEED, last_modified=LAST_MODIFIED)
    old = Validators(last_modified=LAST_MODIFIED)

    resp = await fetch(session, http_server.url("/rss"), validators=old)

    assert resp.status == 304
    assert resp.validators == old
    assert "If-None-Match" not in http_server.requests[0].headers


async def test_not_modified_with_new_etag_replaces_only_the_etag(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.fail("/rss", 304, headers={"ETag": '"v2"'})

    resp = await fetch(
        session,
        http_server.url("/rss"),
        validators=Validators(etag=ETAG, last_modified=LAST_MODIFIED),
    )

    assert resp.validators == Validators(etag='"v2"', last_modified=LAST_MODIFIED)


async def test_changed_resource_answers_200_with_new_validators(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve("/rss", FEED, etag='"v2"')

    resp = await fetch(
        session,
        http_server.url("/rss"),
        validators=Validators(etag=ETAG, last_modified=LAST_MODIFIED),
    )

    assert resp.status == 200
    assert resp.body == FEED
    # A full answer replaces the validators; it does not inherit the old date.
    assert resp.validators == Validators(etag='"v2"', last_modified=None)


async def test_gzip_body_is_decompressed(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    body = FEED * 1000
    http_server.gzip("/rss", body)

    resp = await fetch(session, http_server.url("/rss"))

    assert resp.body == body


async def test_fail_then_recover(http_server: FakeSource, session: aiohttp.ClientSession) -> None:
    http_server.sequence("/rss", [Reply(status=500), Reply(FEED)])
    url = http_server.url("/rss")

    with pytest.raises(TransientError):
        await fetch(session, url)
    resp = await fetch(session, url)

    assert resp.body == FEED
    assert len(http_server.requests_to("/rss")) == 2


# -- redirects ----------------------------------------------------------------


async def test_redirect_is_followed_and_final_url_reported(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.redirect("/old", "/new", status=301)
    http_server.serve("/new", FEED)

    resp = await fetch(session, http_server.url("/old"))

    assert resp.body == FEED
    assert resp.url == http_server.url("/new")


@pytest.mark.parametrize(("hops", "allowed"), [(2, 2), (3, 2), (1, 0)])
async def test_redirect_cap_counts_redirects_followed(
    http_server: FakeSource, session: aiohttp.ClientSession, hops: int, allowed: int
) -> None:
    for hop in range(hops):
        http_server.redirect(f"/r{hop}", f"/r{hop + 1}")
    http_server.serve(f"/r{hops}", FEED)
    limits = HttpLimits(max_redirects=allowed)

    if hops <= allowed:
        resp = await fetch(session, http_server.url("/r0"), limits=limits)
        assert resp.url == http_server.url(f"/r{hops}")
    else:
        with pytest.raises(PermanentError) as caught:
            await fetch(session, http_server.url("/r0"), limits=limits)
        assert caught.value.key == "redirects"


async def test_redirect_loop(http_server: FakeSource, session: aiohttp.ClientSession) -> None:
    http_server.redirect("/a", "/b")
    http_server.redirect("/b", "/a")

    with pytest.raises(PermanentError) as caught:
        await fetch(session, http_server.url("/a?token=secret"))

    assert caught.value.key == "redirects"
    assert_clean_message(caught.value, http_server)
    # The default cap: five redirects followed, the sixth answer refused.
    assert len(http_server.requests) == HttpLimits().max_redirects + 1


# -- HTTP status errors -------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "key"),
    [
        (500, TransientError, "http_500"),
        (502, TransientError, "http_502"),
        (504, TransientError, "http_504"),
        (408, TransientError, "http_408"),
        (503, TransientError, "http_503"),
        (429, TransientError, "http_429"),
        (404, PermanentError, "http_404"),
        (410, PermanentError, "http_410"),
        (400, PermanentError, "http_400"),
        (451, PermanentError, "http_451"),
        (401, AuthError, "http_401"),
        (403, AuthError, "http_403"),
    ],
)
async def test_status_is_mapped(
    http_server: FakeSource,
    session: aiohttp.ClientSession,
    status: int,
    error: type[FetchError],
    key: str,
) -> None:
    http_server.fail("/rss", status, body=b"nope")

    with pytest.raises(FetchError) as caught:
        await fetch(session, http_server.url("/rss?token=secret"))

    assert type(caught.value) is error
    assert caught.value.key == key
    assert caught.value.http_status == status
    assert f"HTTP {status}" in str(caught.value)
    assert_clean_message(caught.value, http_server)


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds(
    http_server: FakeSource, session: aiohttp.ClientSession, status: int
) -> None:
    http_server.fail("/rss", status, headers={"Retry-After": "120"})

    with pytest.raises(TransientError) as caught:
        await fetch(session, http_server.url("/rss"))

    assert caught.value.key == f"http_{status}"
    assert caught.value.retry_after == 120.0


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_http_date(
    http_server: FakeSource, session: aiohttp.ClientSession, status: int
) -> None:
    later = datetime.now(UTC) + timedelta(seconds=90)
    http_server.fail("/rss", status, headers={"Retry-After": format_datetime(later, usegmt=True)})

    with pytest.raises(TransientError) as caught:
        await fetch(session, http_server.url("/rss"))

    assert caught.value.retry_after is not None
    # The date has whole seconds and a little time passes: allow a margin.
    assert 80.0 <= caught.value.retry_after <= 90.0


async def test_retry_after_absent_or_garbled(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.sequence(
        "/rss", [Reply(status=429), Reply(status=429, headers={"Retry-After": "soon"})]
    )

    for _ in range(2):
        with pytest.raises(TransientError) as caught:
            await fetch(session, http_server.url("/rss"))
        assert caught.value.retry_after is None


# -- transport failures -------------------------------------------------------


async def test_slow_server_hits_total_timeout(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    # Never set by the test: the fixture releases it at teardown.
    http_server.slow("/rss", asyncio.Event(), FEED)

    with pytest.raises(TransientError) as caught:
        await fetch(session, http_server.url("/rss"), limits=HttpLimits(total_timeout=0.2))

    assert caught.value.key == "timeout"
    assert_clean_message(caught.value, http_server)


async def test_truncated_body(http_server: FakeSource, session: aiohttp.ClientSession) -> None:
    http_server.truncated("/rss", FEED)

    with pytest.raises(TransientError) as caught:
        await fetch(session, http_server.url("/rss"))

    assert caught.value.key == "truncated"
    assert_clean_message(caught.value, http_server)


async def test_body_that_does_not_decode(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.route("/rss", Reply(FEED, headers={"Content-Encoding": "gzip"}))

    with pytest.raises(ParseError) as caught:
        await fetch(session, http_server.url("/rss"))

    assert caught.value.key == "bad_encoding"
    assert_clean_message(caught.value, http_server)


async def test_connection_refused(session: aiohttp.ClientSession) -> None:
    # Take a free port and let it go: nothing listens there now.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    with pytest.raises(TransientError) as caught:
        await fetch(session, f"http://127.0.0.1:{port}/rss?token=secret")

    assert caught.value.key == "connect"
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "secret" not in str(caught.value)


async def test_tls_failure(http_server: FakeSource, session: aiohttp.ClientSession) -> None:
    # A TLS handshake against a plain-HTTP port fails on the client side.
    url = http_server.url("/rss").replace("http://", "https://")

    with pytest.raises(TransientError) as caught:
        await fetch(session, url)

    assert caught.value.key == "tls"
    assert_clean_message(caught.value, http_server)


@pytest.mark.parametrize("url", ["ftp://example.com/rss", "http://", "not a url"])
async def test_unusable_url(session: aiohttp.ClientSession, url: str) -> None:
    with pytest.raises(PermanentError) as caught:
        await fetch(session, url)

    assert caught.value.key == "bad_url"


# -- body size cap ------------------------------------------------------------

CAP = 64 * 1024


async def test_body_at_the_cap_is_accepted(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.chunked("/rss", b"x" * CAP, chunk_size=1000)

    resp = await fetch(session, http_server.url("/rss"), limits=HttpLimits(max_body_bytes=CAP))

    assert len(resp.body) == CAP


async def test_too_large_by_content_length(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.serve("/rss", b"x" * (CAP + 1))

    with pytest.raises(ParseError) as caught:
        await fetch(session, http_server.url("/rss"), limits=HttpLimits(max_body_bytes=CAP))

    assert caught.value.key == "too_large"
    assert f"{CAP + 1} bytes" in str(caught.value)
    assert_clean_message(caught.value, http_server)


async def test_too_large_while_streaming(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    http_server.chunked("/rss", b"x" * (4 * CAP), chunk_size=4096)

    with pytest.raises(ParseError) as caught:
        await fetch(session, http_server.url("/rss"), limits=HttpLimits(max_body_bytes=CAP))

    assert caught.value.key == "too_large"


async def test_gzip_bomb_is_stopped_by_the_cap(
    http_server: FakeSource, session: aiohttp.ClientSession
) -> None:
    bomb = bytes(64 * 1024 * 1024)
    cap = 1024 * 1024
    # Small on the wire, so only the decompressed count can catch it.
    assert len(gzip.compress(bomb, compresslevel=9)) < cap
    http_server.gzip("/rss", bomb)

    with pytest.raises(ParseError) as caught:
        await fetch(session, http_server.url("/rss"), limits=HttpLimits(max_body_bytes=cap))

    assert caught.value.key == "too_large"


# -- parse_retry_after ----------------------------------------------------------

NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("0", 0.0),
        ("120", 120.0),
        (" 30 ", 30.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("inf", None),
        ("١٢", None),  # non-ASCII digits are not delay-seconds
        ("Fri, 01 Mar 2024 12:01:30 GMT", 90.0),  # IMF-fixdate
        ("Friday, 01-Mar-24 12:00:10 GMT", 10.0),  # obsolete RFC 850 form
        ("Fri Mar  1 12:00:05 2024", 5.0),  # obsolete asctime form
        ("Fri, 01 Mar 2024 11:00:00 GMT", 0.0),  # in the past: no wait, never negative
        ("Fri, 32 Mar 2024 12:00:00 GMT", None),
        ("Fri, 01 Mar 2024 25:00:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_naive_now_is_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert parse_retry_after("Fri, 01 Mar 2024 12:01:00 GMT", now=naive) == 60.0
