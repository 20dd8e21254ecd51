"""Parse RSS 2.0, RSS 1.0 (RDF) and Atom bodies into plain :class:`RawItem` records.

Parsing only, no network. The pipeline is:

1. ``_prepare``: :func:`adapters.xmltext.markup_text` decodes the bytes (BOM, valid
   UTF-8, HTTP charset, XML prolog, then detection) and drops any DOCTYPE (entity
   tricks); bodies that are no feed at all are rejected, and the rest re-encoded as
   UTF-8 under a prolog that says so.
2. ``_fast_path``: lxml for well-formed documents with a known root (the common case,
   several times faster than feedparser).
3. ``_feedparser_path``: the tolerant fallback for broken documents or unknown roots.

Both paths only *extract* raw strings; ``_build`` turns them into RawItems, so the two
paths cannot drift apart in how text, dates, URLs and languages are normalised.
"""

from __future__ import annotations

import base64
import binascii
import functools
import html
import io
import re
import unicodedata
import warnings as _warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import feedparser
from dateutil import parser as _dateutil_parser
from lxml import etree

from adapters.errors import ParseError
from adapters.records import KST, RawItem
from adapters.xmltext import markup_text, xml_parser

__all__ = ["FUTURE_SLACK", "SUMMARY_MAX", "TITLE_MAX", "ParsedFeed", "parse_feed"]

# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """Items of one feed body, in document order, plus feed-level facts.

    ``warnings`` holds stable keys of recoverable oddities, each at most once:
    ``charset_mismatch``, ``charset_guessed``, ``encoding_errors``, ``dtd_removed``,
    ``malformed``, ``date_missing`` (an item dated by the fetch), ``date_implausible``
    (a date more than :data:`FUTURE_SLACK` ahead of the fetch), ``field_truncated`` (a
    title or summary cut to :data:`TITLE_MAX` / :data:`SUMMARY_MAX`).
    """

    items: list[RawItem]
    warnings: tuple[str, ...]
    title: str | None
    language: str | None


@dataclass(slots=True)
class _RawEntry:
    """Strings exactly as a parser extracted them, before any normalisation."""

    title: str | None = None
    link: str | None = None
    guid: str | None = None
    guid_is_permalink: bool = True
    summary: str | None = None
    content: str | None = None
    author: str | None = None
    date: str | None = None
    language: str | None = None
    # How title, summary and content are to be read (see _plain): RSS says nothing,
    # Atom names "text" or "html" (xhtml is serialised markup, so "html").
    title_kind: str = "rss"
    summary_kind: str = "rss"
    content_kind: str = "rss"


@dataclass(slots=True)
class _RawFeed:
    title: str | None = None
    title_kind: str = "rss"
    language: str | None = None
    entries: list[_RawEntry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A body made safe for both parsers: UTF-8 bytes, no DOCTYPE."""

    data: bytes
    root: str  # local name of the root element, e.g. "rss", "RDF", "feed"
    warnings: tuple[str, ...]


# ------------------------------------------------------------------------ public API


def parse_feed(body: bytes, *, content_type: str | None = None, fetched_at: datetime) -> ParsedFeed:
    """Parse one feed body into plain, normalised items.

    ``content_type`` is the HTTP Content-Type header (its charset is one hint among
    several). ``fetched_at`` must be timezone-aware; it stands in for missing dates.

    Raises ``ParseError(key="not_a_feed")`` for bodies that are no feed (empty, HTML,
    JSON …) and ``ParseError(key="parse")`` for a broken feed nothing can be saved from;
    whatever the body, never another exception.
    """
    if fetched_at.tzinfo is None or fetched_at.utcoffset() is None:
        raise ValueError("fetched_at must be timezone-aware")
    try:
        return _parse(body, content_type, fetched_at.astimezone(UTC))
    except ParseError:
        raise
    except Exception as err:  # a bug of ours or of a library must not lose the source
        raise ParseError("parse", f"unreadable feed ({type(err).__name__}: {err})") from err


