"""A loopback farm of growing RSS feeds: one aiohttp server, many paths.

Feed ``n`` lives at ``/feed/{n}.xml``. It gains an item every ``grow_every`` seconds
(each feed at its own phase, so that the farm grows steadily rather than in steps) and
serves its newest ``window`` items, with an ETag that changes with them and a 304 for
a matching If-None-Match. Every ``on_topic_every``-th item is policy news that the
default rules raise a signal for, one story each, with a marker (``F0012K0034``) that
tells which item a message carries; the others are news the rules pass over.

The farm keeps a request log (feed, wall-clock time, status) and every item it put in
a 200 answer, so that a test can hold what a database stored against what was served.
:meth:`FeedFarm.freeze` stops the growth, so that a last round of polls can take in
everything there is.

PYTEST_DONT_REWRITE: the benchmark in bench/ imports this module too.
"""

from __future__ import annotations

import asyncio
import bisect
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.feeds import Entry, rss

__all__ = ["MARKER", "FarmRequest", "FeedFarm", "farm_item", "marker_of"]

# A Korean ministry, a region and a policy theme make news the default rules raise a
# signal for; enumerating their combinations (and an amount) keeps every headline its
# own story for the clustering.
_BODIES = (
    "과기정통부",
    "기획재정부",
    "산업통상자원부",
    "금융위원회",
    "국토교통부",
    "행정안전부",
    "교육부",
    "중소벤처기업부",
    "보건복지부",
    "고용노동부",
    "국방부",
    "문화체육관광부",
)
_PLACES = ("부산", "광주", "대구", "대전", "울산", "세종", "강원", "전북", "제주", "충남", "경북")
_THEMES = (
    "소버린 AI",
    "AI 데이터센터",
    "GPU 확보",
    "인공지능 기본법 시행령",
    "국가 AI 컴퓨팅센터",
    "AI 인재 양성",
    "독자 AI 파운데이션 모델",
)
_ACTS = ("예산 편성", "추진", "입법예고", "계획 발표", "지원 확대", "사업 선정")
_SYLLABLES = "퀑뷁쀍똠퓽햏겗뫵쉙쓔뛟꿻쮸섌"  # syllables no Korean word is made of
# Everyday news: no theme of the rules in it.
_PLAIN = (
    "주말 전국 맑고 일교차 커",
    "프로야구 개막전 매진 행렬",
    "가을 단풍 절정 이번 주말",
    "고속도로 귀성길 정체 시작",
    "지역 축제 관람객 10만 명 돌파",
)
MARKER = re.compile(r"F(\d{4})K(\d{4})")
BASE_URL = "https://farm.example.kr"


def marker_of(feed: int, index: int) -> str:
    return f"F{feed:04d}K{index:04d}"


@dataclass(frozen=True, slots=True)
class FarmRequest:
    feed: int
    at: float  # time.time() when the request arrived
    status: int


def farm_item(feed: int, index: int, on_topic_every: int, born: float) -> tuple[Entry, bool]:
    """The ``index``-th item of ``feed`` (born at ``born``) and whether it is on topic."""
    guid = f"{BASE_URL}/{feed}/{index}"
    published = datetime.fromtimestamp(born, UTC) - timedelta(minutes=1)
    on_topic = on_topic_every > 0 and (feed + index) % on_topic_every == 0
    if on_topic:
        pick = random.Random(feed * 100_003 + index)
        # A project name of its own keeps two headlines that share the rest apart.
        name = "".join(pick.choice(_SYLLABLES) for _ in range(3))
        title = (
            f"{pick.choice(_BODIES)}, {pick.choice(_PLACES)} '{name}' "
            f"{pick.choice(_THEMES)} {pick.randint(100, 999)}억원 "
            f"{pick.choice(_ACTS)} {marker_of(feed, index)}"
        )
    else:
        title = f"{_PLAIN[(feed + index) % len(_PLAIN)]} {marker_of(feed, index)}"
    entry = Entry(title=title, link=guid, guid=guid, published=published)
    return entry, on_topic


