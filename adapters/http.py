"""One careful HTTP GET, shared by every adapter that fetches over HTTP.

:func:`fetch` does a conditional GET with a shared :class:`aiohttp.ClientSession`,
caps redirects, time and body size, and turns every failure into the error family
of :mod:`adapters.errors`. It keeps no state between calls: validators go in and
come back out through the caller.
"""

from __future__ import annotations

import functools
import importlib.metadata
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from aiohttp.http_exceptions import ContentEncodingError
from yarl import URL

from adapters.errors import AuthError, FetchError, ParseError, PermanentError, TransientError
from adapters.records import Validators
from adapters.text import one_line, reason_of

__all__ = [
    "DEFAULT_ACCEPT",
    "USER_AGENT",
    "HttpLimits",
    "HttpResponse",
    "fetch",
    "make_client_session",
    "parse_retry_after",
]


def _kmon_version() -> str:
    try:
        return importlib.metadata.version("kmon")
    except importlib.metadata.PackageNotFoundError:
        # Running from a plain checkout that was never installed.
        return "0.0.0"


USER_AGENT = f"kmon/{_kmon_version()} (+news and quote monitor; aiohttp/{aiohttp.__version__})"

DEFAULT_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.8"
)

# Only what aiohttp can always decode; "br" would need the optional Brotli package.
_ACCEPT_ENCODING = "gzip, deflate"
_CHUNK_SIZE = 64 * 1024
_REASON_MAX = 80


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Bounds for one fetch. ``max_redirects`` is how many redirects are followed."""

    connect_timeout: float = 10.0
    total_timeout: float = 30.0
    max_body_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A usable answer: status 200 with its (decompressed) body, or 304 with ``b""``."""

    status: int
    body: bytes
    content_type: str | None
    validators: Validators
    url: str