def _parse(body: bytes, content_type: str | None, fetched_at: datetime) -> ParsedFeed:
    prepared = _prepare(body, content_type)
    extra: list[str] = []
    parsed: ParsedFeed | None
    try:
        parsed = _fast_path(prepared.data, fetched_at)
    except (etree.LxmlError, ValueError):
        parsed = None
        extra.append("malformed")
    if parsed is None:
        try:
            parsed = _feedparser_path(prepared.data, fetched_at)
        except Exception:  # feedparser trips over mangled <link>s (IndexError, KeyError)
            parsed = _fast_path(prepared.data, fetched_at, recover=True)
        salvaged = parsed is not None and (parsed.items or parsed.title)
        if not salvaged and extra and prepared.root.lower() in _FEED_ROOTS:
            raise ParseError("parse", f"broken <{prepared.root}> document, nothing salvaged")
        if parsed is None:
            raise ParseError("not_a_feed", f"root element <{prepared.root}> is not a feed")
    return ParsedFeed(
        items=parsed.items,
        warnings=_dedup((*prepared.warnings, *extra, *parsed.warnings)),
        title=parsed.title,
        language=parsed.language,
    )


# ----------------------------------------------------------------------- preparation

_UTF8_DECL = '<?xml version="1.0" encoding="utf-8"?>'
_FEED_ROOTS = {"rss", "rdf", "feed", "channel"}
_NOT_FEED_ROOTS = {"html", "head", "body"}


def _root_name(text: str) -> str | None:
    """Local name of the first element, skipping prolog, comments and PIs."""
    pos, n = 0, len(text)
    while pos < n:
        lt = text.find("<", pos)
        if lt < 0:
            return None
        if text.startswith("<?", lt):
            end, skip = text.find("?>", lt), 2
        elif text.startswith("<!--", lt):
            end, skip = text.find("-->", lt), 3
        elif text.startswith("<!", lt):
            end, skip = text.find(">", lt), 1
        else:
            m = re.match(r"<([A-Za-z_][\w.\-]*(?::[\w.\-]+)?)", text[lt : lt + 200])
            return m.group(1).rpartition(":")[2] if m else None
        if end < 0:
            return None
        pos = end + skip
    return None


def _prepare(body: bytes, content_type: str | None) -> _Prepared:
    """Decode, sanitise and sniff a body; raise not_a_feed for non-feeds."""
    text, found = markup_text(body, content_type, error_key="not_a_feed")
    # The prolog may have named a charset we already applied, or one expat rejects
    # ("utf8", Yonhap); the bytes handed on are UTF-8, so the prolog must say so.
    text = _UTF8_DECL + text
    root = _root_name(text)
    if root is None:
        raise ParseError("not_a_feed", "no root element")
    if root.lower() in _NOT_FEED_ROOTS:
        raise ParseError("not_a_feed", f"an HTML page (<{root}>)")
    return _Prepared(text.encode("utf-8", errors="replace"), root, tuple(found))


# ------------------------------------------------------------------ lxml fast path

_NS_RSS1 = "http://purl.org/rss/1.0/"
_NS_RSS090 = "http://my.netscape.com/rdf/simple/0.9/"
_NS_DC = ("http://purl.org/dc/elements/1.1/", "http://purl.org/dc/elements/1.0/")
_NS_CONTENT = "http://purl.org/rss/1.0/modules/content/"
_NS_MEDIA = "http://search.yahoo.com/mrss/"
_NS_ITUNES = "http://www.itunes.com/DTDs/Podcast-1.0.dtd"
_NS_ATOM = ("http://www.w3.org/2005/Atom", "http://purl.org/atom/ns#")
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_RDF_ABOUT = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}about"


def _tag_table(plain: dict[str, str], namespaces: Iterable[str]) -> dict[str, str]:
    table: dict[str, str] = {}
    for ns in namespaces:
        prefix = f"{{{ns}}}" if ns else ""
        for local, key in plain.items():
            table[prefix + local] = key
    return table


