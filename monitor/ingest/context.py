"""What every ingest stage is given: built once at start-up, passed explicitly."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.http import HttpLimits
from monitor import schedule
from monitor.alerting import AlertSettings
from monitor.alerts.dispatch import Dispatcher
from monitor.config import SchedulerSettings
from monitor.ingest.moves import MoveFactsReader
from monitor.rules.engine import RulesEngine
from monitor.timefmt import utcnow

if TYPE_CHECKING:
    from monitor.ingest.sources import PollOutcome


class HostLimiter:
    """At most ``limit`` polls in flight per host, so one publisher is never hammered."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._semaphores: dict[str, asyncio.Semaphore] = {}

    def for_url(self, url: str) -> asyncio.Semaphore:
        host = (urlsplit(url).hostname or "").lower()
        semaphore = self._semaphores.get(host)
        if semaphore is None:
            semaphore = self._semaphores[host] = asyncio.Semaphore(self.limit)
        return semaphore


def no_alerts() -> AlertSettings:
    """Alert settings that route nothing: signals are stored without deliveries."""
    return AlertSettings(enabled=False, channels={}, routes=[])


@dataclass
class PollContext:
    """Everything a poll needs, built once at start-up and passed explicitly.

    ``rules`` judges what is stored (``RulesEngine.off()`` when rules are switched
    off); ``alerts`` says which deliveries a signal gets, in the same transaction;
    ``dispatcher`` sends them (the daemon runs it; burst commands once).
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

    def wake_dispatcher(self) -> None:
        """After a commit that wrote deliveries: send them now, not at the idle poll."""
        if self.dispatcher is not None:
            self.dispatcher.wake()
