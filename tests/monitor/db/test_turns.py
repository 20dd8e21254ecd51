"""Turns at the database: at most ``turns`` polls in their store at once, held back
for a dispatcher round, for ``hold`` seconds at most, and let go when it ends."""

from __future__ import annotations

import asyncio

import pytest

from monitor.db.turns import StoreTurns


class _Poll:
    """A poll's store, as a task: ``entered`` once it has its turn, then waits for
    ``leave``."""

    def __init__(self, turns: StoreTurns) -> None:
        self.entered = asyncio.Event()
        self.leave = asyncio.Event()
        self.task = asyncio.create_task(self._run(turns))

    async def _run(self, turns: StoreTurns) -> None:
        async with turns:
            self.entered.set()
            await self.leave.wait()

    async def done(self) -> None:
        self.leave.set()
        await self.task


async def test_no_more_polls_inside_than_turns() -> None:
    turns = StoreTurns(2)
    polls = [_Poll(turns) for _ in range(3)]
    async with asyncio.timeout(5):
        await polls[0].entered.wait()
        await polls[1].entered.wait()
        assert not polls[2].entered.is_set()
        await polls[0].done()
        await polls[2].entered.wait()
        await polls[1].done()
        await polls[2].done()


async def test_polls_waiting_for_a_round_go_when_it_ends_though_the_next_begins() -> None:
    turns = StoreTurns(1, hold=60.0)
    async with asyncio.timeout(5):
        async with turns.round():
            poll = _Poll(turns)
            # Its turn is free, but the round holds it back.
            for _ in range(5):
                await asyncio.sleep(0)
            assert not poll.entered.is_set()
        async with turns.round():  # the next round, at once
            await poll.entered.wait()
            assert turns.held_back  # later polls wait for this round
        await poll.done()
    assert not turns.held_back


async def test_a_round_holds_polls_back_for_hold_seconds_at_most() -> None:
    turns = StoreTurns(1, hold=0.05)
    async with asyncio.timeout(5), turns.round():
        poll = _Poll(turns)
        await poll.entered.wait()  # the hold lapsed; the round goes on
        assert not turns.held_back
        turns.hold_back()  # a wake-up during the round: it has had its hold
        assert not turns.held_back
        await poll.done()


async def test_a_wake_up_holds_polls_back_until_its_round_ends() -> None:
    turns = StoreTurns(1, hold=60.0)
    turns.hold_back()
    async with asyncio.timeout(5):
        poll = _Poll(turns)
        for _ in range(5):
            await asyncio.sleep(0)
        assert not poll.entered.is_set()
        async with turns.round():
            assert not poll.entered.is_set()
        await poll.entered.wait()
        await poll.done()


def test_at_least_one_turn() -> None:
    with pytest.raises(ValueError, match="turns >= 1"):
        StoreTurns(0)
