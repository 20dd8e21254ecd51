"""The parser's contract over feedparser's own test corpus (third-party data in
../shared, not in the repo): every file gives a result or ParseError, never another
exception, within a time bound, and keeps every entry that has something to keep."""

from __future__ import annotations

import html
import io
import re
import time
from datetime import UTC, datetime
from typing import Any

import feedparser
import pytest

from adapters.errors import ParseError
from adapters.feed import parse_feed
from tests.shared import SHARED, require

CORPUS = SHARED / "fixtures" / "feedparser-corpus"
require(CORPUS)

FILES = sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.xml"))
NOW = datetime(2030, 1, 1, tzinfo=UTC)
SECONDS_PER_FILE = 1.0
_ANY_TAG = re.compile(r"<[^<>]*>")

# Entries kmon may drop although feedparser returns something for them, and why.
NOTHING_TO_KEEP = {
    # feedparser's text is markup without words (an SVG drawing, an empty span).
    "wellformed/namespace/atomsvg.xml",
    "wellformed/namespace/atomxlink.xml",
    # The item holds only a <category>; feedparser lends it the title of an <image>
    # nested inside that category.
    "wellformed/rss/item_category_image.xml",
}


def _has_text(value: Any) -> bool:
    return bool(value) and bool(html.unescape(_ANY_TAG.sub("", str(value))).strip())


def keepable_entries(body: bytes) -> int:
    """Entries feedparser finds with a title, link, guid or some text."""
    parsed = feedparser.parse(io.BytesIO(body))
    count = 0
    for entry in parsed.entries:
        contents = entry.get("content") or ()
        if (
            (entry.get("link") or "").strip()
            or (entry.get("id") or "").strip()
            or _has_text(entry.get("title"))
            or _has_text(entry.get("summary"))
            or any(_has_text(c.get("value")) for c in contents)
        ):
            count += 1
    return count


def test_the_corpus_is_complete() -> None:
    assert len(FILES) >= 2_000


@pytest.mark.parametrize("name", FILES)
def test_every_file_keeps_the_contract(name: str) -> None:
    body = (CORPUS / name).read_bytes()
    started = time.perf_counter()
    try:
        items = parse_feed(body, fetched_at=NOW).items
    except ParseError:
        items = []
    assert time.perf_counter() - started < SECONDS_PER_FILE
    if name not in NOTHING_TO_KEEP:
        assert len(items) >= keepable_entries(body)
