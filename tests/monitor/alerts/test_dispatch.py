"""The dispatcher on real databases: grouping, throttle, digests, retries, dead
letters, leases after a crash, racing dispatchers, and the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from sqlalchemy import update
from structlog.testing import capture_logs

from adapters.errors import AuthError, PermanentError, TransientError
from monitor.alerting import AlertSettings
from monitor.alerts.channels import build_channel
from monitor.alerts.dispatch import Dispatcher, MessageOutcome, message_key, retry_delay
from monitor.alerts.message import Channel, Sent
from monitor.db.engine import make_engine, make_sessionmaker
from monitor.db.schema import Delivery
from tests.monitor.alerts.outbox_support import (
    SM,
    T0,
    FakeClock,
    ScriptedChannel,
    deliveries,
    kst,
    settings,
    signal_row,
    store,
)
from tests.monitor.alerts.slack_server import SlackWebhookServer, rate_limited, refused


def dispatcher(
    sm: SM,
    alerts: AlertSettings,
    channels: Mapping[str, Channel],
    clock: FakeClock,
    **kw: Any,
) -> Dispatcher:
    # The largest jitter draw: delays are exactly the un-jittered backoff.
    kw.setdefault("uniform", lambda low, high: high)
    return Dispatcher(sm, channels, alerts, clock, **kw)


def simple(**route: Any) -> AlertSettings:
    """One route "r" to one channel "chat", with ``route``'s pacing."""
    return settings(routes=[{"name": "r", "channels": ["chat"], **route}])


async def test_due_rows_go_out_as_one_message_and_are_marked(sessionmaker: SM) -> None:
    alerts, clock, chat = simple(), FakeClock(), ScriptedChannel()
    rows = [signal_row(), signal_row(), signal_row()]
    await store(sessionmaker, alerts, *rows, now=clock())
    d = dispatcher(sessionmaker, alerts, {"chat": chat}, clock)
    assert await d.run_once() is None  # nothing left
    [message] = chat.sent
    assert [s.id for s in message.signals] == [r.id for r in rows]
    assert (message.route, message.folded, message.digest, message.test) == ("r", 0, False, False)
    stored = await deliveries(sessionmaker)
    assert message.key == message_key(r.id for r in stored)
    for row in stored:
        assert (row.status, row.sent_at, row.message_key, row.response) == (
            "sent",
            T0,
            message.key,
            "ok",
        )
        assert (row.attempts, row.claimed_until, row.last_attempt_at) == (1, None, T0)
    assert await d.run_once() is None
    assert len(chat.attempts) == 1


async def test_messages_hold_at_most_max_per_message(sessionmaker: SM) -> None:
    alerts = settings(routes=[{"name": "r", "channels": ["chat"]}], dispatch={"max_per_message": 2})
    clock, chat = FakeClock(), ScriptedChannel()
    await store(sessionmaker, alerts, *(signal_row() for _ in range(5)), now=clock())
    await dispatcher(sessionmaker, alerts, {"chat": chat}, clock).run_once()
    assert [len(m.signals) for m in chat.sent] == [2, 2, 1]
    assert len({m.key for m in chat.sent}) == 3
    assert {r.status for r in await deliveries(sessionmaker)} == {"sent"}


async def test_a_round_claims_at_most_a_batch(sessionmaker: SM) -> None:
    alerts = settings(routes=[{"name": "r", "channels": ["chat"]}], dispatch={"batch": 4})
    clock, chat = FakeClock(), ScriptedChannel()
    await store(sessionmaker, alerts, *(signal_row() for _ in range(10)), now=clock())
    d = dispatcher(sessionmaker, alerts, {"chat": chat}, clock)
    assert await d.run_once() == T0  # more is due at once
    assert await d.run_once() == T0
    assert await d.run_once() is None
    assert [len(m.signals) for m in chat.sent] == [4, 4, 2]


async def test_the_group_wait_sends_a_burst_once(sessionmaker: SM) -> None:
    alerts, clock, chat = simple(group_wait=30), FakeClock(), ScriptedChannel()
    d = dispatcher(sessionmaker, alerts, {"chat": chat}, clock)
    await store(sessionmaker, alerts, signal_row(), now=clock())
    clock.advance(seconds=10)
    await store(sessionmaker, alerts, signal_row(), now=clock())
    clock.advance(seconds=10)
    assert await d.run_once() == T0 + timedelta(seconds=30)
    assert chat.attempts == []
    clock.advance(seconds=10)
    assert await d.run_once() is None
    assert [len(m.signals) for m in chat.sent] == [2]


