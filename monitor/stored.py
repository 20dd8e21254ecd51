"""What the database hands on to the next stage: stored rows as plain values.

The repository functions return these instead of dicts or ORM rows, so the rules
(which never touch the database) and the CLI read typed fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime


@dataclass(frozen=True, slots=True)
class StoredItem:
    """A news item just stored: its row id, its source's name and the stored values."""

    id: int
    source: str
    external_id: str
    url: str | None
    title: str
    summary: str
    author: str | None
    language: str | None
    published_at: datetime
    date_estimated: bool
    fetched_at: datetime


@dataclass(frozen=True, slots=True)
class StoryCopy:
    """One stored copy of a story that raised a news signal (to rebuild clusters)."""

    title: str
    published_at: datetime
    cluster: str


@dataclass(frozen=True, slots=True)
class StoredFiling:
    """An OpenDART filing just stored (its item's id) or read back for a listing."""

    item_id: int
    source: str
    rcept_no: str
    corp_name: str
    stock_code: str | None
    report_nm: str
    flr_nm: str
    rcept_dt: date
    flags: str
    correction: bool
    url: str | None
    published_at: datetime