# Maps a full lxml tag ("{ns}local") to the _RawEntry field it feeds. "date2" is the
# lower-priority date (dc:date / updated), used when no pubDate / published exists.
_RSS_ITEM_TAGS = {
    **_tag_table(
        {
            "title": "title",
            "link": "link",
            "description": "summary",
            "guid": "guid",
            "id": "guid",  # Yonhap's raw feed: a bare <id> instead of <guid>
            "author": "author",
            "pubDate": "date",
            "language": "language",
            "fullitem": "content",  # old RSS extensions feedparser reads too
        },
        ("", _NS_RSS1, _NS_RSS090),
    ),
    **_tag_table({"body": "content"}, ("", "http://www.w3.org/1999/xhtml")),
    **_tag_table(
        {
            "creator": "creator",
            "date": "date2",
            "language": "language",
            "title": "title2",
            "description": "summary2",
        },
        _NS_DC,
    ),
    f"{{{_NS_CONTENT}}}encoded": "content",
    # Fallbacks for items without <title> / <description> (both optional in RSS 2.0).
    f"{{{_NS_MEDIA}}}title": "title2",
    f"{{{_NS_MEDIA}}}content": "media",
    f"{{{_NS_MEDIA}}}group": "media",
    f"{{{_NS_MEDIA}}}description": "summary2",
    f"{{{_NS_ITUNES}}}summary": "summary2",
}
_MEDIA_TITLE = f"{{{_NS_MEDIA}}}title"
_ATOM_ENTRY_TAGS = _tag_table(
    {
        "title": "title",
        "link": "link",
        "id": "guid",
        "summary": "summary",
        "content": "content",
        "author": "author",
        "published": "date",
        "issued": "date",  # Atom 0.3
        "updated": "date2",
        "modified": "date2",  # Atom 0.3
    },
    ("", *_NS_ATOM),
)
_HTML_LINK_TYPES = {"text/html", "application/xhtml+xml", "html", "xhtml"}


def _local(tag: Any) -> str:
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _namespace(tag: str) -> str:
    return tag[1:].partition("}")[0] if tag.startswith("{") else ""


def _inner(el: Any) -> str:
    """Text of an element; embedded (unescaped) markup is kept as markup."""
    if not len(el):
        return el.text or ""
    parts = [el.text or ""]
    parts.extend(etree.tostring(child, encoding="unicode") for child in el)
    return "".join(parts)


def _fast_path(data: bytes, fetched_at: datetime, *, recover: bool = False) -> ParsedFeed | None:
    """Parse a well-formed document with lxml; None when the root is not a known feed.

    Raises ``lxml.etree.LxmlError`` (or ValueError) for documents that are not
    well-formed: the caller then falls back to feedparser. With ``recover`` (the last
    resort), libxml2 reads what it can of a broken document instead.
    """
    root = etree.fromstring(data, xml_parser(recover=recover))
    if root is None:
        return None
    local = _local(root.tag)
    raw = _RawFeed()
    if local == "rss":
        channel = next((c for c in root if c.tag == "channel"), None)
        items = [c for c in root if c.tag == "item"]  # misplaced, but seen in the wild
        if channel is None and not items:
            return None
        if channel is not None:
            _read_rss_channel(channel, raw, root.get(_XML_LANG))
            items = [c for c in channel if c.tag == "item"] + items
        raw.entries = [_read_rss_item(it) for it in items]
    elif local == "RDF":
        channel = next((c for c in root if _local(c.tag) == "channel"), None)
        if channel is not None:
            _read_rss_channel(channel, raw, root.get(_XML_LANG))
        raw.entries = [_read_rss_item(c) for c in root if _local(c.tag) == "item"]
    elif local == "feed" and _namespace(root.tag) in ("", *_NS_ATOM):
        _read_atom_feed(root, raw)
    else:
        return None
    return _build(raw, fetched_at)


def _read_rss_channel(channel: Any, raw: _RawFeed, root_lang: str | None) -> None:
    lang: str | None = None
    for child in channel:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        name = _local(tag)
        if name == "title" and raw.title is None and _RSS_ITEM_TAGS.get(tag) == "title":
            raw.title = _inner(child)
        elif name == "language" and lang is None:
            lang = child.text
    raw.language = lang or channel.get(_XML_LANG) or root_lang