async def test_a_throttle_folds_the_rest_into_the_next_message(sessionmaker: SM) -> None:
    alerts = settings(
        routes=[{"name": "r", "channels": ["chat"], "throttle": {"max": 2, "per": "10m"}}],
        dispatch={"max_per_message": 3},
    )
    clock, chat = FakeClock(), ScriptedChannel()
    d = dispatcher(sessionmaker, alerts, {"chat": chat}, clock)
    window_end = T0 + timedelta(minutes=10)
    for n in range(8):  # one signal a second, each dispatched at once
        await store(sessionmaker, alerts, signal_row(), now=clock())
        next_due = await d.run_once()
        assert next_due == (None if n < 2 else window_end)
        clock.advance(seconds=1)
    assert [len(m.signals) for m in chat.sent] == [1, 1]
    held = [r for r in await deliveries(sessionmaker) if r.status == "pending"]
    assert [(r.held, r.due_at, r.attempts) for r in held] == [("throttle", window_end, 0)] * 6
    clock.now = window_end - timedelta(seconds=1)
    await d.run_once()
    assert len(chat.sent) == 2
    clock.now = window_end
    assert await d.run_once() is None
    # Two messages in the window, then one with all six: three listed, three folded.
    assert [(len(m.signals), m.folded) for m in chat.sent] == [(1, 0), (1, 0), (3, 3)]
    stored = await deliveries(sessionmaker)
    assert all(r.status == "sent" for r in stored)
    assert sum(len(m.signals) + m.folded for m in chat.sent) == len(stored) == 8
    assert {r.message_key for r in stored[2:]} == {chat.sent[2].key}
    # The window now holds the messages of T0+1s and T0+10m: the next one waits for
    # the first of them to age out.
    await store(sessionmaker, alerts, signal_row(), now=clock())
    assert await d.run_once() == T0 + timedelta(minutes=10, seconds=1)


async def test_quiet_hours_end_in_one_digest_and_critical_goes_at_once(
    sessionmaker: SM,
) -> None:
    alerts = simple(quiet_hours={"start": "22:00", "end": "07:00"})
    clock, chat = FakeClock(kst(2025, 6, 18, 23, 0)), ScriptedChannel()
    d = dispatcher(sessionmaker, alerts, {"chat": chat}, clock)
    morning = kst(2025, 6, 19, 7, 0)
    await store(sessionmaker, alerts, signal_row(severity="warning"), now=clock())
    assert await d.run_once() == morning
    clock.now = kst(2025, 6, 19, 1, 30)
    await store(sessionmaker, alerts, signal_row(severity="info"), now=clock())
    await store(sessionmaker, alerts, signal_row(severity="critical"), now=clock())
    await d.run_once()
    [urgent] = chat.sent
    assert ([s.severity for s in urgent.signals], urgent.digest) == (["critical"], False)
    clock.now = morning - timedelta(seconds=1)
    await d.run_once()
    assert len(chat.sent) == 1
    clock.now = morning
    assert await d.run_once() is None
    digest = chat.sent[1]
    assert digest.digest is True
    assert [s.severity for s in digest.signals] == ["warning", "info"]


async def test_the_daily_digest_goes_out_at_its_time(sessionmaker: SM) -> None:
    alerts = settings(
        routes=[{"name": "r", "match": {"kinds": ["move"]}, "channels": ["chat"]}],
        digest={"channel": "mail", "at": "08:00"},
    )
    clock, chat, mail = FakeClock(kst(2025, 6, 18, 9, 0)), ScriptedChannel(), ScriptedChannel()
    d = dispatcher(sessionmaker, alerts, {"chat": chat, "mail": mail}, clock)
    for hour in (9, 13, 20):
        clock.now = kst(2025, 6, 18, hour)
        await store(sessionmaker, alerts, signal_row(), signal_row(kind="move"), now=clock())
        assert await d.run_once() == kst(2025, 6, 19, 8)
    assert len(chat.sent) == 3 and mail.sent == []
    clock.now = kst(2025, 6, 19, 8)
    await d.run_once()
    [digest] = mail.sent
    assert (digest.digest, len(digest.signals), digest.route) == (True, 6, "daily-digest")


