"""What makes two feed entries the same item: guid, else canonical link, else text."""

from __future__ import annotations

import hashlib
import unicodedata
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters that only say how a reader arrived; they never change the article.
TRACKING_PARAMS = frozenset(
    {"fbclid", "gclid", "dclid", "msclkid", "yclid", "igshid", "mc_cid", "mc_eid", "ref_src"}
)
TRACKING_PREFIXES = ("utm_",)

# Longer identities are hashed so the unique index stays small on every dialect.
MAX_ID_LENGTH = 400


def nfc(text: str) -> str:
    """NFC-normalise (decomposed Hangul jamo from some publishers become syllables)."""
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)


def canonical_url(url: str) -> str:
    """The link without tracking parameters or fragment, scheme and host lower-cased."""
    parts = urlsplit(url.strip())
    query = parts.query
    if query:
        kept = [
            (k, v)
            for k, v in parse_qsl(query, keep_blank_values=True)
            if k.lower() not in TRACKING_PARAMS and not k.lower().startswith(TRACKING_PREFIXES)
        ]
        query = urlencode(kept, doseq=True)
    netloc = parts.netloc.lower()
    scheme = parts.scheme.lower()
    if (scheme, _explicit_port(parts)) in (("http", 80), ("https", 443)):
        netloc = netloc.rsplit(":", 1)[0]
    return urlunsplit((scheme, netloc, parts.path or "/", query, ""))


def _explicit_port(parts: SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:  # a garbled port is kept as it is
        return None


def _bounded(prefix: str, value: str) -> str:
    if len(prefix) + len(value) <= MAX_ID_LENGTH:
        return prefix + value
    return prefix.rstrip(":") + "#:" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def external_id(*, guid: str | None, url: str | None, title: str, summary: str) -> str:
    """The per-source identity of an entry: ``g:`` guid, ``l:`` canonical link, ``h:`` hash."""
    if guid and guid.strip():
        return _bounded("g:", guid.strip())
    if url and url.strip():
        return _bounded("l:", canonical_url(url))
    digest = hashlib.sha256(f"{title}\x1f{summary}".encode()).hexdigest()
    return "h:" + digest