def _read_rss_item(item: Any) -> _RawEntry:
    # Plain locals and first-one-wins checks: this loop runs for every child of
    # every item, so it avoids getattr/setattr and per-child allocations.
    title = link = guid = summary = content = author = creator = None
    date = date2 = language = title2 = summary2 = None
    permalink = True
    for child in item:
        key = _RSS_ITEM_TAGS.get(child.tag)
        if key is None:
            continue
        if key == "title":
            if title is None:
                title = _inner(child)
        elif key == "link":
            link = link or child.text
        elif key == "summary":
            if summary is None:
                summary = _inner(child)
        elif key == "guid":
            if guid is None:
                guid = child.text
                permalink = child.get("isPermaLink", "true").lower() == "true"
        elif key == "date":
            date = date or child.text
        elif key == "date2":
            date2 = date2 or child.text
        elif key == "creator":
            creator = creator or child.text
        elif key == "author":
            author = author or child.text
        elif key == "content":
            if content is None:
                content = _inner(child)
        elif key == "language":
            language = language or child.text
        elif key == "title2":
            title2 = title2 or child.text
        elif key == "summary2":
            if summary2 is None:
                summary2 = _inner(child)
        elif key == "media" and title2 is None:
            title2 = next((t.text for t in child.iter(_MEDIA_TITLE) if t.text), None)
    if guid is None and (about := item.get(_RDF_ABOUT)):
        # RSS 1.0 names each item by URI; like feedparser, an id but no permalink.
        guid, permalink = about, False
    return _RawEntry(
        title=title if title is not None and title.strip() else title2,
        link=link,
        guid=guid,
        guid_is_permalink=permalink,
        summary=summary if summary is not None and summary.strip() else summary2,
        content=content,
        author=creator or author,
        date=date or date2,
        language=language or item.get(_XML_LANG),
    )


def _read_atom_feed(root: Any, raw: _RawFeed) -> None:
    raw.language = root.get(_XML_LANG)
    for child in root:
        name = _local(child.tag)
        if name == "title" and raw.title is None:
            raw.title, raw.title_kind = _atom_text(child)
        elif name == "entry":
            raw.entries.append(_read_atom_entry(child))


def _read_atom_entry(entry: Any) -> _RawEntry:
    e = _RawEntry()
    date2 = None
    for child in entry:
        key = _ATOM_ENTRY_TAGS.get(child.tag)
        if key is None:
            continue
        if key == "link":
            rel = child.get("rel", "alternate")
            kind = child.get("type", "text/html").lower()
            if e.link is None and rel == "alternate" and kind in _HTML_LINK_TYPES:
                # Atom 0.3 era feeds put the address in the text instead of href.
                e.link = child.get("href") or child.text
        elif key == "author":
            if e.author is None:
                for part in child:
                    if _local(part.tag) == "name" and part.text:
                        e.author = part.text
                        break
                else:
                    e.author = next((p.text for p in child if _local(p.tag) == "email"), None)
        elif key == "date2":
            date2 = date2 or child.text
        elif key in ("summary", "content", "title"):
            if getattr(e, key) is None:
                value, kind = _atom_text(child)
                setattr(e, key, value)
                setattr(e, f"{key}_kind", kind)
        elif getattr(e, key) is None:
            setattr(e, key, child.text)
    e.date = e.date or date2
    e.language = entry.get(_XML_LANG)
    return e


_ATOM_HTML_TYPES = {"html", "text/html", "xhtml", "application/xhtml+xml"}


def _atom_text(el: Any) -> tuple[str, str]:
    """An Atom text construct as (value, kind): "text" unless its type says HTML."""
    kind = "html" if el.get("type", "text").strip().lower() in _ATOM_HTML_TYPES else "text"
    mode = el.get("mode")
    if mode in ("escaped", "xml"):  # Atom 0.3: escaped or inline markup
        kind = "html"
    elif mode == "base64":  # Atom 0.3: the text, base64-encoded (markup, as a rule)
        try:
            decoded = base64.b64decode(el.text or "", validate=False).decode("utf-8", "replace")
        except binascii.Error:
            return "", kind
        return decoded, "html"
    return _inner(el), kind


# ------------------------------------------------------------------ feedparser path