@pytest.mark.parametrize(
    ("attempts", "retry_after", "full", "half"),
    [
        (1, None, 10, 5),
        (2, None, 20, 10),
        (4, None, 80, 40),
        (9, None, 2560, 1280),
        (10, None, 3600, 1800),  # capped at backoff_max
        (200, None, 3600, 1800),
        (1, 120.0, 120, 120),  # never before Retry-After
        (6, 120.0, 320, 160),
        (1, 1e9, 86400, 86400),  # a hostile Retry-After is capped at a day
    ],
)
def test_retry_delay(attempts: int, retry_after: float | None, full: float, half: float) -> None:
    def delay(uniform: Any) -> float:
        return retry_delay(attempts, base=10, cap=3600, retry_after=retry_after, uniform=uniform)

    assert delay(lambda low, high: high) == full
    assert delay(lambda low, high: low) == max(half, min(retry_after or 0, 86400))


async def test_transient_failures_back_off_and_honour_retry_after(sessionmaker: SM) -> None:
    alerts, clock = simple(), FakeClock()
    chat = ScriptedChannel(
        script=[
            TransientError("http_429", "rate limited", http_status=429, retry_after=120),
            TransientError("http_500", "rollup_error", http_status=500),
            Sent("200 ok"),
        ]
    )
    d = dispatcher(sessionmaker, alerts, {"chat": chat}, clock)
    await store(sessionmaker, alerts, signal_row(), now=clock())
    with capture_logs() as logs:
        assert await d.run_once() == T0 + timedelta(seconds=120)  # not the 10 s backoff
        [row] = await deliveries(sessionmaker)
        assert (row.status, row.attempts, row.last_error) == (
            "pending",
            1,
            "http_429: rate limited",
        )
        clock.advance(seconds=119)
        await d.run_once()
        assert len(chat.attempts) == 1
        clock.advance(seconds=1)
        assert await d.run_once() == clock() + timedelta(seconds=20)  # 10 s · 2¹
        clock.advance(seconds=20)
        assert await d.run_once() is None
    [row] = await deliveries(sessionmaker)
    assert (row.status, row.attempts, row.response) == ("sent", 3, "200 ok")
    assert row.last_error == "http_500: rollup_error"  # kept as history
    assert len({m.key for m in chat.attempts}) == 1  # the same message each time
    lines = [(e["log_level"], e["status"], e.get("transition")) for e in logs]
    assert lines == [
        ("warning", "retry", "failing"),
        ("info", "retry", None),
        ("info", "sent", "recovered"),
    ]


async def test_a_transient_failure_pauses_the_channel_for_the_round(sessionmaker: SM) -> None:
    alerts = settings(
        routes=[{"name": "r", "channels": ["chat", "other"]}], dispatch={"max_per_message": 1}
    )
    clock = FakeClock()
    chat = ScriptedChannel(script=[TransientError("http_429", "slow down", retry_after=30)])
    other = ScriptedChannel()
    d = dispatcher(sessionmaker, alerts, {"chat": chat, "other": other}, clock)
    await store(sessionmaker, alerts, signal_row(), signal_row(), now=clock())
    await d.run_once()
    assert len(chat.attempts) == 1  # the second message was not tried
    assert len(other.sent) == 2  # another channel is not held up
    rows = [r for r in await deliveries(sessionmaker) if r.channel == "chat"]
    due = T0 + timedelta(seconds=30)
    assert [(r.status, r.attempts, r.due_at) for r in rows] == [
        ("pending", 1, due),
        ("pending", 0, due),  # given back untried: its attempt does not count
    ]
    clock.now = due
    await d.run_once()
    assert [len(m.signals) for m in chat.sent] == [1, 1]


@pytest.mark.parametrize(
    "error",
    [
        PermanentError("http_404", "HTTP 404 no_service", http_status=404),
        AuthError("http_403", "HTTP 403 invalid_token", http_status=403),
        PermanentError("smtp_550", "550 mailbox unavailable"),
    ],
)
async def test_a_permanent_failure_is_dead_lettered_with_the_reason(
    sessionmaker: SM, error: PermanentError
) -> None:
    alerts, clock = simple(), FakeClock()
    chat = ScriptedChannel(script=[error])
    d = dispatcher(sessionmaker, alerts, {"chat": chat}, clock)
    await store(sessionmaker, alerts, signal_row(), now=clock())
    with capture_logs() as logs:
        assert await d.run_once() is None
    [row] = await deliveries(sessionmaker)
    assert (row.status, row.last_error, row.claimed_until) == (
        "dead",
        f"{error.key}: {error}",
        None,
    )
    assert [(e["log_level"], e["transition"]) for e in logs] == [("warning", "dead")]
    clock.advance(hours=1)
    await d.run_once()
    assert len(chat.attempts) == 1


