"""A real local HTTP server that plays a news feed or quote source in tests.

Use it from a test module with ``pytest_plugins = ["tests.servers"]`` and the
``http_server`` fixture::

    async def test_recovers(http_server: FakeSource) -> None:
        http_server.sequence("/rss", [Reply(status=500), Reply(b"<rss/>", etag='"v1"')])
        url = http_server.url("/rss")
        ...
        assert len(http_server.requests_to("/rss")) == 2

Every route answers on 127.0.0.1 over a real socket. Registering a path again
replaces its route; an unregistered path answers 404. ``requests`` logs every
request, in order, with its headers.

PYTEST_DONT_REWRITE: test modules import their helpers from here before pytest
registers the plugin, and would otherwise get a "cannot be rewritten" warning.
"""

from __future__ import annotations

import asyncio
import gzip as gzip_module
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "FakeSource",
    "Handler",
    "RecordedRequest",
    "Reply",
    "chunked_reply",
    "gzip_reply",
    "http_server",
    "redirect_reply",
    "slow_reply",
    "truncated_reply",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request the server received. ``headers`` is case-insensitive."""

    method: str
    path: str
    query_string: str
    headers: CIMultiDictProxy[str]


@dataclass(frozen=True, slots=True)
class Reply:
    """A plain answer; usable as a route handler and as an item of ``sequence``.

    With ``etag`` or ``last_modified`` set, a matching If-None-Match or
    If-Modified-Since gets a 304 that repeats the ETag (as RFC 9110 asks) but not
    Last-Modified, so a client must keep the validator it already has.
    """

    body: bytes = b""
    status: int = 200
    headers: Mapping[str, str] | None = None
    etag: str | None = None
    last_modified: str | None = None

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        headers = CIMultiDict(self.headers or {})
        if self.etag is not None:
            headers["ETag"] = self.etag
        if self.status == 200 and _not_modified(request, self.etag, self.last_modified):
            return web.Response(status=304, headers={"ETag": self.etag} if self.etag else None)
        if self.last_modified is not None:
            headers["Last-Modified"] = self.last_modified
        return web.Response(status=self.status, body=self.body, headers=headers)


def gzip_reply(body: bytes, *, headers: Mapping[str, str] | None = None) -> Handler:
    """Answer ``body`` gzip-compressed with Content-Encoding: gzip, whatever was asked."""
    compressed = gzip_module.compress(body, compresslevel=9)

    async def handler(request: web.Request) -> web.StreamResponse:
        out = CIMultiDict(headers or {})
        out["Content-Encoding"] = "gzip"
        return web.Response(body=compressed, headers=out)

    return handler


def chunked_reply(
    body: bytes, *, chunk_size: int = 64 * 1024, headers: Mapping[str, str] | None = None
) -> Handler:
    """Stream ``body`` with chunked transfer encoding, so no Content-Length is sent."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers=CIMultiDict(headers or {}))
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for start in range(0, len(body), chunk_size):
            await resp.write(body[start : start + chunk_size])
        await resp.write_eof()
        return resp

    return handler


def redirect_reply(to: str, *, status: int = 302) -> Handler:
    """Redirect to ``to`` (a path on this server or an absolute URL)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": to})

    return handler


def truncated_reply(body: bytes, *, missing: int = 1024) -> Handler:
    """Announce ``len(body) + missing`` bytes, send ``body``, then drop the connection."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = len(body) + missing
        await resp.prepare(request)
        await resp.write(body)
        transport = request.transport
        if transport is not None:
            transport.close()
        # aiohttp's attempt to finish this response now meets a closed socket,
        # which it treats as a client that went away: no error is logged.
        return resp

    return handler