def _feedparser_path(data: bytes, fetched_at: datetime) -> ParsedFeed | None:
    """Parse with feedparser (tolerant); None when it finds no feed in the body."""
    # A BytesIO, never a str: feedparser opens strings that look like paths or URLs.
    d = feedparser.parse(
        io.BytesIO(data),
        response_headers={"content-type": "application/xml; charset=utf-8"},
        sanitize_html=False,  # we strip all markup ourselves
        resolve_relative_uris=False,
    )
    feed = d.get("feed") or {}
    if not d.get("version") and not d.get("entries") and not feed.get("title"):
        return None
    if d.get("bozo") and not d.get("entries") and not feed.get("title"):
        return None
    atom = str(d.get("version") or "").startswith("atom")

    def kind(detail: Any) -> str:
        if not atom:
            return "rss"
        return "html" if (detail or {}).get("type") in _ATOM_HTML_TYPES else "text"

    raw = _RawFeed(
        title=feed.get("title"),
        title_kind=kind(feed.get("title_detail")),
        language=feed.get("language"),
    )
    for fe in d.get("entries") or ():
        e = _RawEntry()
        e.title = fe.get("title")
        e.guid = fe.get("id")
        e.link = fe.get("link")
        if fe.get("guidislink") and e.link is not None and e.link == e.guid:
            e.link = None  # feedparser copied the guid into link; _build decides again
        # No "guidislink" key: the id came from rdf:about, which is no permalink.
        e.guid_is_permalink = bool(fe.get("guidislink", False))
        e.summary = fe.get("summary")
        contents = fe.get("content") or ()
        e.content = contents[0].get("value") if contents else None
        e.title_kind = kind(fe.get("title_detail"))
        # feedparser copies a lone content into "summary", without a summary_detail.
        e.summary_kind = kind(fe.get("summary_detail") or (contents[0] if contents else None))
        e.content_kind = kind(contents[0] if contents else None)
        detail = fe.get("author_detail") or {}
        e.author = detail.get("name") or detail.get("email") or fe.get("author")
        e.date = fe.get("published") or fe.get("updated")
        e.language = fe.get("language")
        for key in ("title_detail", "summary_detail"):
            e.language = e.language or (fe.get(key) or {}).get("language")
        if contents:
            e.language = e.language or contents[0].get("language")
        raw.entries.append(e)
    return _build(raw, fetched_at)


# --------------------------------------------------------------------- normalising


def _build(raw: _RawFeed, fetched_at: datetime) -> ParsedFeed:
    """Normalise extracted strings into RawItems (shared by both parser paths)."""
    feed_lang = _norm_lang(raw.language)
    found: list[str] = []
    items: list[RawItem] = []
    for e in raw.entries:
        title = _capped(_plain(e.title, e.title_kind), TITLE_MAX, found)
        summary = _plain(e.summary, e.summary_kind) or _plain(e.content, e.content_kind)
        summary = _capped(summary, SUMMARY_MAX, found)
        guid = _clean(e.guid or "").strip() or None
        url = _clean(e.link or "").strip() or None
        if url is None and guid is not None and e.guid_is_permalink and _is_http(guid):
            url = guid
        if not (title or url or guid or summary):
            continue
        published = _parse_date(e.date)
        if published is not None and published > fetched_at + FUTURE_SLACK:
            published = None
            if "date_implausible" not in found:
                found.append("date_implausible")
        estimated = published is None
        if published is None:
            published = fetched_at
            if "date_missing" not in found:
                found.append("date_missing")
        language = _norm_lang(e.language) or feed_lang
        if language is None and (_has_hangul(title) or _has_hangul(summary)):
            language = "ko"
        items.append(
            RawItem(
                title=title,
                url=url,
                guid=guid,
                summary=summary,
                published_at=published,
                date_estimated=estimated,
                author=_author(e.author),
                language=language,
            )
        )
    feed_title = _plain(raw.title, raw.title_kind) or None
    if feed_lang is None and feed_title and _has_hangul(feed_title):
        feed_lang = "ko"
    return ParsedFeed(items=items, warnings=tuple(found), title=feed_title, language=feed_lang)


def _is_http(value: str) -> bool:
    return value[:8].lower().startswith(("http://", "https://"))


def _has_hangul(text: str) -> bool:
    return _HANGUL_RE.search(text) is not None


_HANGUL_RE = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LANG_ALIASES = {"kor": "ko", "eng": "en", "jpn": "ja", "zho": "zh", "chi": "zh"}


