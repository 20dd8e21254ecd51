"""OpenDART, the disclosure system of the Financial Supervisory Service.

Two endpoints under the configured API base (``https://opendart.fss.or.kr/api``):

- ``corpCode.xml``: a zip of every company's 8-digit ``corp_code`` with its stock code;
  read once, to find the companies of the watched tickers (:func:`fetch_corp_codes`);
- ``list.json``: a company's filings, newest first, ``page_count`` (at most 100) a page
  (:func:`fetch_disclosures`).

Every answer carries a ``status``; :func:`check_status` maps it to the error family.
The key (``crtfc_key``) travels in the query string, and :mod:`adapters.http` names
only the host in its errors, so no message carries it. The adapter keeps nothing
between polls: the newest receipt seen per company (the cursor) and the requests left
of the day's budget come in and go out as values.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import aiohttp

from adapters.errors import AuthError, FetchError, ParseError, TransientError
from adapters.http import HttpLimits, fetch
from adapters.jsonbody import load_json
from adapters.records import KST

__all__ = [
    "MAX_PAGE_COUNT",
    "Corp",
    "DartPoll",
    "Disclosure",
    "check_status",
    "fetch_corp_codes",
    "fetch_disclosures",
    "parse_corp_codes",
    "parse_list",
    "seconds_to_next_kst_day",
    "viewer_url",
]

# OpenDART serves at most 100 filings a page.
MAX_PAGE_COUNT = 100
VIEWER = "https://dart.fss.or.kr/dsaf001/main.do?rcpNo="
_RCEPT_NO = re.compile(r"^[0-9]{14}$")
_STOCK_CODE = re.compile(r"^[0-9][0-9A-Z]{5}$")
# A correction of an earlier filing is named like it, with a bracketed mark in front:
# [기재정정], [첨부정정], [첨부추가], [변경등록], [연장결정], [발행조건확정], [정정명령부과] …
_CORRECTION = re.compile(r"^\[(?:[^\]]*정정|첨부추가|변경등록|연장결정|발행조건확정)[^\]]*\]")
# 010 unregistered key, 011 key not usable, 012 address not allowed, 901 key expired
# (the holder's details were kept past their period): all need a human.
_AUTH = {"010", "011", "012", "901"}


def viewer_url(rcept_no: str) -> str:
    """The DART viewer page of a receipt."""
    return VIEWER + rcept_no


def seconds_to_next_kst_day(now: datetime) -> float:
    """Seconds from ``now`` to the next midnight in Seoul, when OpenDART's quota resets."""
    local = now.astimezone(KST)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), KST)
    return max(1.0, (midnight - local).total_seconds())


@dataclass(frozen=True, slots=True)
class Corp:
    """A listed company as DART knows it."""

    corp_code: str
    corp_name: str
    stock_code: str


@dataclass(frozen=True, slots=True)
class Disclosure:
    """One filing of the list endpoint, its report name trimmed.

    ``rcept_no`` (14 digits) is its identity; ``rcept_dt`` the KST date it was received;
    ``flags`` the ``rm`` remarks (유 a KRX filing, 코 KOSDAQ, 채 a bond, 정 corrected
    later, 연 a joint filing …), one character each; ``correction`` is true for a
    filing that corrects an earlier one (``[기재정정]`` …).
    """

    rcept_no: str
    corp_code: str
    corp_name: str
    stock_code: str | None
    corp_cls: str
    report_nm: str
    flr_nm: str
    rcept_dt: date
    flags: str = ""

    @property
    def url(self) -> str:
        return viewer_url(self.rcept_no)

    @property
    def correction(self) -> bool:
        return bool(_CORRECTION.match(self.report_nm))


@dataclass(frozen=True, slots=True)
class DartPoll:
    """What one poll of the list endpoint found.

    ``cursors`` holds, per company, the newest receipt listed, for the companies that
    were paged back to their old cursor (or to the start of the range); a company the
    budget cut short keeps its old cursor, so the next poll pages it again from the top
    and nothing between is skipped. ``requests`` is how many requests were made;
    ``exhausted`` says the budget ran out first; ``error`` is the failure that ended
    the poll early.
    """

    disclosures: list[Disclosure] = field(default_factory=list)
    cursors: dict[str, str] = field(default_factory=dict)
    requests: int = 0
    exhausted: bool = False
    error: FetchError | None = None


