"""Helpers for the outbox, dispatcher and ``kmon alerts`` tests.

``ScriptedChannel`` implements our own ``Channel`` protocol (it stands in for the
interface, not for Slack or SMTP, whose tests talk to real local servers); the clock
is a mutable fake so that no test sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from monitor.alerting import AlertSettings
from monitor.alerts.message import AlertMessage, Sent
from monitor.alerts.outbox import enqueue
from monitor.db.schema import Delivery, SignalRow
from monitor.timefmt import KST

SM = async_sessionmaker[AsyncSession]

# A Wednesday, 10:00 KST.
T0 = datetime(2025, 6, 18, 1, 0, tzinfo=UTC)


def kst(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A Korean wall-clock time, as UTC."""
    return datetime(year, month, day, hour, minute, tzinfo=KST).astimezone(UTC)


class FakeClock:
    """``clock()`` is ``now``; tests move it with :meth:`advance` or assignment."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


Outcome = Sent | BaseException


class ScriptedChannel:
    """A channel that records every message it is given and answers from a script:
    each send takes the next entry (a ``Sent`` to return, an exception to raise);
    when the script is empty it answers ``Sent("ok")``. ``block`` makes a send hang
    after recording (a process that dies before it can mark the rows)."""

    def __init__(self, name: str = "chat", script: Iterable[Outcome] = ()) -> None:
        self.name = name
        self.script: deque[Outcome] = deque(script)
        self.attempts: list[AlertMessage] = []
        self.sent: list[AlertMessage] = []
        self.block: asyncio.Event | None = None
        self.closed = False
        self._changed = asyncio.Event()

    async def send(self, message: AlertMessage) -> Sent:
        self.attempts.append(message)
        self._changed.set()
        if self.block is not None:
            await self.block.wait()
        await asyncio.sleep(0)  # let a concurrent dispatcher interleave
        outcome = self.script.popleft() if self.script else Sent("ok")
        if isinstance(outcome, BaseException):
            raise outcome
        self.sent.append(message)
        self._changed.set()
        return outcome

    async def wait_for(self, *, attempts: int = 0, sent: int = 0) -> None:
        """Return once this many sends were tried (and this many succeeded)."""
        while len(self.attempts) < attempts or len(self.sent) < sent:
            self._changed.clear()
            await self._changed.wait()

    async def close(self) -> None:
        self.closed = True

    def sent_signal_ids(self) -> list[int]:
        return [s.id for m in self.sent for s in m.signals]


_serial = itertools.count(1)


def signal_row(
    *,
    kind: str = "news",
    rule_id: str = "ai-policy",
    severity: str = "warning",
    subject: str = "naver",
    tickers: Sequence[str] = ("035420",),
    headline: str | None = None,
    event_time: datetime = T0,
    explanation: dict[str, Any] | None = None,
    created_at: datetime | None = None,
) -> SignalRow:
    """A signal as the rules store it (not yet in a session)."""
    n = next(_serial)
    return SignalRow(
        kind=kind,
        rule_id=rule_id,
        severity=severity,
        subject=subject,
        tickers=f" {' '.join(tickers)} " if tickers else " ",
        headline=f"네이버 AI 정책 소식 {n}" if headline is None else headline,
        event_time=event_time,
        created_at=created_at or event_time,
        dedup_key=f"{kind}:{rule_id}:test-{n}",
        explanation=explanation if explanation is not None else {"title": f"소식 {n}"},
    )


async def store(sm: SM, settings: AlertSettings, *rows: SignalRow, now: datetime) -> int:
    """Insert ``rows`` and enqueue their deliveries in one transaction, as the pipeline
    does; return what :func:`enqueue` returned."""
    async with sm.begin() as session:
        session.add_all(rows)
        await session.flush()
        return await enqueue(session, rows, settings, now=now)


async def deliveries(sm: SM) -> list[Delivery]:
    async with sm() as session:
        return list((await session.scalars(select(Delivery).order_by(Delivery.id))).all())


def settings(**data: Any) -> AlertSettings:
    """Alert settings from plain data; channels default to console ones named by the
    routes (the dispatcher under test is given its own channel objects)."""
    if "channels" not in data:
        names = {c for r in data.get("routes", []) for c in r["channels"]}
        if digest := data.get("digest"):
            names.add(digest["channel"])
        data["channels"] = {n: {"type": "console"} for n in sorted(names) or ["chat"]}
    return AlertSettings.model_validate(data)
