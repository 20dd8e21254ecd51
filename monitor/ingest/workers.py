"""Parsing and tagging on the machine's other cores.

Both are pure CPU work: parsing a fetched body (lxml, markup stripping, dates) and
telling which of its items fire a news rule (the matcher's automaton and the
evidence fold; most items fire nothing). A :class:`WorkerPool` of spawned worker
processes, each given the ruleset once at its start, does either:

- :meth:`WorkerPool.parse` (``http.parse_workers``): the fetched body goes out and
  the parsed feed comes back, with, when the rules judge news, the positions of the
  items that fire, in the same round trip;
- :meth:`WorkerPool.firing` (``rules.workers``, the body parsed in the event loop's
  thread): the items' texts go out and the positions come back.

The poll then tags and clusters only the firing items in the event loop (the story
clusters stay there: they are the state every poll shares). A tagging is never
pickled (one costs more to move than to make again).

Both are asked before the poll's transaction, so no database connection waits on a
worker. The pool holds one call per worker at a time (the rest wait in the event
loop, holding nothing), so a call handed to it starts at once: a parse's
``parse_timeout`` counts its parse, not its wait for a worker nor the workers' start.
A worker that dies breaks the pool: its call raises (the poll fails as a transient
``internal`` failure and is retried at its back-off, nothing of it stored) and the
next call starts a fresh pool. A parse past its timeout, or whose poll is
cancelled, takes its worker with it: the pool is stopped outright, so that a body
that takes a worker minutes cannot hold the polls behind it, and the other workers'
parses, cut short, finish in a thread of this process instead (within their own
timeout).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
import weakref
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from multiprocessing import get_context

from adapters.feed import ParsedFeed, parse_feed
from adapters.records import RawItem
from monitor.identity import external_id, nfc
from monitor.rules.engine import firing_positions
from monitor.rules.model import Ruleset

_RULESET: Ruleset | None = None
# Linux's prctl option: the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> None:
    """Make this worker end when ``parent`` does, however it ends.

    A daemon killed outright (SIGKILL, the OOM killer) cannot stop its pool, and a
    worker blocked on its queue never notices: it would live on, holding the daemon's
    standard error open. Linux has the parent-death signal for this; the standard
    library has no wrapper for prctl, hence ctypes. Elsewhere the pool's own shutdown
    is all there is.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)


def _warm(ruleset: Ruleset | None, parent: int) -> None:
    """A worker's start: end with the daemon, keep the ruleset, compile its matcher."""
    global _RULESET
    _die_with(parent)
    _RULESET = ruleset
    if ruleset is not None:
        firing_positions(ruleset, [("", "", None)], source=None, source_type=None)


def _firing(
    texts: Sequence[tuple[str, str, str | None]], source: str | None, source_type: str | None
) -> list[int]:
    if _RULESET is None:
        raise RuntimeError("tagging worker started without its ruleset")
    return firing_positions(_RULESET, texts, source=source, source_type=source_type)


def _parse(
    body: bytes,
    content_type: str | None,
    fetched_at: datetime,
    judge: tuple[str, str | None] | None,
) -> tuple[ParsedFeed, list[int] | None]:
    parsed = parse_feed(body, content_type=content_type, fetched_at=fetched_at)
    if judge is None or not parsed.items:
        return parsed, None if judge is None else []
    return parsed, _firing(_texts(parsed.items), *judge)


def _texts(items: Sequence[RawItem]) -> list[tuple[str, str, str | None]]:
    return [(item.title, item.summary, item.language) for item in items]


def firing_ids(items: Sequence[RawItem], positions: Sequence[int]) -> set[str]:
    """The external ids (as :func:`monitor.db.repo.insert_items` computes them) of the
    items at ``positions``."""
    return {
        external_id(guid=item.guid, url=item.url, title=nfc(item.title), summary=nfc(item.summary))
        for item in (items[n] for n in positions)
    }


def usable_workers(wanted: int, cpu_count: int | None = None) -> int:
    """How many of ``wanted`` workers to start: at most one fewer than the CPUs (the
    event loop keeps one), so none, tagging in-process, on a machine with one CPU."""
    cpus = os.cpu_count() if cpu_count is None else cpu_count
    return max(0, min(wanted, (cpus or 1) - 1))


