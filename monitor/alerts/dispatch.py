"""The dispatcher: claims due deliveries, sends them, and marks what happened.

One round (:meth:`Dispatcher.run_once`):

1. claim, in one short transaction: up to ``batch`` pending rows that are due and not
   leased get a lease (``claimed_until``). On PostgreSQL the
   SELECT skips rows another dispatcher is claiming (``FOR UPDATE SKIP LOCKED``); on
   SQLite (one writer, no row locks) the UPDATE repeats the guard and ``RETURNING``
   says which rows this dispatcher got;
2. plan, in the same transaction: rows are grouped by route and channel into
   messages of at most ``max_per_message`` signals (held rows make one digest); a
   route whose throttle is used up gets its rows back, due when its window frees,
   and they go out folded into the next allowed message;
3. send, outside any transaction: channels concurrently, each channel's messages in
   order, each counted as an attempt of its rows just before it starts; a transient
   failure pauses that channel for the rest of the round;
4. mark each message once its answer is known: sent, due again after a backoff, or
   dead with the reason. The mark is written in the transaction that counts the
   channel's next attempt, before that send starts, and the round's last marks (and
   the messages given back unsent) in one closing transaction, which also reads when
   the next row is due: one transaction per message and two more a round. Polls
   that have not begun their store wait for the round (``turns``,
   :mod:`monitor.db.turns`), so that on SQLite's one connection these transactions
   wait for no poll but one already inside.

Crashes: a process that dies between 3 and 4 leaves its rows leased; when the lease
runs out they are claimed again and sent once more (with the same message key):
the one duplicate the design allows. A channel's next send starts only once the
previous one's mark is committed, so a crash, or marks that fail to commit, leaves at
most one such message per channel. Nothing else can send a row twice, and nothing
pending is ever dropped: every path ends in ``sent``, ``dead`` or a later ``due_at``.
Only a send that started counts as an attempt, so a process that keeps dying costs
the rows it claimed but never got to nothing: ``max_attempts`` abandons only a row
whose own sends never got an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from adapters.errors import FetchError, PermanentError, TransientError
from monitor.alerting import AlertSettings
from monitor.alerts import DEAD, PENDING, SENT
from monitor.alerts.charting import ALERT_SIZE, CHART_KINDS, DIGEST_SIZE, signal_chart
from monitor.alerts.message import (
    AlertMessage,
    AlertSignal,
    Channel,
    ChartImage,
    Sent,
    move_figures,
    shows_charts,
)
from monitor.alerts.outbox import DIGEST_HELD, HELD_THROTTLE, alert_signal
from monitor.chart import RENDER_TIMEOUT, render_async
from monitor.chart import available as chart_available
from monitor.db.schema import Delivery, SignalRow
from monitor.db.turns import StoreTurns
from monitor.schedule import EQUAL_JITTER, Uniform, retry_seconds
from monitor.timefmt import utcnow

log = structlog.get_logger("kmon.alerts")

# A server's Retry-After is obeyed up to this; a hostile header cannot park a channel.
RETRY_AFTER_MAX = 24 * 3600.0
# With nothing due, look again this often anyway: other processes (``kmon alerts
# retry``, another replica) add due rows without waking this one.
IDLE_POLL = 60.0
# After a round that claimed nothing although something seemed due: a pause, so a
# disagreement between the query and the clock can never spin the loop.
MIN_GAP = 0.1
# After a round crashed (the database is down): try again this much later.
CRASH_RETRY = 5.0
# The server's answer kept on a sent row, and the error on a failed one.
RESPONSE_MAX = 500
ERROR_MAX = 1000
# Charts in one message at most (one per ticker of its move signals).
CHARTS_MAX = 6


def message_key(ids: Iterable[int]) -> str:
    """A stable id for the message made of these deliveries: a resend after a crash
    claims the same rows and so carries the same key (the email Message-ID)."""
    digest = hashlib.sha256(",".join(str(i) for i in sorted(ids)).encode()).hexdigest()
    return f"kmon-{digest[:32]}"


def retry_delay(
    attempts: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None,
    uniform: Uniform = random.uniform,
) -> float:
    """Seconds before the next try after ``attempts`` failed ones (1-based).

    ``base·2^(attempts-1)`` capped at ``cap``, with equal jitter, and never sooner
    than the server's Retry-After (:func:`monitor.schedule.retry_seconds`).
    """
    return retry_seconds(
        base,
        attempts,
        backoff_max=cap,
        spread=EQUAL_JITTER,
        retry_after=retry_after,
        retry_after_max=RETRY_AFTER_MAX,
        uniform=uniform,
    )


@dataclass(frozen=True)
class MessageOutcome:
    """What became of one planned message.

    ``status``: ``sent``; ``retry`` (a transient failure, due again at
    ``next_attempt_at``); ``dead``; ``throttled`` (the route's throttle is used up,
    due when its window frees); ``paused`` (an earlier message to the channel failed
    in this round). ``signals`` counts every delivery the message covers, ``folded``
    those beyond the listed ones.
    """

    channel: str
    route: str
    key: str
    status: str
    signals: int
    folded: int = 0
    digest: bool = False
    attempts: int = 0
    duration: float = 0.0
    detail: str | None = None
    error_key: str | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    chart_failures: int = 0


@dataclass(frozen=True)
class _Row:
    """A claimed delivery and its signal, read in the claim transaction."""

    id: int
    route: str
    channel: str
    held: str | None
    attempts: int
    due_at: datetime
    signal: AlertSignal

    @property
    def digest(self) -> bool:
        return self.held in DIGEST_HELD


@dataclass
class _Message:
    """Rows to send as one message: the first ``listed`` are shown, the rest folded."""

    route: str
    channel: str
    rows: list[_Row]
    listed: int
    digest: bool
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = message_key(r.id for r in self.rows)

    @property
    def attempts(self) -> int:
        """The attempt this send is (1-based): one more than its rows have had."""
        return max(r.attempts for r in self.rows) + 1

    def to_message(self, now: datetime) -> AlertMessage:
        return AlertMessage(
            key=self.key,
            route=self.route,
            signals=tuple(r.signal for r in self.rows[: self.listed]),
            folded=len(self.rows) - self.listed,
            digest=self.digest,
            created_at=now,
        )


@dataclass(frozen=True)
class _Mark:
    """What a message's answer writes on its rows (column → value), and the outcome
    reported once that is committed."""

    ids: tuple[int, ...]
    values: tuple[tuple[str, Any], ...]
    outcome: MessageOutcome


@dataclass
class _Round:
    """What the claim transaction decided: messages per channel, and what to log."""

    claimed: int = 0
    by_channel: dict[str, list[_Message]] = field(default_factory=dict)
    settled: list[MessageOutcome] = field(default_factory=list)


class Dispatcher:
    """Sends due deliveries to their channels; one per process (several may share a
    PostgreSQL database). ``channels`` are built and closed by the caller.

    ``names`` maps tickers to display names for move titles. ``observers`` are called
    with every :class:`MessageOutcome` (metrics). ``chart_within``: how long a chart
    is waited for before its alert goes without it. ``turns``: the polls' turns at the
    database, which a round goes ahead of (:mod:`monitor.db.turns`).
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        channels: Mapping[str, Channel],
        settings: AlertSettings,
        clock: Callable[[], datetime] = utcnow,
        uniform: Uniform = random.uniform,
        *,
        names: Mapping[str, str] | None = None,
        observers: Sequence[Callable[[MessageOutcome], None]] = (),
        crash_delay: float = CRASH_RETRY,
        chart_within: float = RENDER_TIMEOUT,
        turns: StoreTurns | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.channels = dict(channels)
        self.settings = settings
        self.clock = clock
        self.uniform = uniform
        self.names = dict(names or {})
        self.observers = list(observers)
        self.crash_delay = crash_delay
        self.chart_within = chart_within
        self.turns = turns
        # Set while :meth:`run` runs: only then is a round sure to follow a wake-up.
        self._running = False
        self._wake = asyncio.Event()
        # Set while :meth:`run` waits between rounds (tests await it instead of sleeping).
        self.idle = asyncio.Event()
        # Consecutive failed messages per channel, to log only when health flips.
        self._errors: dict[str, int] = {}
        # A channel's Retry-After: until then nothing goes to it, in any round.
        self._held_until: dict[str, datetime] = {}
        # Charts drawn this round, shared by the channels that show them; emptied at
        # the round's end.
        self._charts: dict[tuple[int, bool], asyncio.Task[ChartImage | None]] = {}
        self._charts_available: bool | None = None

    def wake(self) -> None:
        """Start a round now: call after a transaction that enqueued deliveries commits.
        While :meth:`run` runs, polls that have not begun their store wait for that round."""
        self._wake.set()
        if self._running and self.turns is not None:
            self.turns.hold_back()

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until ``stop`` is set: each waits for the next due row, ``wake()``, or
        ``stop``. A round that crashes (the database is down) is logged in one line
        and tried again after ``crash_delay``; the loop itself never ends early.

        A round in progress when ``stop`` is set finishes first (sends are bounded by
        the channels' timeouts); cancelling it instead is safe: leased rows are sent
        again after the lease.
        """
        self._running = True
        try:
            await self._rounds(stop)
        finally:
            self._running = False

    async def _rounds(self, stop: asyncio.Event) -> None:
        while True:
            # Once more after ``stop`` when something was committed meanwhile: the last
            # polls' alerts go out now rather than at the next start.
            final = stop.is_set()
            if final and not self._wake.is_set():
                break
            self._wake.clear()
            try:
                claimed, next_due = await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("dispatch_crashed", exception=f"{type(exc).__name__}: {exc}")
                delay = self.crash_delay
            else:
                delay = self._delay(claimed, next_due)
            if final:
                break
            self.idle.set()
            await self._sleep(stop, delay)
            self.idle.clear()

    def _delay(self, claimed: int, next_due: datetime | None) -> float:
        if next_due is None:
            return IDLE_POLL
        seconds = (next_due - self.clock()).total_seconds()
        if seconds <= 0 and claimed == 0:
            return MIN_GAP
        return min(max(seconds, 0.0), IDLE_POLL)

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        if seconds <= 0 or stop.is_set() or self._wake.is_set():
            return
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    async def run_once(self) -> datetime | None:
        """One round: claim, send, mark. Returns when the next row is due (None when
        nothing is pending), the lease end of rows another dispatcher holds included."""
        return (await self._round())[1]

    async def _round(self) -> tuple[int, datetime | None]:
        ahead = self.turns.round() if self.turns is not None else contextlib.nullcontext()
        async with ahead:
            return await self._round_ahead()

    async def _round_ahead(self) -> tuple[int, datetime | None]:
        now = self.clock()
        self._charts = {}
        async with self.sessionmaker.begin() as session:
            plan = await self._claim_and_plan(session, now)
        for outcome in plan.settled:
            self._report(outcome)
        marks: list[_Mark] = []
        failure: BaseException | None = None
        if plan.by_channel:
            # New sends start only in the first half of the lease, so that one that
            # starts late still ends before another dispatcher may claim its rows.
            cutoff = now + timedelta(seconds=self.settings.dispatch.lease / 2)
            results = await asyncio.gather(
                *(self._send_all(name, msgs, cutoff) for name, msgs in plan.by_channel.items()),
                return_exceptions=True,
            )
            # The round's charts (at most batch × CHARTS_MAX PNGs) go with it, rather
            # than stay until the next round, which may be an idle poll away.
            self._charts = {}
            for result in results:
                if isinstance(result, BaseException):
                    failure = failure or result
                else:
                    marks.extend(result)
        # The other channels' answers are written even when one channel's failed:
        # their rows are not sent again after the lease.
        next_due = await self._close(marks)
        if failure is not None:
            raise failure
        return plan.claimed, next_due

    async def _close(self, marks: Sequence[_Mark]) -> datetime | None:
        """The round's closing transaction: its last marks, then when the next row is due."""
        async with self.sessionmaker.begin() as session:
            await self._write(session, marks)
            next_due = await self._next_due(session, self.clock())
        self._reported(marks)
        return next_due

    async def _write(self, session: AsyncSession, marks: Sequence[_Mark]) -> None:
        """Marks with the same values (messages given back until the same time, above
        all) in one UPDATE; each sent message's own key and answer in one of its own."""
        ids: dict[tuple[tuple[str, Any], ...], list[int]] = {}
        for mark in marks:
            ids.setdefault(mark.values, []).extend(mark.ids)
        for values, rows in ids.items():
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_(rows))
                .values(dict(values))
                .execution_options(synchronize_session=False)
            )

    def _reported(self, marks: Sequence[_Mark]) -> None:
        for mark in marks:
            self._report(mark.outcome)

    # --- 1 and 2: claim and plan, in one transaction ----------------------------------

    async def _claim_and_plan(self, session: AsyncSession, now: datetime) -> _Round:
        dispatch = self.settings.dispatch
        rows = await self._claim(session, now)
        plan = _Round(claimed=len(rows))
        groups: dict[tuple[str, str, bool], list[_Row]] = {}
        for row in rows:
            if row.attempts >= dispatch.max_attempts:
                # Sent that often without an answer: the process died while sending
                # it each time. Stop before it takes the daemon down again.
                reason = f"abandoned after {row.attempts} attempts without an answer"
                await self._mark_dead(session, [row], reason)
                plan.settled.append(self._settled(row, DEAD, reason))
            elif row.channel not in self.channels:
                reason = f"channel {row.channel!r} is not configured (removed from the settings?)"
                await self._mark_dead(session, [row], reason)
                plan.settled.append(self._settled(row, DEAD, reason))
            else:
                groups.setdefault((row.route, row.channel, row.digest), []).append(row)
        # Per throttled (route, channel): when its messages in the window went out,
        # oldest first, this round's planned ones counted as sent now.
        windows: dict[tuple[str, str], list[datetime]] = {}
        for (route_name, channel, digest), group in groups.items():
            route = self.settings.route(route_name)
            throttle = route.throttle if route is not None else None
            pair = (route_name, channel)
            allowance: int | None = None
            if throttle is not None:
                if pair not in windows:
                    since = now - timedelta(seconds=throttle.per)
                    windows[pair] = await _messages_sent_since(session, *pair, since)
                times = windows[pair]
                allowance = throttle.max - len(times)
                if allowance <= 0:
                    # Free again when enough of the window's messages have aged out.
                    frees_at = times[len(times) - throttle.max] + timedelta(seconds=throttle.per)
                    await self._defer(session, group, frees_at)
                    plan.settled.append(self._deferred(group, digest, frees_at, "throttled"))
                    continue
            messages = _split(
                group,
                per_message=dispatch.max_per_digest if digest else dispatch.max_per_message,
                one=digest,
                allowance=allowance,
            )
            if throttle is not None:
                windows[pair].extend([now] * len(messages))
            plan.by_channel.setdefault(channel, []).extend(
                _Message(route_name, channel, rows, listed, digest) for rows, listed in messages
            )
        for queue in plan.by_channel.values():
            queue.sort(key=lambda m: (m.rows[0].due_at, m.rows[0].id))
        return plan

    async def _claim(self, session: AsyncSession, now: datetime) -> list[_Row]:
        dispatch = self.settings.dispatch
        claimable = (
            Delivery.status == PENDING,
            Delivery.due_at <= now,
            or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now),
        )
        due = (
            select(Delivery.id)
            .where(*claimable)
            .order_by(Delivery.due_at, Delivery.id)
            .limit(dispatch.batch)
        )
        if session.get_bind().dialect.name == "postgresql":
            # Rows another dispatcher is claiming are locked: skip them, take others.
            due = due.with_for_update(skip_locked=True)
        # Two statements, not UPDATE … WHERE id IN (SELECT … LIMIT … FOR UPDATE):
        # PostgreSQL may rescan such a subquery per row, and each rescan skips the
        # rows this very statement already updated, so the LIMIT stops limiting.
        candidates = list((await session.scalars(due)).all())
        if not candidates:
            return []
        result = await session.execute(
            update(Delivery)
            # The guard again: on SQLite (no row locks) a row that another process
            # claimed since the SELECT is not updated, and RETURNING tells ours.
            .where(Delivery.id.in_(candidates), *claimable)
            .values(claimed_until=now + timedelta(seconds=dispatch.lease))
            .returning(Delivery.id)
            .execution_options(synchronize_session=False)
        )
        ids = list(result.scalars().all())
        if not ids:
            return []
        loaded = await session.execute(
            select(Delivery, SignalRow)
            .join(SignalRow, SignalRow.id == Delivery.signal_id)
            .where(Delivery.id.in_(ids))
            .order_by(Delivery.due_at, Delivery.id)
        )
        return [
            _Row(
                id=d.id,
                route=d.route,
                channel=d.channel,
                held=d.held,
                attempts=d.attempts,
                due_at=d.due_at,
                signal=self._shown(s),
            )
            for d, s in loaded.all()
        ]

    def _shown(self, row: SignalRow) -> AlertSignal:
        """What a channel shows of ``row``; a bug in reading its explanation must not
        stop every round (the claim would fail for ever), so it falls back to the
        headline and is logged."""
        try:
            return alert_signal(row, self.names)
        except Exception:
            log.exception("alert_signal_failed", signal=row.id)
            return AlertSignal(
                id=row.id,
                kind=row.kind,
                rule_id=row.rule_id,
                severity=row.severity,
                subject=row.subject,
                title=row.headline,
                event_time=row.event_time,
            )

    # --- 3 and 4: send, then mark ------------------------------------------------------

    async def _send_all(self, name: str, messages: list[_Message], cutoff: datetime) -> list[_Mark]:
        """A channel's messages in order; after a transient failure the rest wait for
        the same retry time, and after a Retry-After every later round waits for it
        too (a 429 is about the channel, not one message). Messages
        not started by ``cutoff`` are given back, due now, for the next round.
        Returns the marks not yet written, for the round's closing transaction."""
        held = self._held_until.get(name)
        paused_until = held if held is not None and held > self.clock() else None
        marks: list[_Mark] = []
        for message in messages:
            if paused_until is None and self.clock() >= cutoff:
                paused_until = self.clock()
            if paused_until is not None:
                outcome = self._deferred(message.rows, message.digest, paused_until, "paused")
                values = (("claimed_until", None), ("due_at", paused_until))
                marks.append(_Mark(tuple(r.id for r in message.rows), values, outcome))
                continue
            answered = await self._send(self.channels[name], message, marks)
            marks = [answered]
            if answered.outcome.status == "retry":
                paused_until = answered.outcome.next_attempt_at
        return marks

    def _charts_on(self) -> bool:
        """Whether charts can be drawn here; without the ``charts`` extra, alerts go out
        in words, and one line says so."""
        if self._charts_available is None:
            self._charts_available = chart_available()
            if not self._charts_available:
                log.info("charts_off", reason="matplotlib is not installed (the charts extra)")
        return self._charts_available

    async def _charted(self, message: AlertMessage) -> tuple[AlertMessage, int]:
        """``message`` with a chart per ticker of its move signals, and how many could
        not be drawn (logged; the message goes out without them)."""
        firsts: dict[str, AlertSignal] = {}
        for signal in message.signals:
            if signal.kind in CHART_KINDS:
                firsts.setdefault(signal.subject, signal)
        wanted = list(firsts.values())[:CHARTS_MAX]
        if not wanted or not self._charts_on():
            return message, 0
        tasks = []
        for signal in wanted:
            key = (signal.id, message.digest)
            if key not in self._charts:
                self._charts[key] = asyncio.create_task(self._draw(signal, message.digest))
            tasks.append(self._charts[key])
        drawn = await asyncio.gather(*tasks)
        charts = tuple(c for c in drawn if c is not None)
        return replace(message, charts=charts), len(drawn) - len(charts)

    async def _draw(self, signal: AlertSignal, digest: bool) -> ChartImage | None:
        started = time.perf_counter()
        try:
            async with self.sessionmaker() as session:
                chart = await signal_chart(
                    session,
                    signal.id,
                    names=self.names,
                    size=DIGEST_SIZE if digest else ALERT_SIZE,
                )
            if chart is None:
                return None
            rendered = await render_async(chart, within=self.chart_within)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Never a reason to hold an alert back: it goes out in words alone.
            log.warning(
                "chart_failed", signal=signal.id, error=f"{type(exc).__name__}: {exc}"[:ERROR_MAX]
            )
            return None
        log.debug("chart_drawn", signal=signal.id, ms=round((time.perf_counter() - started) * 1e3))
        words = " ".join(move_figures(signal.move)) if signal.move is not None else ""
        caption = f"Chart: {signal.subject} over its session with the KOSPI. {words}".strip()
        return ChartImage(signal.id, signal.subject, rendered.png, caption)

    async def _send(self, channel: Channel, message: _Message, marks: Sequence[_Mark]) -> _Mark:
        """Send ``message`` once ``marks`` (the channel's previous answer) and its
        attempt are committed; returns its own mark, not yet written."""
        started = time.perf_counter()
        outgoing = message.to_message(self.clock())
        not_drawn = 0
        if shows_charts(channel):
            outgoing, not_drawn = await self._charted(outgoing)
        await self._started(message, marks)
        try:
            sent = await channel.send(outgoing)
        except asyncio.CancelledError:
            raise  # leased: sent again after the lease, which is the allowed resend
        except PermanentError as exc:
            return self._dead(message, exc, started)
        except FetchError as exc:
            return self._retry(message, exc, started)
        except Exception as exc:
            # A channel bug: retried like a transient failure (and so dead-lettered
            # after max_attempts), with the traceback logged once here.
            log.exception("channel_crashed", channel=message.channel, message=message.key)
            internal = TransientError("internal", f"{type(exc).__name__}: {exc}")
            return self._retry(message, internal, started)
        mark = self._sent(message, sent, started)
        failures = not_drawn + sent.image_failures
        if failures:
            return replace(mark, outcome=replace(mark.outcome, chart_failures=failures))
        return mark

    async def _started(self, message: _Message, marks: Sequence[_Mark]) -> None:
        """Count the attempt before the send begins: if the process dies during the
        send, the rows show it; rows claimed alongside that never started do not.
        ``marks``, the answers before it, go in the same transaction."""
        async with self.sessionmaker.begin() as session:
            await self._write(session, marks)
            await session.execute(
                update(Delivery)
                .where(Delivery.id.in_([r.id for r in message.rows]))
                .values(attempts=Delivery.attempts + 1, last_attempt_at=self.clock())
                .execution_options(synchronize_session=False)
            )
        self._reported(marks)

    @staticmethod
    def _mark(message: _Message, outcome: MessageOutcome, **values: Any) -> _Mark:
        ids = tuple(r.id for r in message.rows)
        return _Mark(ids, tuple(sorted({"claimed_until": None, **values}.items())), outcome)

    def _sent(self, message: _Message, sent: Sent, started: float) -> _Mark:
        outcome = self._outcome(message, SENT, started, detail=sent.detail)
        return self._mark(
            message,
            outcome,
            status=SENT,
            sent_at=self.clock(),
            message_key=message.key,
            response=sent.detail[:RESPONSE_MAX],
        )

    def _retry(self, message: _Message, exc: FetchError, started: float) -> _Mark:
        dispatch = self.settings.dispatch
        attempts = message.attempts
        if attempts >= dispatch.max_attempts:
            return self._dead(message, exc, started, gave_up=True)
        now = self.clock()
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        if retry_after is not None:
            until = now + timedelta(seconds=min(retry_after, RETRY_AFTER_MAX))
            self._held_until[message.channel] = until
        due = now + timedelta(
            seconds=retry_delay(
                attempts,
                base=dispatch.backoff_base,
                cap=dispatch.backoff_max,
                retry_after=retry_after,
                uniform=self.uniform,
            )
        )
        outcome = self._outcome(
            message, "retry", started, error_key=exc.key, error=str(exc), next_attempt_at=due
        )
        return self._mark(message, outcome, due_at=due, last_error=f"{exc.key}: {exc}"[:ERROR_MAX])

    def _dead(
        self, message: _Message, exc: FetchError, started: float, *, gave_up: bool = False
    ) -> _Mark:
        reason = f"{exc.key}: {exc}"
        if gave_up:
            reason = f"gave up after {message.attempts} attempts: {reason}"
        outcome = self._outcome(message, DEAD, started, error_key=exc.key, error=reason)
        return self._mark(message, outcome, status=DEAD, last_error=reason[:ERROR_MAX])

    async def _mark_dead(self, session: AsyncSession, rows: Sequence[_Row], reason: str) -> None:
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_([r.id for r in rows]))
            .values(status=DEAD, claimed_until=None, last_error=reason[:ERROR_MAX])
            .execution_options(synchronize_session=False)
        )

    async def _defer(
        self,
        session: AsyncSession,
        rows: Sequence[_Row],
        due: datetime,
        held: str | None = HELD_THROTTLE,
    ) -> None:
        """Give claimed rows back unsent, due at ``due`` (no attempt was counted)."""
        values: dict[str, Any] = {"due_at": due, "claimed_until": None}
        if held is not None:
            # A quiet-hours digest stays a digest when a throttle delays it.
            values["held"] = func.coalesce(Delivery.held, held)
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_([r.id for r in rows]))
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    async def _next_due(self, session: AsyncSession, now: datetime) -> datetime | None:
        due = await session.scalar(
            select(func.min(Delivery.due_at)).where(
                Delivery.status == PENDING,
                or_(Delivery.claimed_until.is_(None), Delivery.claimed_until < now),
            )
        )
        leased = await session.scalar(
            select(func.min(Delivery.claimed_until)).where(
                Delivery.status == PENDING, Delivery.claimed_until >= now
            )
        )
        times = [t for t in (due, leased) if t is not None]
        return min(times) if times else None

    # --- outcomes and the log ----------------------------------------------------------

    def _outcome(
        self, message: _Message, status: str, started: float, **fields: Any
    ) -> MessageOutcome:
        return MessageOutcome(
            channel=message.channel,
            route=message.route,
            key=message.key,
            status=status,
            signals=len(message.rows),
            folded=len(message.rows) - message.listed,
            digest=message.digest,
            attempts=message.attempts,
            duration=time.perf_counter() - started,
            **fields,
        )

    @staticmethod
    def _settled(row: _Row, status: str, reason: str) -> MessageOutcome:
        return MessageOutcome(
            channel=row.channel,
            route=row.route,
            key=message_key([row.id]),
            status=status,
            signals=1,
            digest=row.digest,
            attempts=row.attempts,
            error=reason,
        )

    @staticmethod
    def _deferred(rows: Sequence[_Row], digest: bool, due: datetime, status: str) -> MessageOutcome:
        return MessageOutcome(
            channel=rows[0].channel,
            route=rows[0].route,
            key=message_key(r.id for r in rows),
            status=status,
            signals=len(rows),
            digest=digest,
            next_attempt_at=due,
        )

    def _report(self, outcome: MessageOutcome) -> None:
        _log_outcome(outcome, self._errors)
        for observer in self.observers:
            observer(outcome)