@functools.lru_cache(maxsize=256)
def _norm_lang(value: str | None) -> str | None:
    """'ko-KR', 'KO', 'ko_kr', 'kor' -> 'ko'; anything unusable -> None."""
    if not value:
        return None
    primary = re.split(r"[-_\s]", value.strip().lower(), maxsplit=1)[0]
    if not (2 <= len(primary) <= 3 and primary.isascii() and primary.isalpha()):
        return None
    return _LANG_ALIASES.get(primary, primary)


_EMAIL_RE = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")


def _author(value: str | None) -> str | None:
    """'kim@example.com (김기자)' -> '김기자'; a bare address is kept."""
    text = _plain(value)
    if not text:
        return None
    m = _EMAIL_RE.search(text) if "@" in text else None
    if m:
        name = (text[: m.start()] + text[m.end() :]).replace("()", "").replace("<>", "")
        name = name.strip(" ()<>")
        return name or m.group(0)
    return text


# Plain-text conversion. A regex tag stripper + html.unescape instead of an HTML
# parser: building a tree per title/summary costs more than the whole per-item
# budget (>= 20k items/s end to end), and feed markup is shallow. Every pattern here
# must run in linear time on hostile input (a 60 KB "<abbb…" once took 30 s): the
# attribute part is atomic and possessive, and hidden sections are cut with one
# forward search per opener instead of a lazy ".*?" retried at every "<".
_HIDDEN_OPEN_RE = re.compile(r"<(?:(script|style)(?![\w:\-])|!--)", re.I)
_HIDDEN_CLOSE_RE = {
    "script": re.compile(r"</script\s*>", re.I),
    "style": re.compile(r"</style\s*>", re.I),
    "": re.compile(r"-->"),
}
_ATTRS = (
    r"""(?>\s+[A-Za-z_:@][A-Za-z0-9_:.\-]*+"""
    r"""(?>\s*=\s*(?>"[^"]*+"|'[^']*+'|[^\s"'<>=`]++))?)*+\s*+/?>"""
)
# Only elements HTML defines are markup: "<AI 기본법 시행령>", "<HyperCLOVA X>" and
# "<blink>" (no HTML element) are text. Prefixed names ("o:p", Word exports) are
# markup too; attribute names must be ASCII, so "<a 프로젝트>" stays text.
_HTML_ELEMENTS = (  # longest first, so that no name stops at a shorter one
    "blockquote|figcaption|colgroup|datalist|fieldset|noscript|optgroup|progress|"
    "template|textarea|acronym|address|article|caption|details|picture|section|"
    "summary|button|canvas|center|dialog|figure|footer|header|hgroup|iframe|legend|"
    "object|option|output|script|search|select|source|strike|strong|aside|audio|embed|"
    "input|label|meter|param|small|style|table|tbody|tfoot|thead|title|track|video|"
    "abbr|area|base|body|cite|code|data|font|form|head|html|link|main|mark|menu|meta|"
    "ruby|samp|span|time|bdi|bdo|big|col|del|dfn|div|img|ins|kbd|map|nav|pre|sub|sup|"
    "var|wbr|br|dd|dl|dt|em|h1|h2|h3|h4|h5|h6|hr|li|ol|rp|rt|td|th|tr|tt|ul|a|b|i|p|q|"
    "s|u"
)
_TAG_RE = re.compile(
    r"</?(?:(?i:" + _HTML_ELEMENTS + r")"
    r"|[A-Za-z]+:[A-Za-z][\w\-]*+)(?![\w:\-])" + _ATTRS + r"|<!(?i:doctype)[^<>]*+>"
)
# Tags that separate words become a space; all others (b, a, em, span …) may sit
# inside a word, which matters for Korean where particles attach directly:
# <b>삼성</b>이. Two plain substitutions beat one with a Python callback. Only the
# tag names ignore case: a global re.I costs the search its fast scan for "<".
_BLOCK_TAG_RE = re.compile(
    r"</?(?i:p|div|br|li|ul|ol|tr|td|th|h[1-6]|blockquote|table|hr|dd|dt|dl|pre|section"
    r"|article|header|footer|figure|figcaption|img)(?![\w:\-])" + _ATTRS
)
# Longest title and summary kept, in characters; longer ones are cut (warning
# "field_truncated"). Korean headlines run to ~100 characters, leads to a few hundred.
TITLE_MAX = 1_000
SUMMARY_MAX = 10_000