class WorkerPool:
    """Spawned worker processes that parse feed bodies and tell which items fire a
    rule (see the module). ``ruleset`` None: the rules judge no news, the workers only
    parse; ``parses`` false: they only tag (:meth:`firing`)."""

    def __init__(self, ruleset: Ruleset | None, workers: int, *, parses: bool = False) -> None:
        if workers < 1:
            raise ValueError(f"a worker pool needs a worker, got {workers}")
        if ruleset is None and not parses:
            raise ValueError("a worker pool that neither parses nor tags has nothing to do")
        self.ruleset = ruleset
        self.workers = workers
        self.parses = parses
        # One call a worker in the pool (see the module).
        self._free = asyncio.Semaphore(workers)
        self._executor: ProcessPoolExecutor | None = None
        self._ready: list[Future[None]] = []
        # Executors stopped outright for a parse given up (see the module).
        self._given_up: weakref.WeakSet[ProcessPoolExecutor] = weakref.WeakSet()

    @property
    def tags(self) -> bool:
        """Whether the workers tell which items fire (the rules judge news)."""
        return self.ruleset is not None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=get_context("spawn"),
                initializer=_warm,
                initargs=(self.ruleset, os.getpid()),
            )
            # Each worker's start (imports, the matcher: a second or so), which a
            # parse waits for before its timeout starts.
            self._ready = [self._executor.submit(_started) for _ in range(self.workers)]
        return self._executor

    def start(self) -> None:
        """Start the workers now, not at the first call."""
        self._pool()

    async def _until_started(self) -> None:
        """Wait for the workers to have started (raises BrokenProcessPool when one died
        starting)."""
        for future in self._ready:
            if not future.done():
                await asyncio.shield(asyncio.wrap_future(future))

    async def parse(
        self,
        body: bytes,
        *,
        content_type: str | None,
        fetched_at: datetime,
        source: str,
        source_type: str | None,
        parse_timeout: float | None = None,
    ) -> tuple[ParsedFeed, set[str] | None]:
        """``body`` parsed as :func:`adapters.feed.parse_feed` does, and the external
        ids of its items that fire a news rule (None: not told, the event loop tags
        them all).

        Raises what parse_feed raises (``ParseError``), ``TimeoutError`` when the
        worker took over ``parse_timeout`` s (its wait for a free worker and the
        workers' start not counted; the pool is stopped), and ``BrokenProcessPool``
        when a worker died; the next call starts afresh.
        """
        judge = (source, source_type) if self.tags else None
        submitted: Future[tuple[ParsedFeed, list[int] | None]] | None = None
        async with self._free:
            pool = self._pool()
            try:
                await self._until_started()
                # (submit itself raises BrokenProcessPool once the pool knows it is broken)
                submitted = pool.submit(_parse, body, content_type, fetched_at, judge)
                # Shielded: the executor's future is never cancelled from here. Python
                # 3.11's pool, stopped with a cancelled call in it, loses its manager
                # thread to InvalidStateError (CPython gh-107219, fixed in 3.12).
                answer = asyncio.shield(asyncio.wrap_future(submitted))
                parsed, positions = await asyncio.wait_for(answer, parse_timeout)
            except BrokenProcessPool:
                self._forget(pool)
                if pool not in self._given_up:
                    raise
            except (TimeoutError, asyncio.CancelledError):
                if submitted is not None and not submitted.done():
                    self._give_up(pool)
                raise
            else:
                return parsed, None if positions is None else firing_ids(parsed.items, positions)
        # Stopped for another poll's body: this one was never the trouble. Parsed here,
        # outside the workers' turns, in the time it would have had there.
        here = asyncio.to_thread(parse_feed, body, content_type=content_type, fetched_at=fetched_at)
        return await asyncio.wait_for(here, parse_timeout), None

    async def firing(
        self, items: Sequence[RawItem], *, source: str, source_type: str | None
    ) -> set[str]:
        """The external ids (as :func:`monitor.db.repo.insert_items` computes them) of
        those of ``items`` that fire a news rule.

        Raises ``BrokenProcessPool`` when a worker died; the next call starts afresh.
        """
        if not self.tags:
            raise RuntimeError("this pool's workers do not tag")
        if not items:
            return set()
        async with self._free:
            pool = self._pool()
            try:
                await self._until_started()
                submitted = pool.submit(_firing, _texts(items), source, source_type)
                # Shielded as in parse; a tagging cancelled runs to its (short) end.
                positions = await asyncio.shield(asyncio.wrap_future(submitted))
            except BrokenProcessPool:
                self._forget(pool)
                raise
        return firing_ids(items, positions)

    def _forget(self, pool: ProcessPoolExecutor) -> None:
        if self._executor is pool:
            self._executor = None
            # Not cancel_futures: a cancelled call would look like its poll cancelled.
            pool.shutdown(wait=False)

    def _give_up(self, pool: ProcessPoolExecutor) -> None:
        """Stop ``pool``'s workers outright: one of them is parsing a body whose poll
        has given up on it (ProcessPoolExecutor cannot stop one task, nor one worker,
        hence its processes, a private attribute). The other workers' calls fail with
        BrokenProcessPool and parse in this process (:meth:`parse`)."""
        self._given_up.add(pool)
        processes = getattr(pool, "_processes", None) or {}
        for process in list(processes.values()):
            process.kill()
        self._forget(pool)

    def worker_pids(self) -> list[int]:
        """The process ids of the running workers (none before the first use)."""
        executor = self._executor
        processes = getattr(executor, "_processes", None) or {}
        return sorted(processes)

    def close(self) -> None:
        """Stop the workers (waits for what they are doing, a poll's worth at most)."""
        pool, self._executor = self._executor, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    async def aclose(self) -> None:
        """:meth:`close` from the event loop: the pool is let go here, its shutdown
        waited for in a thread (a call made meanwhile starts a pool of its own)."""
        pool, self._executor = self._executor, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)


def _started() -> None:
    """What :meth:`WorkerPool.start` gives each worker: nothing but its start."""


def worker_pool(
    ruleset: Ruleset | None, *, parse_workers: int = 0, tag_workers: int = 0, start: bool = True
) -> WorkerPool | None:
    """A pool (see :func:`usable_workers`), or None when there are to be no workers:
    the event loop's thread then parses every body and the event loop tags every new
    item itself. ``start``: its workers start now (a daemon's), else at its first use
    (a burst command, whose cycle may have nothing to parse: every feed answering 304).

    ``parse_workers`` (``http.parse_workers``): workers that parse bodies, and tag
    their items in the same round trip when ``ruleset`` is given (the rules judge
    news); ``tag_workers`` (``rules.workers``): workers that tag items parsed here.
    The pool has the larger of the two counts.
    """
    wanted = max(parse_workers, tag_workers if ruleset is not None else 0)
    count = usable_workers(wanted)
    if count < 1:
        return None
    pool = WorkerPool(ruleset, count, parses=parse_workers > 0)
    if start:
        pool.start()
    return pool