def _split(
    rows: list[_Row], *, per_message: int, one: bool, allowance: int | None
) -> list[tuple[list[_Row], int]]:
    """Messages (rows, how many listed) for one route and channel.

    Chunks of ``per_message``; a digest (``one``) is a single message. When a throttle
    allows fewer messages than there are chunks, the last allowed message takes all
    the rest, listing ``per_message`` and folding the others: the throttle bounds
    messages, never signals.
    """
    step = len(rows) if one else per_message
    chunks = [rows[i : i + step] for i in range(0, len(rows), step)]
    if allowance is not None and len(chunks) > allowance:
        rest = [row for chunk in chunks[allowance - 1 :] for row in chunk]
        chunks = [*chunks[: allowance - 1], rest]
    return [(chunk, min(len(chunk), per_message)) for chunk in chunks]


async def _messages_sent_since(
    session: AsyncSession, route: str, channel: str, since: datetime
) -> list[datetime]:
    """When each message sent on (route, channel) after ``since`` went out, oldest first."""
    result = await session.scalars(
        select(func.min(Delivery.sent_at))
        .where(
            Delivery.route == route,
            Delivery.channel == channel,
            Delivery.status == SENT,
            Delivery.sent_at > since,
        )
        .group_by(Delivery.message_key)
    )
    return sorted(t for t in result.all() if t is not None)