def make_client_session(
    *, user_agent: str = USER_AGENT, connection_limit: int = 100
) -> aiohttp.ClientSession:
    """Create the one session the daemon shares for all its fetches.

    Call it from inside the running event loop and close it at shutdown. Cookies are
    not kept, so one source cannot change what another (or a later poll) is served.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connection_limit),
        headers={"User-Agent": user_agent},
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=True,
        raise_for_status=False,
    )


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Read a Retry-After header: delay-seconds or an HTTP-date.

    Returns seconds to wait (a date in the past gives ``0.0``), or ``None`` when the
    header is absent or cannot be read. A naive ``now`` is taken as UTC.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    # HTTP-dates are always GMT; "-0000" and asctime forms come back naive.
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    *,
    validators: Validators | None = None,
    limits: HttpLimits = HttpLimits(),  # frozen, so one shared default is safe
    accept: str = DEFAULT_ACCEPT,
) -> HttpResponse:
    """GET ``url`` and return a 200 or 304 answer, or raise a :class:`FetchError`.

    ``validators`` from the previous poll are sent as If-None-Match /
    If-Modified-Since. The body is decompressed and capped at
    ``limits.max_body_bytes`` while it streams in. Error messages name the host
    only, never the query string, which may carry a token.
    """
    host = _host_of(url)
    headers = {"Accept": accept, "Accept-Encoding": _ACCEPT_ENCODING}
    if validators is not None:
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
    # sock_connect (TCP + TLS handshake) rather than connect, so that waiting for a
    # free slot in the shared pool is not mistaken for an unreachable host.
    timeout = aiohttp.ClientTimeout(total=limits.total_timeout, sock_connect=limits.connect_timeout)
    follow = limits.max_redirects > 0
    try:
        async with session.get(
            url,
            headers=headers,
            timeout=timeout,
            allow_redirects=follow,
            # aiohttp raises on the N-th redirect answer, so N+1 follows N of them.
            max_redirects=limits.max_redirects + 1,
        ) as resp:
            return await _read(resp, host, validators or Validators(), limits)
    except FetchError:
        raise
    except aiohttp.ConnectionTimeoutError as exc:
        raise TransientError(
            "timeout", f"{host}: connecting timed out (limit {limits.connect_timeout:g}s)"
        ) from exc
    except TimeoutError as exc:
        raise TransientError(
            "timeout", f"{host}: timed out (limit {limits.total_timeout:g}s)"
        ) from exc
    except aiohttp.TooManyRedirects as exc:
        raise PermanentError(
            "redirects", f"{host}: more than {limits.max_redirects} redirects"
        ) from exc
    except aiohttp.RedirectClientError as exc:
        raise PermanentError("redirects", f"{host}: redirected to an unusable URL") from exc
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
        raise PermanentError("bad_url", f"{host}: not a fetchable http(s) URL") from exc
    # ssl.SSLError is an OSError and ClientSSLError a ClientConnectorError: check first.
    except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
        raise TransientError(
            "tls", f"{host}: TLS failed ({reason_of(getattr(exc, 'os_error', exc), _REASON_MAX)})"
        ) from exc
    except aiohttp.ClientConnectorDNSError as exc:
        raise TransientError("connect", f"{host}: DNS lookup failed") from exc
    except aiohttp.ClientConnectorError as exc:
        raise TransientError(
            "connect", f"{host}: cannot connect ({reason_of(exc.os_error, _REASON_MAX)})"
        ) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise TransientError(
            "disconnected", f"{host}: server closed the connection without answering"
        ) from exc
    except aiohttp.ClientPayloadError as exc:
        if isinstance(exc.__cause__, ContentEncodingError):
            # The bytes all came but do not inflate: the server's encoding is broken.
            raise ParseError(
                "bad_encoding", f"{host}: body does not decode as its Content-Encoding says"
            ) from exc
        raise TransientError("truncated", f"{host}: response body was cut short") from exc
    except aiohttp.ClientOSError as exc:
        raise TransientError(
            "connect", f"{host}: connection failed ({reason_of(exc, _REASON_MAX)})"
        ) from exc
    except aiohttp.ClientConnectionError as exc:
        raise TransientError("disconnected", f"{host}: connection lost") from exc
    except aiohttp.ClientResponseError as exc:
        # e.g. a header line too long or a garbled status line: the server's bug,
        # often passing (a misbehaving proxy or a deploy in progress).
        raise TransientError(
            "bad_response", f"{host}: malformed HTTP response", http_status=exc.status or None
        ) from exc
    except aiohttp.ClientError as exc:
        raise TransientError("client", f"{host}: request failed ({type(exc).__name__})") from exc
    except OSError as exc:
        # aiohttp wraps nearly everything, but a raw socket error can still leak through.
        raise TransientError(
            "connect", f"{host}: network error ({reason_of(exc, _REASON_MAX)})"
        ) from exc


async def _read(
    resp: aiohttp.ClientResponse, host: str, old: Validators, limits: HttpLimits
) -> HttpResponse:
    status = resp.status
    # Where the answer came from (for messages) is only worked out when one is needed.
    if status == 304:
        return HttpResponse(
            status=304,
            body=b"",
            content_type=resp.headers.get("Content-Type"),
            validators=Validators(
                etag=resp.headers.get("ETag") or old.etag,
                last_modified=resp.headers.get("Last-Modified") or old.last_modified,
            ),
            url=str(resp.url),
        )
    if status != 200:
        raise _status_error(resp, _where(host, resp.url))

    declared = resp.content_length
    if declared is not None and declared > limits.max_body_bytes:
        resp.close()
        where = _where(host, resp.url)
        raise ParseError(
            "too_large",
            f"{where}: body of {declared} bytes exceeds the {limits.max_body_bytes}-byte cap",
            http_status=status,
        )
    # Count the decompressed bytes as they arrive so a gzip bomb stops at the cap
    # (aiohttp inflates in bounded steps, driven by how fast we read).
    body = bytearray()
    async for chunk in resp.content.iter_chunked(_CHUNK_SIZE):
        body += chunk
        if len(body) > limits.max_body_bytes:
            # close, not release: draining the rest would defeat the cap.
            resp.close()
            where = _where(host, resp.url)
            raise ParseError(
                "too_large",
                f"{where}: body exceeds the {limits.max_body_bytes}-byte cap",
                http_status=status,
            )
    return HttpResponse(
        status=200,
        body=bytes(body),
        content_type=resp.headers.get("Content-Type"),
        validators=Validators(
            etag=resp.headers.get("ETag"), last_modified=resp.headers.get("Last-Modified")
        ),
        url=str(resp.url),
    )


def _status_error(resp: aiohttp.ClientResponse, where: str) -> FetchError:
    status = resp.status
    key = f"http_{status}"
    message = f"{where}: HTTP {status}"
    reason = one_line(resp.reason or "", _REASON_MAX)
    if reason:
        message += f" {reason}"
    if status in (429, 503):
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), now=datetime.now(UTC))
        if retry_after is not None:
            message += f" (retry after {retry_after:g}s)"
        return TransientError(key, message, http_status=status, retry_after=retry_after)
    if status >= 500 or status == 408:
        return TransientError(key, message, http_status=status)
    if status in (401, 403):
        return AuthError(key, message, http_status=status)
    if 400 <= status < 500:
        return PermanentError(key, message, http_status=status)
    if 300 <= status < 400:
        if "Location" in resp.headers:
            # Only reached with max_redirects=0: any redirect is one too many.
            return PermanentError(
                "redirects", f"{message} (redirects not allowed)", http_status=status
            )
        return PermanentError(key, f"{message} without a Location", http_status=status)
    # Other 2xx (202, 204 …) carry no usable document; probably passing.
    return TransientError(key, f"{message} (unexpected status)", http_status=status)


# The same few hundred source URLs come back every poll cycle.
@functools.lru_cache(maxsize=4096)
def _host_of(url: str) -> str:
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return "<invalid URL>"
    if not parsed.host:
        return "<invalid URL>"
    if parsed.explicit_port is not None and not parsed.is_default_port():
        return f"{parsed.host}:{parsed.explicit_port}"
    return parsed.host


def _where(host: str, final: URL) -> str:
    final_host = _host_of(str(final))
    return host if final_host == host else f"{host} (redirected to {final_host})"
