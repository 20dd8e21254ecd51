"""What every ingest stage is given: built once at start-up, passed explicitly."""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.http import HttpLimits
from monitor import schedule
from monitor.alerting import AlertSettings
from monitor.alerts.dispatch import Dispatcher
from monitor.config import SchedulerSettings, SourceConfig
from monitor.db.turns import StoreTurns
from monitor.ingest.moves import MoveFactsReader
from monitor.rules.engine import RulesEngine
from monitor.timefmt import utcnow

if TYPE_CHECKING:
    from monitor.ingest.sources import PollOutcome
    from monitor.ingest.workers import WorkerPool

T = TypeVar("T")


# How long a fetch may hold one of its host's slots before it stops counting against
# the host's limit (``http.per_host_hold``).
PER_HOST_HOLD = 10.0
# Hosts whose slots are kept at once (``http.limited_hosts``).
MAX_HOSTS = 1024


class HostSlot:
    """One poll's slot at its host: held from the start of the fetch to the end of the
    store, except while a fetch runs past ``hold`` (see :meth:`fetch`)."""

    def __init__(self, semaphore: asyncio.Semaphore, hold: float) -> None:
        self._semaphore = semaphore
        self._hold = hold
        self._held = False

    async def __aenter__(self) -> HostSlot:
        await self._semaphore.acquire()
        self._held = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._give_back()

    def _give_back(self) -> None:
        if self._held:
            self._held = False
            self._semaphore.release()

    async def fetch(self, request: Awaitable[T]) -> T:
        """Await ``request``; past ``hold`` it goes on without the slot.

        A request that slow is no burst against the host: it stops counting, so a few
        stalled sources (a slow-loris answer, a server that trickles) cannot keep that
        host's healthy sources waiting for the whole ``total_timeout``. Its result waits
        for a slot again before it is stored, which keeps the back-pressure a slow
        database puts on new fetches. A source never has two polls running (one job
        each), so the host sees at most ``limit`` fast requests plus its stalled ones.
        """
        task = asyncio.ensure_future(request)
        try:
            done, _ = await asyncio.wait({task}, timeout=self._hold)
            if not done:
                self._give_back()
                await asyncio.wait({task})
                await self._semaphore.acquire()
                self._held = True
        except BaseException:
            task.cancel()
            raise
        return task.result()


class HostLimiter:
    """At most ``limit`` polls in flight per host, so one publisher is never hammered;
    a fetch past ``hold`` seconds stops counting (:meth:`HostSlot.fetch`).

    The slots of at most ``max_hosts`` hosts are kept, the least recently asked
    forgotten first (the configured sources name far fewer). A host forgotten while
    one of its polls still runs gets fresh slots and may briefly see up to twice its
    limit; that takes more than ``max_hosts`` hosts polled in turn.
    """

    def __init__(self, limit: int, hold: float = PER_HOST_HOLD, max_hosts: int = MAX_HOSTS) -> None:
        if max_hosts < 1:
            raise ValueError(f"need max_hosts >= 1, got {max_hosts}")
        self.limit = limit
        self.hold = hold
        self.max_hosts = max_hosts
        self._semaphores: OrderedDict[str, asyncio.Semaphore] = OrderedDict()

    def __len__(self) -> int:
        return len(self._semaphores)

    def semaphore_for(self, url: str) -> asyncio.Semaphore:
        """The slots of ``url``'s host, shared by every source on it."""
        host = (urlsplit(url).hostname or "").lower()
        semaphore = self._semaphores.get(host)
        if semaphore is None:
            semaphore = self._semaphores[host] = asyncio.Semaphore(self.limit)
            while len(self._semaphores) > self.max_hosts:
                self._semaphores.popitem(last=False)
        else:
            self._semaphores.move_to_end(host)
        return semaphore

    def for_url(self, url: str) -> HostSlot:
        """A slot at ``url``'s host, to use as ``async with``."""
        return HostSlot(self.semaphore_for(url), self.hold)


def no_alerts() -> AlertSettings:
    """Alert settings that route nothing: signals are stored without deliveries."""
    return AlertSettings(enabled=False, channels={}, routes=[])


@dataclass
class PollContext:
    """Everything a poll needs, built once at start-up and passed explicitly.

    ``rules`` judges what is stored (``RulesEngine.off()`` when rules are switched
    off); ``alerts`` says which deliveries a signal gets, in the same transaction;
    ``dispatcher`` sends them (the daemon runs it; burst commands once);
    ``dart_sources`` the settings of the dart sources, with their tickers resolved;
    ``workers`` the worker processes that parse fetched bodies and tell which items
    fire a rule (None: a thread of this process parses, the event loop tags every new
    item itself).
    """

    sessionmaker: async_sessionmaker[AsyncSession]
    http: aiohttp.ClientSession
    limits: HttpLimits
    scheduling: SchedulerSettings
    host_limiter: HostLimiter
    clock: Callable[[], datetime] = utcnow
    uniform: schedule.Uniform = random.uniform
    observers: list[Callable[[PollOutcome], None]] = field(default_factory=list)
    rules: RulesEngine = field(default_factory=RulesEngine.off)
    alerts: AlertSettings = field(default_factory=no_alerts)
    dispatcher: Dispatcher | None = None
    bars: MoveFactsReader = field(default_factory=MoveFactsReader)
    # What the config says of each dart source (its key, tickers, budget), by name.
    dart_sources: dict[str, SourceConfig] = field(default_factory=dict)
    # This process as a holder of leases (monitor/db/leases.py): its id, how long a
    # claim holds, and how long at most to wait at random before claiming.
    replica: str = "local"
    lease: float = 120.0
    claim_jitter: float = 0.0
    workers: WorkerPool | None = None
    # How many polls may be in their store transaction at once: fewer than the
    # database's connections, so that the dispatcher's claims and marks never queue
    # behind a flood of polls for one (SQLite has one connection); the dispatcher's
    # rounds go ahead of the polls waiting for a turn (monitor/db/turns.py).
    store_turns: StoreTurns = field(default_factory=lambda: StoreTurns(1))

    def wake_dispatcher(self) -> None:
        """After a commit that wrote deliveries: send them now, not at the idle poll."""
        if self.dispatcher is not None:
            self.dispatcher.wake()