def _log_outcome(outcome: MessageOutcome, errors: dict[str, int]) -> None:
    """One line per message; warning level only when a channel's health flips, or when
    a delivery is dead-lettered (someone should look at ``kmon alerts list``)."""
    fields: dict[str, Any] = {
        "channel": outcome.channel,
        "route": outcome.route,
        "message": outcome.key,
        "status": outcome.status,
        "signals": outcome.signals,
    }
    if outcome.folded:
        fields["folded"] = outcome.folded
    if outcome.chart_failures:
        fields["chart_failures"] = outcome.chart_failures
    if outcome.digest:
        fields["digest"] = True
    if outcome.attempts:
        fields["attempts"] = outcome.attempts
    if outcome.duration:
        fields["duration_ms"] = round(outcome.duration * 1000, 1)
    if outcome.detail is not None:
        fields["detail"] = outcome.detail[:200]
    if outcome.error_key is not None:
        fields["error_key"] = outcome.error_key
    if outcome.error is not None:
        fields["error"] = outcome.error
    if outcome.next_attempt_at is not None:
        fields["next_attempt_at"] = outcome.next_attempt_at.isoformat()
    failing = errors.get(outcome.channel, 0)
    if outcome.status == SENT:
        errors[outcome.channel] = 0
        if failing:
            log.info("delivery", transition="recovered", after_errors=failing, **fields)
        else:
            log.info("delivery", **fields)
    elif outcome.status == DEAD:
        errors[outcome.channel] = failing + 1
        log.warning("delivery", transition="dead", **fields)
    elif outcome.status == "retry":
        errors[outcome.channel] = failing + 1
        if failing:
            log.info("delivery", errors=failing + 1, **fields)
        else:
            log.warning("delivery", transition="failing", **fields)
    else:
        log.info("delivery", **fields)
