"""A dispatcher round's transactions on real databases: each mark goes in with the
channel's next attempt, marks that fail to commit send nothing twice, and a round goes
ahead of the polls waiting for their turn at the database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from monitor.alerts.dispatch import Dispatcher
from monitor.alerts.message import AlertMessage, Sent
from monitor.db.schema import Delivery
from monitor.db.turns import StoreTurns
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


class _Recorded(ScriptedChannel):
    def __init__(self, order: list[str]) -> None:
        super().__init__()
        self.order = order

    async def send(self, message: AlertMessage) -> Sent:
        self.order.append("send")
        return await super().send(message)


async def test_a_round_goes_ahead_of_the_polls_waiting_for_a_turn(sessionmaker: SM) -> None:
    """A poll is inside its store when a commit wakes the dispatcher; another waits for
    the turn. The round (claim, two attempts, closing) comes before the waiting poll's
    store, which goes as soon as the round ends. Without the hold, on SQLite's one
    connection, the waiting poll's write would come before the round's first attempt."""
    order: list[str] = []
    clock, chat = FakeClock(), _Recorded(order)
    turns = StoreTurns(1, hold=60.0)
    d = dispatcher(sessionmaker, chat, clock, turns=turns)
    inside, leave = asyncio.Event(), asyncio.Event()

    async def poll(name: str, gate: asyncio.Event | None = None) -> None:
        async with turns, sessionmaker.begin() as session:
            await session.execute(text("SELECT 1"))
            order.append(name)
            if gate is not None:
                inside.set()
                await gate.wait()
            # A write, as a poll's store has: on SQLite it waits for the connection.
            await session.execute(
                Delivery.__table__.update().where(Delivery.id < 0).values(last_error="x")
            )

    stop = asyncio.Event()
    dispatching = asyncio.create_task(d.run(stop))
    await d.idle.wait()  # a first round found nothing
    await store(sessionmaker, ONE_PER_MESSAGE, signal_row(), signal_row(), now=clock())
    first = asyncio.create_task(poll("first", leave))
    await inside.wait()
    waiting = asyncio.create_task(poll("waiting"))
    d.wake()  # as the commit of a poll that stored deliveries does
    assert turns.held_back
    leave.set()
    async with asyncio.timeout(30):
        await asyncio.gather(first, waiting)
        stop.set()
        await dispatching
    assert order == ["first", "send", "send", "waiting"]
    assert [r.status for r in await deliveries(sessionmaker)] == ["sent", "sent"]
    assert not turns.held_back


async def test_a_wake_holds_no_poll_back_when_no_dispatcher_runs(sessionmaker: SM) -> None:
    """``kmon poll`` sends once at the end: its polls' wake-ups must not hold the
    next polls back for a round that is not coming."""
    turns = StoreTurns(1, hold=60.0)
    d = dispatcher(sessionmaker, ScriptedChannel(), FakeClock(), turns=turns)
    d.wake()
    assert not turns.held_back
    async with asyncio.timeout(5), turns:
        pass