def slow_reply(release: asyncio.Event, body: bytes = b"") -> Handler:
    """Answer only once ``release`` is set (the fixture sets it at teardown)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(body=body)

    return handler


@dataclass
class _Sequence:
    replies: Sequence[Handler]
    served: int = field(default=0)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        # After the last reply, keep giving the last one (a recovered source stays up).
        handler = self.replies[min(self.served, len(self.replies) - 1)]
        self.served += 1
        return await handler(request)


class FakeSource:
    """Routes registered by a test, served by a real aiohttp server on 127.0.0.1."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._routes: dict[str, Handler] = {}
        self._releases: list[asyncio.Event] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._server = TestServer(app, host="127.0.0.1")

    async def start(self) -> None:
        """Listen on a free port."""
        await self._server.start_server()

    async def close(self) -> None:
        """Let slow handlers finish, then stop the server."""
        for release in self._releases:
            release.set()
        await self._server.close()

    @property
    def port(self) -> int:
        """The port the server listens on."""
        port = self._server.port
        assert port is not None, "server not started"
        return port

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` (which may carry a query string)."""
        return str(self._server.make_url(path))

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """The logged requests for one path, in order."""
        return [r for r in self.requests if r.path == path]

    # -- registering routes -------------------------------------------------

    def route(self, path: str, handler: Handler) -> None:
        """Answer ``path`` with any handler (all methods, any query string)."""
        self._routes[path] = handler

    def serve(
        self,
        path: str,
        body: bytes,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
    ) -> None:
        """Serve ``body``, with 304 for a matching conditional request."""
        self.route(path, Reply(body, status, headers, etag, last_modified))

    def fail(
        self,
        path: str,
        status: int,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
    ) -> None:
        """Answer with an error ``status`` (500, 429 with Retry-After, 404 …)."""
        self.route(path, Reply(body, status, headers))

    def sequence(self, path: str, replies: Sequence[Handler]) -> None:
        """Give ``replies`` one per request, then repeat the last one."""
        if not replies:
            raise ValueError("sequence needs at least one reply")
        self.route(path, _Sequence(list(replies)))

    def slow(self, path: str, release: asyncio.Event, body: bytes = b"") -> None:
        """Hold each request until ``release`` is set; teardown sets it."""
        self._releases.append(release)
        self.route(path, slow_reply(release, body))

    def truncated(self, path: str, body: bytes, *, missing: int = 1024) -> None:
        """Promise more bytes than are sent, then close the connection."""
        self.route(path, truncated_reply(body, missing=missing))

    def gzip(self, path: str, body: bytes, *, headers: Mapping[str, str] | None = None) -> None:
        """Serve ``body`` gzip-compressed."""
        self.route(path, gzip_reply(body, headers=headers))

    def chunked(self, path: str, body: bytes, *, chunk_size: int = 64 * 1024) -> None:
        """Serve ``body`` in chunked transfer encoding (no Content-Length)."""
        self.route(path, chunked_reply(body, chunk_size=chunk_size))

    def redirect(self, path: str, to: str, *, status: int = 302) -> None:
        """Redirect ``path`` to ``to``."""
        self.route(path, redirect_reply(to, status=status))

    # -- serving --------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query_string=request.query_string,
                headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            )
        )
        handler = self._routes.get(request.path)
        if handler is None:
            return web.Response(status=404, text=f"no route for {request.path}")
        return await handler(request)


@pytest_asyncio.fixture
async def http_server() -> AsyncIterator[FakeSource]:
    """A started :class:`FakeSource`, stopped (and its slow routes released) after the test."""
    server = FakeSource()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


def _not_modified(request: web.Request, etag: str | None, last_modified: str | None) -> bool:
    # RFC 9110 §13.2.2: If-None-Match wins; If-Modified-Since counts only without it.
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        if etag is None:
            return False
        wanted = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in wanted or etag.removeprefix("W/") in wanted
    since = request.headers.get("If-Modified-Since")
    if since is None or last_modified is None:
        return False
    if since.strip() == last_modified:
        return True
    try:
        return parsedate_to_datetime(last_modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False