async def test_too_many_attempts_end_in_the_dead_letter(sessionmaker: SM) -> None:
    alerts = settings(
        routes=[{"name": "r", "channels": ["chat"]}],
        dispatch={"max_attempts": 3, "backoff_base": 1, "backoff_max": 1},
    )
    clock = FakeClock()
    chat = ScriptedChannel(script=[TransientError("timeout", "no answer in 10s")] * 5)
    d = dispatcher(sessionmaker, alerts, {"chat": chat}, clock)
    await store(sessionmaker, alerts, signal_row(), now=clock())
    for _ in range(5):
        await d.run_once()
        clock.advance(seconds=2)
    assert len(chat.attempts) == 3
    [row] = await deliveries(sessionmaker)
    assert (row.status, row.attempts) == ("dead", 3)
    assert row.last_error == "gave up after 3 attempts: timeout: no answer in 10s"


async def test_a_channel_removed_from_the_settings_dead_letters_its_rows(
    sessionmaker: SM,
) -> None:
    alerts, clock = settings(routes=[{"name": "r", "channels": ["chat", "old"]}]), FakeClock()
    await store(sessionmaker, alerts, signal_row(), now=clock())
    chat = ScriptedChannel()
    assert await dispatcher(sessionmaker, alerts, {"chat": chat}, clock).run_once() is None
    rows = {r.channel: r for r in await deliveries(sessionmaker)}
    assert rows["chat"].status == "sent"
    assert rows["old"].status == "dead"
    assert rows["old"].last_error == "channel 'old' is not configured (removed from the settings?)"


async def test_a_channel_bug_is_retried_not_fatal(sessionmaker: SM) -> None:
    alerts, clock = simple(), FakeClock()
    chat = ScriptedChannel(script=[ZeroDivisionError("oops")])
    d = dispatcher(sessionmaker, alerts, {"chat": chat}, clock)
    await store(sessionmaker, alerts, signal_row(), now=clock())
    with capture_logs():
        await d.run_once()
    [row] = await deliveries(sessionmaker)
    assert (row.status, row.last_error) == ("pending", "internal: ZeroDivisionError: oops")


