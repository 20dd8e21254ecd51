"""Turns at the database: how many polls may be in their store transaction at once,
and the dispatcher's rounds ahead of the polls that wait for one.

A poll holds a turn from the first statement of its store to the commit; in a flood
of on-topic items that is tens of milliseconds of tagging and clustering each. There
are fewer turns than connections (SQLite's one, or PostgreSQL's ``pool_size`` with the
overflow left free), and the dispatcher takes none: on SQLite it gets the connection
next, after the poll inside. A dispatcher round has several transactions, though
(the claim, one per message, the closing one), and between two of them the next poll
would get in. So from the moment a round is called for (:meth:`StoreTurns.hold_back`,
when a commit wakes the dispatcher) to the end of that round (:meth:`StoreTurns.round`),
polls wait to start their store: the round's transactions wait for no poll but those
already inside. Polls are held back for at most ``hold`` seconds a round, so that a
slow channel cannot stall ingestion, and when a round ends every poll that waited
goes, even if the next round begins at once. The daemon gives the dispatcher its
rounds on both databases; on PostgreSQL it also keeps the turns few while the rules
judge news (monitor/service/runtime.store_turns).

asyncio's own primitives suffice (a semaphore for the turns, an event for the
hold); no library offers "these waiters yield to that one" on a semaphore.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

# The longest a dispatcher round keeps polls from starting their store: a round's own
# database work to a fast channel takes tens of milliseconds; a slow channel's sends
# need no database, and ingestion must not wait for them.
ROUND_HOLD = 0.25


class StoreTurns:
    """``async with turns:`` is a poll's turn at its store transaction; ``async with
    turns.round():`` a dispatcher round, ahead of the polls not yet inside."""

    def __init__(self, turns: int, *, hold: float = ROUND_HOLD) -> None:
        if turns < 1:
            raise ValueError(f"need turns >= 1, got {turns}")
        self.turns = turns
        self.hold = hold
        self._turns = asyncio.Semaphore(turns)
        self._open = asyncio.Event()
        self._open.set()
        self._lapse: asyncio.TimerHandle | None = None
        self._in_round = False

    @property
    def held_back(self) -> bool:
        """Whether polls now wait for a round before their store."""
        return not self._open.is_set()

    async def __aenter__(self) -> None:
        await self._turns.acquire()
        try:
            await self._open.wait()
        except BaseException:
            self._turns.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._turns.release()

    def hold_back(self) -> None:
        """A round is about to start: polls not yet inside wait for it from now, for
        ``hold`` seconds at most. A round in progress has had its hold already."""
        if self._in_round or self._lapse is not None:
            return
        self._open.clear()
        self._lapse = asyncio.get_running_loop().call_later(self.hold, self._reopen)

    @contextlib.asynccontextmanager
    async def round(self) -> AsyncIterator[None]:
        """A dispatcher round: polls held back until it ends (``hold`` at most since
        :meth:`hold_back`, or since the round began)."""
        self.hold_back()
        self._in_round = True
        try:
            yield
        finally:
            self._in_round = False
            self._reopen()

    def _reopen(self) -> None:
        if self._lapse is not None:
            self._lapse.cancel()
            self._lapse = None
        self._open.set()