def check_status(doc: Any, now: datetime) -> bool:
    """Raise the error family for a failed answer; False for ``013`` (no data).

    ``020`` (over the day's request limit) is transient until the next KST day,
    ``800`` (maintenance) transient; a refused key is an :class:`AuthError`; any other
    status a :class:`ParseError` with OpenDART's message.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("status"), str):
        raise ParseError("dart_parse", "an answer without a status")
    status = doc["status"]
    message = str(doc.get("message") or "").strip()[:200]
    if status == "000":
        return True
    if status == "013":
        return False
    if status in _AUTH:
        raise AuthError(f"dart_{status}", f"OpenDART refused the key ({status}: {message})")
    if status == "020":
        raise TransientError(
            "dart_020",
            f"OpenDART request limit reached ({message})",
            retry_after=seconds_to_next_kst_day(now),
        )
    if status == "800":
        raise TransientError("dart_800", f"OpenDART under maintenance ({message})")
    raise ParseError(f"dart_{status}"[:32], f"OpenDART status {status}: {message}")


def _text(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    return value.strip() if isinstance(value, str) else ""


def _disclosure(row: Any) -> Disclosure:
    if not isinstance(row, dict):
        raise ParseError("dart_parse", "a list entry that is not an object")
    rcept_no = _text(row, "rcept_no")
    if not _RCEPT_NO.match(rcept_no):
        raise ParseError("dart_parse", f"a receipt number that is not 14 digits: {rcept_no!r}")
    try:
        received = datetime.strptime(_text(row, "rcept_dt"), "%Y%m%d").date()
    except ValueError:
        raise ParseError("dart_parse", f"receipt {rcept_no}: rcept_dt is not YYYYMMDD") from None
    stock = _text(row, "stock_code")
    return Disclosure(
        rcept_no=rcept_no,
        corp_code=_text(row, "corp_code"),
        corp_name=_text(row, "corp_name"),
        stock_code=stock if _STOCK_CODE.match(stock) else None,
        corp_cls=_text(row, "corp_cls"),
        report_nm=" ".join(_text(row, "report_nm").split()),
        flr_nm=_text(row, "flr_nm"),
        rcept_dt=received,
        flags=_text(row, "rm"),
    )


def parse_list(doc: Any, now: datetime) -> tuple[list[Disclosure], int]:
    """The filings of one ``list.json`` answer and its ``total_page`` (0 for ``013``)."""
    if not check_status(doc, now):
        return [], 0
    rows = doc.get("list")
    if not isinstance(rows, list):
        raise ParseError("dart_parse", "status 000 without a list")
    total = doc.get("total_page")
    pages = total if isinstance(total, int) and total >= 0 else 1
    return [_disclosure(row) for row in rows], pages


def _query_url(base: str, endpoint: str, params: Mapping[str, str | int]) -> str:
    return f"{base.rstrip('/')}/{endpoint}?{urlencode(params)}"


async def _get_json(session: aiohttp.ClientSession, url: str, limits: HttpLimits) -> Any:
    response = await fetch(session, url, limits=limits, accept="application/json")
    text = response.body.decode("utf-8", errors="replace")
    return load_json(text, error_key="dart_parse", expected="an OpenDART answer")


async def fetch_disclosures(
    session: aiohttp.ClientSession,
    base_url: str,
    api_key: str,
    corp_codes: Sequence[str],
    cursors: Mapping[str, str],
    *,
    now: datetime,
    first_since: date,
    budget: int,
    types: Sequence[str] = (),
    limits: HttpLimits = HttpLimits(),  # noqa: B008 (frozen, so one shared default is safe)
    page_count: int = MAX_PAGE_COUNT,
) -> DartPoll:
    """Every filing of ``corp_codes`` newer than their cursors, using at most ``budget``
    requests.

    A company is paged from its cursor's receipt date (``first_since`` without one) to
    today (KST), ``page_count`` filings a page, until the page after the one holding its
    cursor, or the last page: however many filings arrived since the last poll, none is
    skipped (the list is newest first, and a filing arriving while we page only pushes
    the older ones down, to be listed twice, never missed). With ``types`` (``pblntf_ty``: A
    periodic, B major events, I exchange filings …) each type is its own query and
    cursor (``corp_code:type``). A failed request (:func:`check_status`) ends the poll
    with ``error`` set: what was found before it is returned, and only the companies
    paged to the end move their cursors.
    """
    page_count = max(1, min(page_count, MAX_PAGE_COUNT))
    today = now.astimezone(KST).date()
    found: dict[str, Disclosure] = {}
    moved: dict[str, str] = {}
    requests = 0
    queries = [(code, ty) for code in corp_codes for ty in (types or [""])]
    for corp_code, ty in queries:
        key = f"{corp_code}:{ty}" if ty else corp_code
        cursor = cursors.get(key)
        since = first_since
        if cursor:
            since = min(datetime.strptime(cursor[:8], "%Y%m%d").date(), today)
        newest: str | None = None
        page, pages, cursor_page = 1, 1, 0
        while page <= pages:
            if requests >= budget:
                return DartPoll(list(found.values()), _kept(moved), requests, exhausted=True)
            params: dict[str, str | int] = {
                "crtfc_key": api_key,
                "corp_code": corp_code,
                "bgn_de": since.strftime("%Y%m%d"),
                "end_de": today.strftime("%Y%m%d"),
                "page_no": page,
                "page_count": page_count,
            }
            if ty:
                params["pblntf_ty"] = ty
            requests += 1
            try:
                doc = await _get_json(session, _query_url(base_url, "list.json", params), limits)
                rows, pages = parse_list(doc, now)
            except FetchError as exc:
                return DartPoll(list(found.values()), _kept(moved), requests, error=exc)
            if page == 1 and rows:
                newest = rows[0].rcept_no
            for row in rows:
                found.setdefault(row.rcept_no, row)
                if row.rcept_no == cursor and not cursor_page:
                    cursor_page = page
            # One page past the cursor's: within a day the list is in receipt order
            # only roughly (a KRX filing, numbered 8…, can sit among later ones), so a
            # filing near a page's end is not taken as proof that the rest is old.
            if not rows or (cursor_page and page > cursor_page):
                break
            page += 1
        moved[key] = newest or cursor or ""
    return DartPoll(list(found.values()), _kept(moved), requests)


def _kept(moved: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in moved.items() if value}


def parse_corp_codes(body: bytes, wanted: Sequence[str], now: datetime) -> dict[str, Corp]:
    """The companies of the ``wanted`` stock codes in a ``corpCode.xml`` answer.

    The answer is a zip holding ``CORPCODE.xml`` (tens of megabytes, every company
    filing on DART); an error comes as JSON or XML with a status instead.
    """
    if not body.startswith(b"PK"):
        text = body.decode("utf-8", errors="replace").lstrip("\ufeff \r\n\t")
        if text.startswith("<"):
            try:
                root = ElementTree.fromstring(text)
            except ElementTree.ParseError:
                raise ParseError("dart_parse", "corpCode.xml: neither a zip nor XML") from None
            doc: Any = {child.tag: (child.text or "") for child in root}
        else:
            doc = load_json(text, error_key="dart_parse", expected="the corp-code file")
        check_status(doc, now)
        raise ParseError("dart_parse", "corpCode.xml: a status but no zip")
    want = set(wanted)
    corps: dict[str, Corp] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            names = archive.namelist()
            if not names:
                raise ParseError("dart_parse", "corpCode.xml: an empty zip")
            with archive.open(names[0]) as xml:
                # iterparse keeps memory flat over the whole file: each company's
                # element is dropped once read.
                for _, element in ElementTree.iterparse(xml):
                    if element.tag != "list":
                        continue
                    stock = (element.findtext("stock_code") or "").strip()
                    if stock in want:
                        corps[stock] = Corp(
                            corp_code=(element.findtext("corp_code") or "").strip(),
                            corp_name=(element.findtext("corp_name") or "").strip(),
                            stock_code=stock,
                        )
                    element.clear()
    except (zipfile.BadZipFile, ElementTree.ParseError) as exc:
        raise ParseError("dart_parse", f"corpCode.xml: {type(exc).__name__}") from exc
    return corps


async def fetch_corp_codes(
    session: aiohttp.ClientSession,
    base_url: str,
    api_key: str,
    stock_codes: Sequence[str],
    *,
    now: datetime,
    limits: HttpLimits = HttpLimits(),  # noqa: B008 (frozen, so one shared default is safe)
) -> dict[str, Corp]:
    """Look up the companies of ``stock_codes`` in the corp-code file (one request)."""
    url = _query_url(base_url, "corpCode.xml", {"crtfc_key": api_key})
    response = await fetch(session, url, limits=limits, accept="application/zip, */*")
    return parse_corp_codes(response.body, stock_codes, now)