async def _crash_after_sending(d: Dispatcher, channel: ScriptedChannel) -> None:
    """Run a round whose send reaches the server, then kill it before it marks."""
    channel.block = asyncio.Event()
    seen = len(channel.attempts)
    task = asyncio.create_task(d.run_once())
    await channel.wait_for(attempts=seen + 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    channel.block = None


async def test_a_crash_between_send_and_mark_resends_exactly_once(sessionmaker: SM) -> None:
    alerts, clock = simple(), FakeClock()
    await store(sessionmaker, alerts, signal_row(), signal_row(), now=clock())
    before = ScriptedChannel()
    await _crash_after_sending(dispatcher(sessionmaker, alerts, {"chat": before}, clock), before)
    assert all(r.claimed_until == T0 + timedelta(minutes=2) for r in await deliveries(sessionmaker))
    # The restarted process: the rows are leased, so nothing goes out yet.
    after = ScriptedChannel()
    d = dispatcher(sessionmaker, alerts, {"chat": after}, clock)
    clock.advance(seconds=119)
    assert await d.run_once() == T0 + timedelta(minutes=2)
    assert after.attempts == []
    clock.advance(seconds=2)
    assert await d.run_once() is None
    [resent] = after.sent
    assert resent.key == before.attempts[0].key  # recognisably the same message
    assert [s.id for s in resent.signals] == [s.id for s in before.attempts[0].signals]
    clock.advance(hours=1)
    await d.run_once()
    assert len(after.attempts) == 1
    assert [(r.status, r.attempts) for r in await deliveries(sessionmaker)] == [("sent", 2)] * 2


async def test_rows_that_keep_crashing_the_sender_are_abandoned(sessionmaker: SM) -> None:
    alerts = settings(routes=[{"name": "r", "channels": ["chat"]}], dispatch={"max_attempts": 2})
    clock, chat = FakeClock(), ScriptedChannel()
    await store(sessionmaker, alerts, signal_row(), now=clock())
    for _ in range(2):
        await _crash_after_sending(dispatcher(sessionmaker, alerts, {"chat": chat}, clock), chat)
        clock.advance(minutes=3)
    with capture_logs():
        await dispatcher(sessionmaker, alerts, {"chat": chat}, clock).run_once()
    [row] = await deliveries(sessionmaker)
    assert (row.status, row.last_error) == ("dead", "abandoned after 2 attempts without an answer")
    assert len(chat.attempts) == 2


async def test_a_crash_loop_abandons_only_the_rows_whose_sends_it_interrupted(
    sessionmaker: SM,
) -> None:
    """Every round claims both rows, and each dies during the send of the first: the
    rows claimed alongside that never started keep their attempts, so the second
    signal is not abandoned with the first after max_attempts crashes."""
    alerts = settings(
        routes=[{"name": "r", "channels": ["chat"]}],
        dispatch={"max_attempts": 2, "max_per_message": 1},
    )
    clock, chat = FakeClock(), ScriptedChannel()
    first, second = signal_row(), signal_row()
    await store(sessionmaker, alerts, first, second, now=clock())
    async with asyncio.timeout(30):  # a round with nothing left to send would hang here
        for _ in range(3):
            d = dispatcher(sessionmaker, alerts, {"chat": chat}, clock)
            await _crash_after_sending(d, chat)
            clock.advance(minutes=3)
    with capture_logs():
        await dispatcher(sessionmaker, alerts, {"chat": chat}, clock).run_once()
    rows = {r.signal_id: r for r in await deliveries(sessionmaker)}
    assert (rows[first.id].status, rows[first.id].attempts) == ("dead", 2)
    assert rows[first.id].last_error == "abandoned after 2 attempts without an answer"
    assert (rows[second.id].status, rows[second.id].attempts) == ("sent", 2)
    assert [[s.id for s in m.signals] for m in chat.attempts] == [
        [first.id],
        [first.id],
        [second.id],
        [second.id],
    ]


async def test_racing_dispatchers_never_send_a_row_twice(sessionmaker: SM, db_url: str) -> None:
    alerts = settings(
        routes=[{"name": "r", "channels": ["chat"]}],
        dispatch={"batch": 7, "max_per_message": 1},
    )
    clock = FakeClock()
    rows = [signal_row() for _ in range(60)]
    await store(sessionmaker, alerts, *rows, now=clock())
    other_engine = make_engine(db_url)
    try:
        first, second = ScriptedChannel(), ScriptedChannel()
        d1 = dispatcher(sessionmaker, alerts, {"chat": first}, clock)
        d2 = dispatcher(make_sessionmaker(other_engine), alerts, {"chat": second}, clock)
        for _ in range(20):
            await asyncio.gather(d1.run_once(), d2.run_once())
    finally:
        await other_engine.dispose()
    sent = first.sent_signal_ids() + second.sent_signal_ids()
    assert sorted(sent) == sorted(r.id for r in rows)  # all of them, each once
    assert first.sent and second.sent  # both did work
    assert {r.status for r in await deliveries(sessionmaker)} == {"sent"}


async def test_the_loop_sends_within_milliseconds_of_a_wake(sessionmaker: SM) -> None:
    alerts, clock, chat = simple(), FakeClock(), ScriptedChannel()
    d = dispatcher(sessionmaker, alerts, {"chat": chat}, clock)
    stop = asyncio.Event()
    task = asyncio.create_task(d.run(stop))
    try:
        async with asyncio.timeout(2):
            await d.idle.wait()  # the first round found nothing; the loop now idles
        assert chat.attempts == []
        await store(sessionmaker, alerts, signal_row(), now=clock())
        d.wake()
        async with asyncio.timeout(2):  # the idle poll would take a minute
            await chat.wait_for(sent=1)
    finally:
        stop.set()
        async with asyncio.timeout(2):
            await task
    assert [r.status for r in await deliveries(sessionmaker)] == ["sent"]


class _FlakySessions:
    """A sessionmaker whose first ``failures`` transactions cannot connect."""

    def __init__(self, sm: SM, failures: int) -> None:
        self.sm = sm
        self.failures = failures

    def begin(self) -> Any:
        if self.failures:
            self.failures -= 1
            raise ConnectionRefusedError("connection refused")
        return self.sm.begin()

    def __call__(self) -> Any:
        return self.sm()


async def test_the_loop_survives_a_database_outage(sessionmaker: SM) -> None:
    alerts, clock, chat = simple(), FakeClock(), ScriptedChannel()
    await store(sessionmaker, alerts, signal_row(), now=clock())
    flaky: Any = _FlakySessions(sessionmaker, failures=2)
    d = dispatcher(flaky, alerts, {"chat": chat}, clock, crash_delay=0.01)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(d.run(stop))
        try:
            async with asyncio.timeout(2):
                await chat.wait_for(sent=1)
        finally:
            stop.set()
            await task
    crashes = [e for e in logs if e["event"] == "dispatch_crashed"]
    assert [e["exception"] for e in crashes] == ["ConnectionRefusedError: connection refused"] * 2
    assert all(e["log_level"] == "error" for e in crashes)


async def test_observers_see_every_outcome(sessionmaker: SM) -> None:
    from prometheus_client import CollectorRegistry

    from monitor.service.metrics import AlertMetrics

    alerts, clock = simple(), FakeClock()
    chat = ScriptedChannel(script=[TransientError("http_500", "boom")])
    seen: list[MessageOutcome] = []
    registry = CollectorRegistry()
    metrics = AlertMetrics(registry, channels=["chat"])
    observers = [seen.append, lambda o: metrics.count(o.channel, o.status, o.signals)]
    d = dispatcher(sessionmaker, alerts, {"chat": chat}, clock, observers=observers)
    await store(sessionmaker, alerts, signal_row(), signal_row(), now=clock())
    with capture_logs():
        await d.run_once()
        clock.advance(seconds=10)
        await d.run_once()
    assert [(o.channel, o.status, o.signals) for o in seen] == [
        ("chat", "retry", 2),
        ("chat", "sent", 2),
    ]

    def sample(name: str, outcome: str) -> float | None:
        return registry.get_sample_value(name, {"channel": "chat", "outcome": outcome})

    assert sample("kmon_alert_messages_total", "sent") == 1
    assert sample("kmon_alert_messages_total", "retry") == 1
    assert sample("kmon_alert_messages_total", "dead") == 0  # exported from the start
    assert sample("kmon_alert_deliveries_total", "sent") == 2


# --- with the real Slack channel against a local webhook server ----------------------


async def test_slack_429_and_404_through_the_dispatcher(
    sessionmaker: SM, slack_server: SlackWebhookServer, http: aiohttp.ClientSession
) -> None:
    alerts = AlertSettings.model_validate(
        {
            "channels": {"slack": {"type": "slack", "webhook_url": slack_server.url}},
            "routes": [{"name": "r", "channels": ["slack"]}],
        }
    )
    clock = FakeClock()
    slack = build_channel("slack", alerts.channels["slack"], http)
    d = dispatcher(sessionmaker, alerts, {"slack": slack}, clock)
    slack_server.fail_next(rate_limited("90"), refused(404, "no_service"))
    await store(sessionmaker, alerts, signal_row(), now=clock())
    with capture_logs():
        assert await d.run_once() == T0 + timedelta(seconds=90)
        clock.advance(seconds=90)
        assert await d.run_once() is None
    [row] = await deliveries(sessionmaker)
    assert row.status == "dead"
    assert row.last_error is not None and row.last_error.startswith("http_404: ")
    assert "no_service" in row.last_error
    await store(sessionmaker, alerts, signal_row(), now=clock())
    await d.run_once()
    sent = (await deliveries(sessionmaker))[1]
    assert (sent.status, sent.response) == ("sent", "200 ok")
    assert len(slack_server.received) == 3


async def test_a_lease_is_not_stolen_by_a_retry_of_a_claimed_row(sessionmaker: SM) -> None:
    # `kmon alerts retry` on a row a dispatcher holds keeps the lease (see admin).
    from monitor.alerts import admin

    alerts, clock = simple(), FakeClock()
    await store(sessionmaker, alerts, signal_row(), now=clock())
    [row] = await deliveries(sessionmaker)
    async with sessionmaker.begin() as session:
        await session.execute(update(Delivery).values(claimed_until=T0 + timedelta(minutes=2)))
        assert await admin.retry(session, row.id, now=clock()) == "pending"
    chat = ScriptedChannel()
    await dispatcher(sessionmaker, alerts, {"chat": chat}, clock).run_once()
    assert chat.attempts == []


async def test_a_digest_lists_up_to_max_per_digest_and_folds_the_rest(sessionmaker: SM) -> None:
    alerts = settings(
        routes=[
            {"name": "r", "channels": ["chat"], "quiet_hours": {"start": "22:00", "end": "07:00"}}
        ],
        dispatch={"max_per_digest": 2, "max_per_message": 1},
    )
    clock, chat = FakeClock(kst(2025, 6, 18, 23, 0)), ScriptedChannel()
    await store(sessionmaker, alerts, *(signal_row(severity="info") for _ in range(3)), now=clock())
    clock.now = kst(2025, 6, 19, 7, 0)
    await dispatcher(sessionmaker, alerts, {"chat": chat}, clock).run_once()
    [digest] = chat.sent
    assert (digest.digest, len(digest.signals), digest.folded) == (True, 2, 1)
    assert {r.status for r in await deliveries(sessionmaker)} == {"sent"}


async def test_an_unreadable_explanation_still_goes_out_with_its_headline(
    sessionmaker: SM, monkeypatch: pytest.MonkeyPatch
) -> None:
    import monitor.alerts.dispatch as dispatch_module

    def broken(row: Any, names: Any) -> Any:
        raise KeyError("quote")

    monkeypatch.setattr(dispatch_module, "alert_signal", broken)
    alerts, clock, chat = simple(), FakeClock(), ScriptedChannel()
    await store(sessionmaker, alerts, signal_row(headline="NAVER 035420 +15.25%"), now=clock())
    with capture_logs() as logs:
        await dispatcher(sessionmaker, alerts, {"chat": chat}, clock).run_once()
    assert [s.title for s in chat.sent[0].signals] == ["NAVER 035420 +15.25%"]
    assert logs[0]["event"] == "alert_signal_failed"


class _SlowChannel(ScriptedChannel):
    """Each send takes ``seconds`` of the fake clock."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        super().__init__("chat")
        self.clock, self.seconds = clock, seconds

    async def send(self, message: Any) -> Sent:
        self.clock.advance(seconds=self.seconds)
        return await super().send(message)


async def test_sends_start_only_in_the_first_half_of_the_lease(sessionmaker: SM) -> None:
    alerts = settings(
        routes=[{"name": "r", "channels": ["chat"]}],
        dispatch={"lease": "2m", "max_per_message": 1},
    )
    clock = FakeClock()
    chat = _SlowChannel(clock, seconds=40)
    await store(sessionmaker, alerts, *(signal_row() for _ in range(3)), now=clock())
    d = dispatcher(sessionmaker, alerts, {"chat": chat}, clock)
    # Sends start at +0 s and +40 s; at +80 s the lease (2 min) is past its half.
    assert await d.run_once() == T0 + timedelta(seconds=80)
    assert len(chat.sent) == 2
    rows = await deliveries(sessionmaker)
    assert [(r.status, r.attempts, r.claimed_until) for r in rows][2] == ("pending", 0, None)
    assert await d.run_once() is None
    assert len(chat.sent) == 3


async def test_a_slack_retry_after_holds_the_channel_across_rounds(
    sessionmaker: SM, slack_server: SlackWebhookServer, http: aiohttp.ClientSession
) -> None:
    alerts = AlertSettings.model_validate(
        {
            "channels": {"slack": {"type": "slack", "webhook_url": slack_server.url}},
            "routes": [{"name": "r", "channels": ["slack"]}],
        }
    )
    clock = FakeClock()
    slack = build_channel("slack", alerts.channels["slack"], http)
    d = dispatcher(sessionmaker, alerts, {"slack": slack}, clock)
    slack_server.fail_next(rate_limited("5"))
    await store(sessionmaker, alerts, signal_row(), now=clock())
    with capture_logs():
        await d.run_once()
        assert len(slack_server.received) == 1  # the 429
        # A new signal a moment later, and rounds until the Retry-After has passed:
        # nothing is posted to the channel.
        clock.advance(seconds=0.01)
        await store(sessionmaker, alerts, signal_row(), now=clock())
        assert await d.run_once() == T0 + timedelta(seconds=5)
        clock.advance(seconds=4.98)
        await d.run_once()
        assert len(slack_server.received) == 1
        clock.advance(seconds=0.01)
        await d.run_once()
    assert len(slack_server.received) == 2
    assert [r.status for r in await deliveries(sessionmaker)] == ["pending", "sent"]
