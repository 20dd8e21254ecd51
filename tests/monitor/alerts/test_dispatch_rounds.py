"""A dispatcher round's transactions on real databases: each mark goes in with the
channel's next attempt, and marks that fail to commit send nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from monitor.alerts.dispatch import Dispatcher
from monitor.alerts.message import AlertMessage, Sent
from tests.monitor.alerts.outbox_support import (
    SM,
    T0,
    FakeClock,
    ScriptedChannel,
    deliveries,
    settings,
    signal_row,
    store,
)

ONE_PER_MESSAGE = settings(
    routes=[{"name": "r", "channels": ["chat"]}], dispatch={"max_per_message": 1}
)


def dispatcher(sm: Any, channel: ScriptedChannel, clock: FakeClock, **kw: Any) -> Dispatcher:
    return Dispatcher(sm, {"chat": channel}, ONE_PER_MESSAGE, clock, lambda a, b: b, **kw)


class _FailingCommits:
    """A sessionmaker whose ``begin()`` number ``failing`` (1-based) runs its statements
    on the real database and then fails instead of committing: nothing it wrote stays."""

    def __init__(self, sm: SM, failing: int) -> None:
        self.sm = sm
        self.failing = failing
        self.begun = 0

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        self.begun += 1
        async with self.sm.begin() as session:
            yield session
            if self.begun == self.failing:
                raise ConnectionResetError("connection lost at commit")

    def __call__(self) -> Any:
        return self.sm()


class _StepChannel(ScriptedChannel):
    """Each send waits at the door until the test lets it through (``steps``)."""

    def __init__(self) -> None:
        super().__init__()
        self.steps = asyncio.Semaphore(0)
        self.at_door = 0
        self._arrived = asyncio.Event()

    async def send(self, message: AlertMessage) -> Sent:
        self.at_door += 1
        self._arrived.set()
        await self.steps.acquire()
        return await super().send(message)

    async def arrived(self, sends: int) -> None:
        """Return once this many sends have come to the door."""
        while self.at_door < sends:
            self._arrived.clear()
            await self._arrived.wait()


async def test_each_mark_is_committed_before_the_channels_next_send(sessionmaker: SM) -> None:
    clock, chat = FakeClock(), _StepChannel()
    first, second = signal_row(), signal_row()
    await store(sessionmaker, ONE_PER_MESSAGE, first, second, now=clock())
    round_ = asyncio.create_task(dispatcher(sessionmaker, chat, clock).run_once())
    await chat.arrived(1)
    chat.steps.release()  # the first message goes through
    await chat.arrived(2)  # the second is about to be sent
    by_signal = {r.signal_id: r for r in await deliveries(sessionmaker)}
    assert (by_signal[first.id].status, by_signal[first.id].attempts) == ("sent", 1)
    assert by_signal[first.id].message_key == chat.sent[0].key
    assert (by_signal[second.id].status, by_signal[second.id].attempts) == ("pending", 1)
    chat.steps.release()
    assert await round_ is None
    assert [(r.status, r.attempts) for r in await deliveries(sessionmaker)] == [("sent", 1)] * 2


async def test_marks_that_fail_to_commit_send_nothing_twice_within_the_lease(
    sessionmaker: SM,
) -> None:
    """Transactions of the round: 1 the claim, 2 the first attempt, 3 the first mark
    with the second attempt. The third fails: the first message was sent, the second
    never starts, and both stay leased."""
    clock, chat = FakeClock(), ScriptedChannel()
    first, second = signal_row(), signal_row()
    await store(sessionmaker, ONE_PER_MESSAGE, first, second, now=clock())
    failing = _FailingCommits(sessionmaker, failing=3)
    try:
        await dispatcher(failing, chat, clock).run_once()
    except ConnectionResetError:
        pass
    else:
        raise AssertionError("the round's failed commit did not end it")
    assert [[s.id for s in m.signals] for m in chat.attempts] == [[first.id]]
    rows = {r.signal_id: r for r in await deliveries(sessionmaker)}
    lease_end = T0 + timedelta(minutes=2)
    assert (rows[first.id].status, rows[first.id].attempts) == ("pending", 1)
    assert (rows[second.id].status, rows[second.id].attempts) == ("pending", 0)
    assert {r.claimed_until for r in rows.values()} == {lease_end}
    d = dispatcher(sessionmaker, chat, clock)
    clock.advance(seconds=119)
    assert await d.run_once() == lease_end  # leased: nothing goes out again yet
    assert len(chat.attempts) == 1
    clock.advance(seconds=2)
    assert await d.run_once() is None
    # The first message once more, under the same key: the one resend allowed.
    assert [[s.id for s in m.signals] for m in chat.attempts] == [
        [first.id],
        [first.id],
        [second.id],
    ]
    assert chat.attempts[0].key == chat.attempts[1].key
    assert [(r.status, r.attempts) for r in await deliveries(sessionmaker)] == [
        ("sent", 2),
        ("sent", 1),
    ]


async def test_a_closing_transaction_that_fails_leaves_the_rows_leased(sessionmaker: SM) -> None:
    clock, chat = FakeClock(), ScriptedChannel()
    await store(sessionmaker, ONE_PER_MESSAGE, signal_row(), now=clock())
    failing = _FailingCommits(sessionmaker, failing=3)  # claim, attempt, the closing one
    d = dispatcher(failing, chat, clock)
    try:
        await d.run_once()
    except ConnectionResetError:
        pass
    else:
        raise AssertionError("the round's failed commit did not end it")
    [row] = await deliveries(sessionmaker)
    assert (row.status, row.attempts, row.claimed_until) == (
        "pending",
        1,
        T0 + timedelta(minutes=2),
    )
    clock.advance(seconds=60)
    await d.run_once()
    assert len(chat.attempts) == 1
