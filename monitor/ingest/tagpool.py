"""Tagging on the machine's other cores: which fetched items fire a news rule.

Tagging is pure CPU work on the item's text (the matcher's automaton and the
evidence fold), and most items fire nothing. A :class:`TaggingPool` of spawned worker
processes, each given the ruleset once at its start, answers for a poll's fetched
items which ones fire (:func:`monitor.rules.engine.firing_positions`); the poll then
tags and clusters only those in the event loop (the story clusters stay there: they
are the state every poll shares). Only texts go out and positions come back, so the
pickling is a few strings per item, never a tagging.

The answer is asked for before the poll's transaction, so no database connection
waits on a worker. A worker that dies breaks the pool: the call raises (the poll fails
as a transient ``internal`` failure and is retried at its back-off, nothing of it
stored) and the next call starts a fresh pool.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

from adapters.records import RawItem
from monitor.identity import external_id, nfc
from monitor.rules.engine import firing_positions
from monitor.rules.model import Ruleset

# Polls a worker may have queued at once (beyond that they wait in the event loop,
# holding nothing): enough to keep it busy between two answers, no backlog of bodies.
QUEUED_PER_WORKER = 4

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


def _warm(ruleset: Ruleset, parent: int) -> None:
    """A worker's start: end with the daemon, keep the ruleset, compile its matcher."""
    global _RULESET
    _die_with(parent)
    _RULESET = ruleset
    firing_positions(ruleset, [("", "", None)], source=None, source_type=None)


def _firing(
    texts: Sequence[tuple[str, str, str | None]], source: str | None, source_type: str | None
) -> list[int]:
    if _RULESET is None:
        raise RuntimeError("tagging worker started without its ruleset")
    return firing_positions(_RULESET, texts, source=source, source_type=source_type)


def usable_workers(wanted: int, cpu_count: int | None = None) -> int:
    """How many of ``wanted`` workers to start: at most one fewer than the CPUs (the
    event loop keeps one), so none, tagging in-process, on a machine with one CPU."""
    cpus = os.cpu_count() if cpu_count is None else cpu_count
    return max(0, min(wanted, (cpus or 1) - 1))


class TaggingPool:
    """Spawned worker processes that tell which items fire a rule (see the module)."""

    def __init__(self, ruleset: Ruleset, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"a tagging pool needs a worker, got {workers}")
        self.ruleset = ruleset
        self.workers = workers
        self._queued = asyncio.Semaphore(workers * QUEUED_PER_WORKER)
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=get_context("spawn"),
                initializer=_warm,
                initargs=(self.ruleset, os.getpid()),
            )
        return self._executor

    def start(self) -> None:
        """Start the workers now (their imports and the matcher take a second or so),
        not at the first poll."""
        pool = self._pool()
        for _ in range(self.workers):
            pool.submit(_firing, [], None, None)

    async def firing(
        self, items: Sequence[RawItem], *, source: str, source_type: str | None
    ) -> set[str]:
        """The external ids (as :func:`monitor.db.repo.insert_items` computes them) of
        those of ``items`` that fire a news rule.

        Raises ``BrokenProcessPool`` when a worker died; the next call starts afresh.
        """
        if not items:
            return set()
        texts = [(item.title, item.summary, item.language) for item in items]
        async with self._queued:
            pool = self._pool()
            loop = asyncio.get_running_loop()
            try:
                positions = await loop.run_in_executor(pool, _firing, texts, source, source_type)
            except BrokenProcessPool:
                if self._executor is pool:
                    self._executor = None
                    pool.shutdown(wait=False, cancel_futures=True)
                raise
        return {
            external_id(
                guid=item.guid, url=item.url, title=nfc(item.title), summary=nfc(item.summary)
            )
            for item in (items[n] for n in positions)
        }

    def worker_pids(self) -> list[int]:
        """The process ids of the running workers (none before the first use)."""
        executor = self._executor
        processes = getattr(executor, "_processes", None) or {}
        return sorted(processes)

    def close(self) -> None:
        """Stop the workers (waits for what they are doing, a poll's worth at most)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def tagging_pool(ruleset: Ruleset, workers: int) -> TaggingPool | None:
    """A started pool of ``workers`` processes (see :func:`usable_workers`), or None
    when there are to be none: the event loop then tags every new item itself."""
    count = usable_workers(workers)
    if count < 1:
        return None
    pool = TaggingPool(ruleset, count)
    pool.start()
    return pool