def _drop_hidden(text: str) -> str:
    """Remove <script>/<style> sections and comments; an unclosed one runs to the end."""
    parts: list[str] = []
    pos = 0
    while m := _HIDDEN_OPEN_RE.search(text, pos):
        parts.append(text[pos : m.start()])
        closer = _HIDDEN_CLOSE_RE[(m.group(1) or "").lower()].search(text, m.end())
        if closer is None:
            pos = len(text)
            break
        parts.append(" ")
        pos = closer.end()
    parts.append(text[pos:])
    return "".join(parts)


def _strip_markup(text: str) -> str:
    if "<" in text:
        if "<s" in text or "<S" in text or "<!" in text:
            text = _drop_hidden(text)
        text = _TAG_RE.sub("", _BLOCK_TAG_RE.sub(" ", text))
    if "&" in text:
        text = html.unescape(text)
    return text


def _plain(value: str | None, kind: str = "rss") -> str:
    """Markup and entities out, whitespace collapsed, NFC.

    ``kind`` says what ``value`` is: "text" (an Atom text construct: kept as it is),
    "html" (one level of HTML) or "rss" (RSS says nothing: HTML, possibly escaped
    twice, as Korean portals and Google News send it).
    """
    if not value:
        return ""
    if kind == "text":
        text = value
    else:
        text = _strip_markup(value)
        # Escaped markup inside the markup (e.g. "&lt;b&gt;" in an HTML title) only
        # shows up after unescaping: one more round, never more.
        if kind == "rss" and "<" in text and _TAG_RE.search(text):
            text = _strip_markup(text)
    text = " ".join(_clean(text).split())
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return text


# What no database column takes: NUL (asyncpg refuses it), other C0 controls, lone
# surrogates (no UTF-8 form) and the non-characters U+FFFE/FFFF. Unescaping or
# feedparser can produce them from a body that had none.
_UNSTORABLE_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(text: str) -> str:
    return _UNSTORABLE_RE.sub("", text) if _UNSTORABLE_RE.search(text) else text


def _capped(text: str, limit: int, found: list[str]) -> str:
    """``text`` cut to ``limit`` characters (at a space when one is near), noting it."""
    if len(text) <= limit:
        return text
    if "field_truncated" not in found:
        found.append("field_truncated")
    cut = text[:limit]
    space = cut.rfind(" ", limit - 100)
    return (cut[:space] if space > 0 else cut).rstrip() + "…"


# ------------------------------------------------------------------------- dates

_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_ZONES = {
    "gmt": 0,
    "ut": 0,
    "utc": 0,
    "z": 0,
    "kst": 9 * 60,
    "jst": 9 * 60,
    "est": -5 * 60,
    "edt": -4 * 60,
    "cst": -6 * 60,
    "cdt": -5 * 60,
    "mst": -7 * 60,
    "mdt": -6 * 60,
    "pst": -8 * 60,
    "pdt": -7 * 60,
}
_DATEUTIL_ZONES = {name.upper(): minutes * 60 for name, minutes in _ZONES.items()}
_RFC822_RE = re.compile(
    r"(?:[A-Za-z]{2,9}\.?,?\s*)?(\d{1,2})[\s\-]+([A-Za-z]{3,9})\.?[\s\-]+(\d{2,4})"
    r"[\sT]+(\d{1,2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?"
    r"\s*(?:([A-Za-z]{1,4})|([+\-])(\d{2}):?(\d{2}))?\s*"
)
_COMPACT_RE = re.compile(r"(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?")
_MIN_YEAR, _MAX_YEAR = 1900, 2200
_MAX_OFFSET = timedelta(hours=14)  # Kiribati, UTC+14, is the farthest zone
# A date later than the fetch by more than this is no publication date (a garbled
# year, a zone read the wrong way round by a day): it is treated as missing.
FUTURE_SLACK = timedelta(days=2)
_DATEUTIL_DEFAULT = datetime(2000, 1, 1)  # fixed: never fill gaps from the clock
# "GMT+9", "UTC+09:00", "GMT+0900 (KST)": an offset written after GMT or UTC means
# what people mean by it, and what JavaScript's Date.toString writes: east of UTC,
# UTC+9 here. dateutil reads it the POSIX way, sign inverted (UTC-9, 18 hours off),
# so the form is rewritten to a plain numeric offset before any parser sees it.
_GMT_OFFSET_RE = re.compile(
    r"(?<![A-Za-z])(?:GMT|UTC|UT)\s*([+\-])(\d{1,2})(?::?(\d{2}))?(?:\s*\([^()]*\))?$",
    re.IGNORECASE,
)
# Any other zone name followed by an offset ("EST+5", "KST-9") is a POSIX TZ string
# or a guess at one: which way its sign goes cannot be told, so it is no date.
_NAMED_OFFSET_RE = re.compile(r"[A-Za-z]\s*[+\-]\d")