class FeedFarm:
    """``feeds`` growing feeds on 127.0.0.1 (see the module docstring)."""

    def __init__(
        self,
        feeds: int,
        *,
        grow_every: float,
        window: int = 30,
        initial: int = 3,
        on_topic_every: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.feeds = feeds
        self.grow_every = grow_every
        self.window = window
        self.initial = initial
        self.on_topic_every = on_topic_every
        self.clock = clock
        self.started = clock()
        self.frozen_at: float | None = None
        self.requests: list[FarmRequest] = []
        # The same log by feed (request times, in order), and each feed's last 304:
        # what the waits of a test read, at every request.
        self.times: dict[int, list[float]] = {n: [] for n in range(feeds)}
        self.last_not_modified: dict[int, float] = {}
        # guid -> on topic, for every item put in a 200 answer.
        self.served: dict[str, bool] = {}
        # (feed, count) -> the document and its items' (guid, on topic).
        self._documents: dict[tuple[int, int], tuple[bytes, list[tuple[str, bool]]]] = {}
        self._arrived = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/feed/{n}.xml", self._feed)
        self._server = TestServer(self.app, host="127.0.0.1")

    async def start(self) -> None:
        await self._server.start_server()

    async def close(self) -> None:
        await self._server.close()

    def url(self, feed: int) -> str:
        return str(self._server.make_url(f"/feed/{feed}.xml"))

    async def arrived(self) -> None:
        """Return at the next request."""
        self._arrived.clear()
        await self._arrived.wait()

    def freeze(self) -> float:
        """Stop the growth; return the moment."""
        self.frozen_at = self.clock()
        return self.frozen_at

    def count(self, feed: int, at: float) -> int:
        """How many items ``feed`` has had by ``at``."""
        if self.frozen_at is not None:
            at = min(at, self.frozen_at)
        phase = feed / self.feeds * self.grow_every
        return self.initial + max(0, int((at - self.started + phase) // self.grow_every))

    def born(self, feed: int, index: int) -> float:
        phase = feed / self.feeds * self.grow_every
        return self.started + max(0, index - self.initial + 1) * self.grow_every - phase

    def items(self, feed: int, count: int) -> list[tuple[Entry, bool]]:
        first = max(0, count - self.window)
        return [
            farm_item(feed, i, self.on_topic_every, self.born(feed, i))
            for i in reversed(range(first, count))
        ]

    async def _feed(self, request: web.Request) -> web.StreamResponse:
        now = self.clock()
        self._arrived.set()
        n = int(request.match_info["n"])
        if not 0 <= n < self.feeds:
            return web.Response(status=404)
        count = self.count(n, now)
        etag = f'"f{n}-{count}"'
        self.times[n].append(now)
        if request.headers.get("If-None-Match") == etag:
            self.requests.append(FarmRequest(n, now, 304))
            self.last_not_modified[n] = now
            return web.Response(status=304, headers={"ETag": etag})
        body, guids = self._document(n, count)
        self.requests.append(FarmRequest(n, now, 200))
        self.served.update(guids)
        return web.Response(
            body=body,
            headers={"ETag": etag, "Content-Type": "application/rss+xml; charset=utf-8"},
        )

    def _document(self, feed: int, count: int) -> tuple[bytes, list[tuple[str, bool]]]:
        if (feed, count) not in self._documents:
            items = self.items(feed, count)
            self._documents[feed, count] = (
                rss([entry for entry, _ in items]),
                [(str(entry.guid), on_topic) for entry, on_topic in items],
            )
        return self._documents[feed, count]

    # -- reading the log ---------------------------------------------------------

    def fetch_times(
        self, since: float = 0.0, until: float = float("inf")
    ) -> dict[int, list[float]]:
        """Each feed's request times within [since, until), in order."""
        return {
            n: times[bisect.bisect_left(times, since) : bisect.bisect_left(times, until)]
            for n, times in self.times.items()
        }

    def fetched_since(self, since: float, times: int = 1) -> bool:
        """Whether every feed has been asked ``times`` times since ``since``."""
        return all(len(t) - bisect.bisect_left(t, since) >= times for t in self.times.values())

    def not_modified_since(self, since: float) -> bool:
        """Whether every feed has answered a 304 since ``since``."""
        return (
            len(self.last_not_modified) == self.feeds
            and min(self.last_not_modified.values()) >= since
        )

    def on_topic_served(self) -> set[str]:
        return {guid for guid, on_topic in self.served.items() if on_topic}