# Polls re-read the same items again and again: a date string seen before costs a
# dictionary look-up instead of a parse.
@functools.lru_cache(maxsize=8192)
def _parse_date(value: str | None) -> datetime | None:
    """A feed date as aware UTC, or None when missing or unreadable.

    RFC 822 (numeric offsets, GMT, KST and US zone names), ISO 8601 and Yonhap's
    compact YYYYMMDDHHMMSS; a date without a zone is Seoul wall-clock time. "GMT+9"
    is UTC+9; another zone name with an offset after it ("EST+5") is no date.
    """
    if not value:
        return None
    s = value.strip()
    if not s:
        return None
    gmt = _GMT_OFFSET_RE.search(s)
    if gmt is not None:
        sign, hours, minutes = gmt.groups()
        s = f"{s[: gmt.start()].rstrip()} {sign}{int(hours):02d}{minutes or '00'}"
    if _NAMED_OFFSET_RE.search(s):
        return None
    try:
        dt = _parse_date_fast(s)
        if dt is None:
            dt = _parse_date_dateutil(s)
        if dt is None or not _MIN_YEAR <= dt.year <= _MAX_YEAR:
            return None
        # utcoffset() itself raises for dateutil's offsets of a day or more.
        offset = dt.utcoffset()
        if offset is None:
            dt = dt.replace(tzinfo=KST)
        elif abs(offset) > _MAX_OFFSET:
            return None  # no zone is that far from UTC: a garbled offset
        return dt.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


@functools.lru_cache(maxsize=64)
def _zone(minutes: int) -> timezone:
    return UTC if minutes == 0 else timezone(timedelta(minutes=minutes))


def _parse_date_fast(s: str) -> datetime | None:
    if s[0].isdigit() and s.isdigit():
        compact = _COMPACT_RE.fullmatch(s)
        if compact is None:
            return None
        year, month, day, hour, minute, second = (int(g or 0) for g in compact.groups())
        return datetime(year, month, day, hour, minute, second)  # zone-less: KST later
    m = _RFC822_RE.fullmatch(s)
    if m is not None:
        d, mon, y4, hh, mm, ss, zone, sign, zh, zm = m.groups()
        month_no = _MONTHS.get(mon[:3].lower())
        if month_no is None:
            return None
        y = int(y4)
        if len(y4) == 2:  # RFC 822 two-digit years; "0021" is the year 21
            y += 2000 if y < 70 else 1900
        tz: timezone | None = None
        if zone is not None:
            minutes = _ZONES.get(zone.lower())
            if minutes is None:
                return None  # an unknown zone name: let dateutil try
            tz = _zone(minutes)
        elif sign is not None:
            minutes = int(zh) * 60 + int(zm)
            tz = _zone(-minutes if sign == "-" else minutes)
        return datetime(y, month_no, int(d), int(hh), int(mm), int(ss or 0), tzinfo=tz)
    if s[0].isdigit() and len(s) >= 10 and s[4] == "-":
        try:
            return datetime.fromisoformat(s.replace("z", "Z"))
        except ValueError:
            return None
    return None


def _parse_date_dateutil(s: str) -> datetime | None:
    # dateutil happily turns "Tuesday" into a date; demand a year-like number.
    if not re.search(r"\d{4}", s):
        return None
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")  # UnknownTimezoneWarning: treated as naive
            return _dateutil_parser.parse(s, tzinfos=_DATEUTIL_ZONES, default=_DATEUTIL_DEFAULT)
    except (_dateutil_parser.ParserError, ValueError, OverflowError, TypeError):
        return None


def _dedup(keys: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(keys))
